"""MetaTrader 4/5 through DWX Connect as a market-data venue (``protocol.Venue``, registry
name ``dwx``): closed bars and bid/ask from a terminal's EA folder, history over
``GET_HISTORIC_DATA``; the order side is ``dwx_orders.py`` (execution registry ``dwx``).

The folder is ``VenueEndpoints.files_dir`` (``--files-dir``: the terminal's
``MQL4/Files`` or ``MQL5/Files``, in which the EA keeps ``DWX/``). The protocol and its
sources: ``dwx_files.py``; the client shared by the feed and the orders of one folder:
``dwx_client.py``.

- Intervals are MetaTrader timeframes: ``1m 5m 15m 30m 1h 4h 1d`` = ``M1 M5 M15 M30 H1
  H4 D1``.
- Symbols are the terminal's own names, identity (``EURUSD``; a broker's suffixed name
  such as ``EURUSD.r`` is written as is).
- Bar and order times are the broker's *server* time: the offset from UTC is read from the
  venue config file (``dwx_symbols.py``, ``[server] utc_offset_hours``) at
  ``<files_dir>/raytrade-dwx.toml`` when it exists, else 0 (a UTC server). A bar's open
  time must land on the UTC grid of its interval: an offset of 2 h rules out ``4h`` and
  ``1d`` bars (``ConfigError``).
- ``execution``: the folder's order side when the venue config file is there (network
  ``testnet``: a demo account); the live trader builds its own from the execution
  registry with the network it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from raytrade.actors.events import MarketEvent, MessageRejectedError
from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues import dwx_requests as req
from raytrade.actors.venues.dwx_client import ClientConfig, DwxClient, EaError, shared_client
from raytrade.actors.venues.dwx_feed import DwxFeed
from raytrade.actors.venues.dwx_orders import DwxExecution
from raytrade.actors.venues.dwx_symbols import VenueConfig, load_venue_config
from raytrade.actors.venues.execution import OrderExecution
from raytrade.actors.venues.protocol import (
    Capabilities,
    MarketFeed,
    StreamAdapter,
    Subscription,
    VenueEndpoints,
)
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

if TYPE_CHECKING:  # the execution registry imports this module
    from raytrade.actors.venues.execution_registry import ExecutionSetup

TIMEFRAMES = {"1m": "M1", "5m": "M5", "15m": "M15", "30m": "M30", "1h": "H1", "4h": "H4",
              "1d": "D1"}
"""raytrade intervals -> MetaTrader timeframes."""
CONFIG_NAME = "raytrade-dwx.toml"
"""The venue config file's conventional place in the files folder."""


def folder_config(files_dir: str | Path) -> VenueConfig | None:
    """``<files_dir>/raytrade-dwx.toml`` validated, or None when absent."""
    path = Path(files_dir) / CONFIG_NAME
    return load_venue_config(path) if path.exists() else None


def timeframe(interval: str, offset_s: int) -> str:
    """The MT timeframe of ``interval``; ``ConfigError`` when it has none or when the
    server offset puts its bars off the UTC grid (module docstring)."""
    tf = TIMEFRAMES.get(interval)
    if tf is None:
        raise ConfigError(f"dwx serves {', '.join(TIMEFRAMES)} bars, not {interval}")
    if (offset_s * 1000) % interval_to_ms(interval):
        raise ConfigError(f"{interval} bars open at server midnight, {offset_s / 3600:g} h "
                          "off UTC: they are not on the UTC grid raytrade's bars use")
    return tf


class DwxHistory:
    """``protocol.BarHistory`` over ``GET_HISTORIC_DATA``."""

    def __init__(self, client: DwxClient) -> None:
        self.client = client

    async def fetch(self, symbol: str, interval: str, start_ms: int, end_ms: int
                    ) -> list[Bar]:
        """Bars opening in [start, end); none for a range the market was closed (the EA's
        ``HISTORIC_DATA`` error). ``TemporaryError`` when the EA does not answer.

        The EA's history includes the forming bar. When the EA has published its last
        closed bar of the pair (``DWX_Bar_Data.txt``, a bar subscription), every bar newer
        than that one is dropped: the forming bar never passes as closed, whatever the
        configured UTC offset (both times are converted alike; a wrong offset, as across a
        DST change, would fool a check against this machine's clock). Without that bar the
        forming one is included when the range reaches it (the caller's clock decides)."""
        tf = timeframe(interval, self.client.config.server_utc_offset_s)
        if end_ms <= start_ms:
            return []
        try:
            bars = await req.historic_bars(self.client, symbol, tf, start_ms, end_ms - 1)
        except EaError as exc:
            if exc.message.error_type == "HISTORIC_DATA":
                return []  # no bar in the range: a closure (the sequencer's calendar judges)
            raise MessageRejectedError(f"GET_HISTORIC_DATA {symbol} {tf}: "
                                       f"{exc.message.error_type} {exc.message.text}",
                                       "") from None
        step = interval_to_ms(interval)
        for bar in bars:
            if bar.ts % step:
                raise MessageRejectedError(f"{self.client.paths.folder} historic {symbol} "
                                           f"{tf}: bar at {bar.ts} ms is off the {interval} "
                                           "grid (is the server UTC offset right?)", "")
        last = self.client.state.bars.get((symbol, tf))
        newest = last.ts if last is not None else end_ms
        return [b for b in bars if start_ms <= b.ts < end_ms and b.ts <= newest]


