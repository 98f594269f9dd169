"""One paper actor's settings (``PaperConfig``), checked when they are made: the venue
against the registry and its capabilities, the interval, the rates and limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raytrade.actors.feed_client import FeedConfig
from raytrade.actors.venues.registry import DEFAULT_VENUE, venue_factory
from raytrade.algos.storage import keys
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms


@dataclass(frozen=True)
class PaperConfig:
    """One paper actor. Times in seconds unless stated; money in quote currency."""

    actor: str
    """Name: the journal file and ``paper/<actor>/`` in the store."""
    symbol: str
    """Exchange symbol (``BTCUSDT``; ``BTC-USD`` on Coinbase)."""
    venue: str = DEFAULT_VENUE
    """A name in the venue registry (``actors/venues/registry.py``): ``binance``,
    ``binance-futures`` (USD-M perpetuals), ``coinbase``, or ``replay`` (Binance's protocol
    from the replay server)."""
    interval: str = "5m"
    """Bar interval; must equal the policy's FeatureSpec base interval."""
    feed_url: str | None = None
    """Websocket base URL override (testnets, Binance.US, the replay server)."""
    rest_url: str | None = None
    """REST base URL override for kline backfill."""
    files_dir: str | None = None
    """A file-bridge venue's folder (DWX Connect: the terminal's ``MQL4/Files`` or
    ``MQL5/Files``)."""
    journal_dir: str = "paper-journals"
    """Folder of the SQLite journals (one file per actor)."""
    channel: str = "paper"
    """Store channel the executor follows."""
    initial_equity: float | None = None
    """Starting paper balance; None: the policy's training equity (``manifest.env``), which
    matters when its risk rules cap notional in absolute quote currency."""
    max_leverage: float = 1.0
    """Gross notional allowed, as a multiple of equity."""
    use_quote_spread: bool = True
    """Use the live bookTicker spread instead of the modelled one."""
    min_confidence: float = 0.0
    """Hold the position when the policy's confidence is below this."""
    warmup_bars: int | None = None
    """History fetched over REST before the first decision; None: the policy's FeatureSpec
    decides (``feature_warmup_bars``: enough for a complete first observation)."""
    queue_size: int = 10_000
    """Market events buffered between the reader and the trader."""
    poll_interval_s: float = 5.0
    """How often the executor checks the channel."""
    export_every_s: float = 10.0
    """How often equity, trades and health go to the store. A due export waits until the
    market clock is clear of a bar close (a quarter bar or 2 s, ``paper_session``), so it
    never runs while this machine's actors step the bar that just closed."""
    speed: float = 1.0
    """Bar intervals pass this many times faster than real time (replays)."""
    stale_after_bars: float = 2.0
    """No closed bar for this many intervals: stale, no new entries."""
    feed_down_alert_s: float = 300.0
    """Alert (and report a fault) when the feed is not live for this long."""
    drawdown_alert: float = 0.1
    """Alert when drawdown from peak equity reaches this fraction."""
    online_learning: bool = False
    """Push transitions to the training run's live-experience queue."""
    synchronous: str = "FULL"
    """SQLite ``synchronous`` for the journal (FULL survives power loss, NORMAL a crash)."""
    reference_symbol: str | None = None
    """The venue's name for the FeatureSpec's reference asset (None: the venue maps the
    spec's name, e.g. ``BTCUSDT`` -> ``BTC-USD`` on Coinbase)."""
    feed: FeedConfig = field(default_factory=FeedConfig)
    """Connection behaviour."""

    def __post_init__(self) -> None:
        keys.paper_prefix(self.actor)  # names the journal file and paper/<actor>/
        capabilities = venue_factory(self.venue).capabilities
        interval_to_ms(self.interval)
        if not capabilities.supports(self.interval):
            raise ConfigError(f"venue {self.venue!r} serves {capabilities.intervals} bars, "
                              f"not {self.interval}")
        if not self.speed > 0 or self.queue_size < 10 or (self.warmup_bars or 0) < 0:
            raise ConfigError("PaperConfig: speed > 0, queue_size >= 10, warmup_bars >= 0")
        if not self.stale_after_bars > 0 or not self.feed_down_alert_s > 0:
            raise ConfigError("PaperConfig: stale_after_bars and feed_down_alert_s must be > 0")

    @property
    def journal_path(self) -> Path:
        """The journal file."""
        return Path(self.journal_dir) / f"{self.actor}.sqlite"
