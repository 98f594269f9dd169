"""The venue registry: every venue the live side can trade on, by name.

``PaperConfig.venue`` and ``raytrade paper --feed`` accept exactly these names, and the
session builds its venue from here: nothing else in the code base switches on a venue
name. Production venues are in this package; ``replay`` speaks Binance's protocol to the
project's loopback simulators (``actors/simulators/``) and refuses to start without their
URLs, so a replay can never reach a real exchange by accident.

Adding a venue: write ``actors/venues/<name>.py`` (a class satisfying
``protocol.Venue`` with class attributes ``name`` and ``capabilities``, and its stream
adapter), ``actors/venues/<name>_rest.py`` (its ``BarHistory``), and add the class to
``VENUES`` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from raytrade.actors.simulators.replay_venue import ReplayVenue
from raytrade.actors.venues.binance import BinanceVenue
from raytrade.actors.venues.binance_futures import BinanceFuturesVenue
from raytrade.actors.venues.coinbase import CoinbaseVenue
from raytrade.actors.venues.delta import DeltaVenue
from raytrade.actors.venues.dwx import DwxVenue
from raytrade.actors.venues.protocol import Venue, VenueEndpoints, VenueFactory
from raytrade.envs.errors import ConfigError

_ENTRIES: tuple[VenueFactory, ...] = (
    BinanceVenue,
    BinanceFuturesVenue,
    CoinbaseVenue,
    DeltaVenue,
    DwxVenue,
    ReplayVenue,
)
VENUES: Mapping[str, VenueFactory] = {entry.name: entry for entry in _ENTRIES}
DEFAULT_VENUE = BinanceVenue.name
"""The venue of ``PaperConfig`` and ``raytrade paper`` when none is named."""


def venue_names() -> tuple[str, ...]:
    """Registered names, sorted."""
    return tuple(sorted(VENUES))


def venue_factory(name: str) -> VenueFactory:
    """The registry entry ``name``; ``ConfigError`` naming the known venues otherwise."""
    try:
        return VENUES[name]
    except KeyError:
        raise ConfigError(f"unknown venue {name!r}: known venues are "
                          f"{', '.join(venue_names())}") from None


def build_venue(name: str, endpoints: VenueEndpoints) -> Venue:
    """Venue ``name`` at ``endpoints``."""
    return venue_factory(name)(endpoints)