class DwxVenue:
    """A terminal folder as a venue (module docstring)."""

    name: ClassVar[str] = "dwx"
    capabilities: ClassVar[Capabilities] = Capabilities(
        bar_source="klines", quotes=True, intervals=tuple(TIMEFRAMES), execution=True)

    def __init__(self, endpoints: VenueEndpoints) -> None:
        if not endpoints.files_dir:
            raise ConfigError("venue dwx needs the terminal's files folder (--files-dir: "
                              "MQL4/Files or MQL5/Files)")
        if endpoints.ws_url or endpoints.rest_url:
            raise ConfigError("venue dwx talks to the terminal through files: it takes no "
                              "URLs")
        self.files_dir = endpoints.files_dir
        self.venue_config = folder_config(endpoints.files_dir)
        offset = self.venue_config.server_utc_offset_s if self.venue_config else 0
        self.client = shared_client(endpoints.files_dir,
                                    ClientConfig(server_utc_offset_s=offset))
        self._execution: OrderExecution | None = None

    @property
    def execution(self) -> OrderExecution | None:
        """The folder's order side on its demo account, when its venue config exists."""
        if self._execution is None and self.venue_config is not None:
            self._execution = DwxExecution(self.client, self.venue_config, network="testnet")
        return self._execution

    def feed(self, subscription: Subscription, on_event: Callable[[MarketEvent], None], *,
             config: FeedConfig, clock: Callable[[], float]) -> MarketFeed:
        """Bars and quotes from the EA's files (``dwx_feed.py``)."""
        if subscription.trades:
            raise ConfigError("dwx has no public trades: its bars come from the terminal")
        tf = timeframe(subscription.interval, self.client.config.server_utc_offset_s)
        return DwxFeed(self.client, subscription.symbols, tf,
                       interval_to_ms(subscription.interval), on_event,
                       quotes=subscription.quotes, config=config, clock=clock)

    def stream(self, subscription: Subscription) -> StreamAdapter:
        """No websocket: ``ConfigError`` (use ``feed``)."""
        raise ConfigError("venue dwx has no websocket stream: its feed reads the EA's files")

    def history(self) -> DwxHistory:
        """Bars over ``GET_HISTORIC_DATA``."""
        return DwxHistory(self.client)

    def venue_symbol(self, symbol: str) -> str:
        """Identity: MetaTrader names are used as the terminal spells them."""
        if not symbol or any(c in symbol for c in ',|"\\ '):
            raise ConfigError(f"{symbol!r} is not a MetaTrader symbol name")
        return symbol


def build_execution(setup: ExecutionSetup) -> DwxExecution:
    """The execution registry's builder for ``dwx``: the venue config from
    ``setup.venue_config`` (``--venue-config``) or the folder's ``raytrade-dwx.toml``;
    the EA must read a command within ``setup.timeout_s``. There are no keys: the terminal
    is logged in to its account."""
    if not setup.files_dir:
        raise ConfigError("execution venue dwx needs the terminal's files folder "
                          "(--files-dir)")
    if setup.venue_config:
        config = load_venue_config(setup.venue_config)
    else:
        found = folder_config(setup.files_dir)
        if found is None:
            raise ConfigError(f"execution venue dwx needs its venue config (--venue-config, "
                              f"or {Path(setup.files_dir) / CONFIG_NAME}): lots and magic "
                              "numbers per symbol")
        config = found
    client = shared_client(setup.files_dir, ClientConfig(
        server_utc_offset_s=config.server_utc_offset_s, command_timeout_s=setup.timeout_s))
    return DwxExecution(client, config, network=setup.network, dry_run=setup.dry_run)
