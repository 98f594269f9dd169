"""A paper-trading session for one symbol: the wiring of feed, bars, trader and store.

::

    websocket -> FeedClient -> bounded queue -> BarSequencer(s) -> join with reference
      -> SymbolTrader.process (worker thread: features, broker, policy, risk, journal)
    PolicyExecutor (own thread, follows the store channel)     exports -> paper/<actor>/

The feed reader only parses and enqueues; every bar step runs on one worker thread, so a
slow inference never blocks the websocket reader. The queue is bounded: when it is full
the oldest *market data* is dropped and counted (a dropped closed bar becomes a gap that
REST backfills); journal writes are never dropped. A watchdog flags a symbol stale after
``stale_after_bars`` intervals without a closed bar (no new entries until fresh data),
tries REST, and raises alerts. Time for staleness and alerts comes from the injected
``clock``; ``speed`` scales bar intervals for replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.actors.alerts import AlertDispatcher, Notifier
from raytrade.actors.bar_sequencer import CATCHUP, LIVE, WARMUP, BarSequencer, SequencedBar
from raytrade.actors.binance import BinanceSpot
from raytrade.actors.coinbase import CoinbaseExchange
from raytrade.actors.coinbase_rest import CoinbaseCandles
from raytrade.actors.events import KlineEvent, MarketEvent, QuoteEvent, TradeEvent
from raytrade.actors.executor import ExecutorEvent, PolicyExecutor
from raytrade.actors.feed_client import FeedClient, FeedConfig
from raytrade.actors.journal import Journal, JournalError
from raytrade.actors.paper_broker import BrokerConfig, PaperBroker, Rejection
from raytrade.actors.paper_export import paper_objects, restore_journal, upload_paper
from raytrade.actors.rest_klines import RestKlines
from raytrade.actors.symbol_trader import RewardSpec, StepOutcome, SymbolTrader
from raytrade.actors.venue import Subscription, VenueAdapter
from raytrade.algos.policy import Policy, manifest_env
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.envs.intervals import interval_to_ms
from raytrade.envs.trade_bars import TradeBarBuilder

log = logging.getLogger(__name__)

VENUES = ("binance", "coinbase", "replay")
Transitions = Callable[[npt.NDArray[np.float32], npt.NDArray[np.int64],
                        npt.NDArray[np.float32]], None]


@dataclass(frozen=True)
class PaperConfig:
    """One paper actor. Times in seconds unless stated; money in quote currency."""

    actor: str
    """Name: the journal file and ``paper/<actor>/`` in the store."""
    symbol: str
    """Exchange symbol (``BTCUSDT``; ``BTC-USD`` on Coinbase)."""
    venue: str = "binance"
    """``binance``, ``coinbase`` or ``replay`` (Binance protocol, usually on loopback)."""
    interval: str = "5m"
    """Bar interval; must equal the policy's FeatureSpec base interval."""
    feed_url: str | None = None
    """Websocket base URL override (testnets, Binance.US, the replay server)."""
    rest_url: str | None = None
    """REST base URL override for kline backfill."""
    journal_dir: str = "paper-journals"
    """Folder of the SQLite journals (one file per actor)."""
    channel: str = "paper"
    """Store channel the executor follows."""
    initial_equity: float = 10_000.0
    """Starting paper balance."""
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
    """How often equity, trades and health go to the store."""
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
    """The venue's name for the FeatureSpec's reference asset (None: the spec's name, on
    Coinbase mapped like ``BTCUSDT`` -> ``BTC-USD``)."""
    feed: FeedConfig = field(default_factory=FeedConfig)
    """Connection behaviour."""

    def __post_init__(self) -> None:
        if self.venue not in VENUES:
            raise ConfigError(f"venue must be one of {VENUES}, got {self.venue!r}")
        if not self.speed > 0 or self.queue_size < 10 or (self.warmup_bars or 0) < 0:
            raise ConfigError("PaperConfig: speed > 0, queue_size >= 10, warmup_bars >= 0")
        interval_to_ms(self.interval)

    @property
    def journal_path(self) -> Path:
        """The journal file."""
        return Path(self.journal_dir) / f"{self.actor}.sqlite"


def make_adapter(config: PaperConfig, symbols: Sequence[str]) -> VenueAdapter:
    """The venue adapter for ``config`` subscribed to ``symbols``."""
    if config.venue == "coinbase":
        return CoinbaseExchange(Subscription(tuple(symbols), config.interval, trades=True,
                                             quotes=config.use_quote_spread), config.feed_url)
    return BinanceSpot(Subscription(tuple(symbols), config.interval,
                                    quotes=config.use_quote_spread), config.feed_url)


def reference_symbol(config: PaperConfig, spec_reference: str | None) -> str | None:
    """The venue symbol of the spec's reference asset (``PaperConfig.reference_symbol``)."""
    if spec_reference is None or config.reference_symbol:
        return config.reference_symbol if spec_reference else None
    if config.venue == "coinbase" and "-" not in spec_reference:
        for quote in ("USDT", "USDC", "USD"):
            if spec_reference.endswith(quote) and len(spec_reference) > len(quote):
                return f"{spec_reference[:-len(quote)]}-USD"
        raise ConfigError(f"no Coinbase product for reference {spec_reference}: set "
                          "reference_symbol")
    return spec_reference


def broker_config(config: PaperConfig, manifest: dict[str, Any]) -> BrokerConfig:
    """Paper account settings: the policy's training costs, risk rules and latency."""
    env = manifest_env(manifest)
    return BrokerConfig(initial_equity=config.initial_equity, costs=env.costs, risk=env.risk,
                        latency_bars=env.latency_bars, max_leverage=config.max_leverage,
                        use_quote_spread=config.use_quote_spread)


class PaperSession:
    """Runs one paper actor until ``stop()`` (module docstring)."""

    def __init__(self, config: PaperConfig, store: PolicyStore, *,
                 notifiers: Sequence[Notifier] = (), clock: Callable[[], float] = time.time,
                 push_transitions: Transitions | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.alerts = AlertDispatcher(notifiers, clock=clock)
        self.push_transitions = push_transitions
        self.interval_ms = interval_to_ms(config.interval)
        self.interval_s = self.interval_ms / 1000.0 / config.speed
        self.executor = PolicyExecutor(store, config.channel,
                                       poll_interval_s=config.poll_interval_s,
                                       max_backoff_s=max(60.0, config.poll_interval_s),
                                       min_confidence=config.min_confidence,
                                       on_event=self._on_executor_event)
        self.journal: Journal | None = None
        self.trader: SymbolTrader | None = None
        self.feed: FeedClient | None = None
        self.sequencers: dict[str, BarSequencer] = {}
        self.reference: str | None = None
        self.queue: asyncio.Queue[MarketEvent] | None = None
        self.state = "starting"
        self.stale = False
        self.halted = False
        self.in_drawdown = False
        self.latencies_s: deque[float] = deque(maxlen=100_000)
        self.processed = 0
        self._arrivals: dict[tuple[str, int], float] = {}
        self._last_bar_at: float | None = None  # first live bar starts the stale clock
        self._feed_down_since: float | None = None
        self._pending: dict[str, dict[int, SequencedBar]] = {}
        self._trade_bars: dict[str, TradeBarBuilder] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"trader-{config.actor}")
        self._stop = asyncio.Event()
        self._last_export = 0.0

    # ---- lifecycle
    def stop(self) -> None:
        """Ask ``run`` to shut down cleanly."""
        self._stop.set()

    async def run(self) -> None:
        """Trade until stopped. Raises ``JournalError`` (refuses to start) if the journal
        is locked or corrupt."""
        cfg = self.config
        await asyncio.to_thread(restore_journal, self.store.blobs, cfg.actor, cfg.symbol,
                                cfg.journal_path)  # the record survives a move to a new node
        self.journal = Journal(cfg.journal_path, synchronous=cfg.synchronous)
        self.journal.event("start", {"config": repr(cfg)}, cfg.symbol, self.clock())
        try:
            policy = await self._first_policy()
            if policy is None:
                return
            self._build(policy)
            self.executor.start()
            await self._trade()
        finally:
            await self._shutdown()

    async def _first_policy(self) -> Policy | None:
        self.state = "waiting for policy"
        while not self._stop.is_set():
            await asyncio.to_thread(self.executor.poll, force=True)
            policy = self.executor.policy
            if policy is not None:
                return policy
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.poll_interval_s)
        return None

    def _build(self, policy: Policy) -> None:
        cfg = self.config
        assert self.journal is not None
        spec = policy.feature_spec
        if spec.interval_ms != self.interval_ms:
            raise ConfigError(f"policy v{policy.version} trades {spec.base_interval} bars, "
                              f"the actor is configured for {cfg.interval}")
        known = self.journal.meta("feature_spec_hash")
        if known is not None and known != spec.hash:
            raise JournalError(f"{self.journal.path} was written for FeatureSpec "
                               f"{known[:12]}, the policy uses {spec.hash[:12]}: use a new "
                               "journal for a new feature set")
        self.journal.set_meta("feature_spec_hash", spec.hash)
        broker = PaperBroker(broker_config(cfg, policy.manifest), cfg.symbol, cfg.actor)
        env = manifest_env(policy.manifest)
        reward = RewardSpec(kind=env.reward, scale=env.reward_scale)
        window = int(policy.manifest["observation"].get("window", 16))
        self.trader = SymbolTrader(cfg.symbol, spec, window, broker, self.journal,
                                   lambda: self.executor.policy,
                                   min_confidence=cfg.min_confidence, reward=reward,
                                   on_transitions=self.push_transitions
                                   if cfg.online_learning else None)
        self.trader.restore()
        warmup = cfg.warmup_bars
        if warmup is None:
            warmup = feature_warmup_bars(spec, window)
            log.info("%s: %d bars of warm-up history for FeatureSpec %s", cfg.actor,
                     warmup, spec.hash[:12])
        self.reference = reference_symbol(cfg, spec.reference_symbol)
        symbols = [cfg.symbol] + ([self.reference] if self.reference and
                                  self.reference != cfg.symbol else [])
        rest = CoinbaseCandles(cfg.rest_url) if cfg.venue == "coinbase" \
            else RestKlines(cfg.rest_url)

        async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
            return await rest.fetch(symbol, cfg.interval, start, end)

        self.queue = asyncio.Queue(cfg.queue_size)
        self.feed = FeedClient(make_adapter(cfg, symbols), self._enqueue, config=cfg.feed,
                               clock=self.clock)
        for sym in symbols:
            self.sequencers[sym] = BarSequencer(
                sym, self.interval_ms, backfill, self.feed.health,
                warmup_bars=warmup, last_ts=self.trader.last_ts,
                on_gap=self._on_gap)
            self._pending[sym] = {}
            self._trade_bars[sym] = TradeBarBuilder(self.interval_ms, sym)

    async def _trade(self) -> None:
        assert self.feed is not None
        self.state = "running"
        tasks = [asyncio.create_task(self.feed.run(), name="feed"),
                 asyncio.create_task(self._process(), name="process"),
                 asyncio.create_task(self._watchdog(), name="watchdog")]
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        self.feed.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        stop.cancel()
        for task in tasks:  # a task that ended by itself ended on an error: report it
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _shutdown(self) -> None:
        self.state = "stopped"
        self.executor.stop()
        self._worker.shutdown(wait=True)
        if self.journal is not None:
            if self.trader is not None:
                status = self.trader.status()
                log.info("%s: shutting down with position %g on %s, equity %.2f",
                         self.config.actor, status["position"], status["symbol"],
                         status["equity"])
                self.journal.event("shutdown", status, self.config.symbol, self.clock())
                self.export()
            self.journal.close()
            self.journal = None
        self.alerts.close()

    # ---- feed side (event loop, never blocks)
    def _enqueue(self, ev: MarketEvent) -> None:
        assert self.queue is not None and self.feed is not None
        if isinstance(ev, KlineEvent) and ev.closed:
            self._arrivals[(ev.symbol, ev.bar.ts)] = time.monotonic()
        if self.queue.full():
            dropped = self.queue.get_nowait()  # drop the oldest market data
            self.feed.health.count("dropped_queue")
            if isinstance(dropped, KlineEvent):
                self._arrivals.pop((dropped.symbol, dropped.bar.ts), None)
        self.queue.put_nowait(ev)

    async def _process(self) -> None:
        assert self.queue is not None
        while True:
            ev = await self.queue.get()
            if isinstance(ev, QuoteEvent):
                if ev.symbol == self.config.symbol and self.trader is not None:
                    self.trader.broker.on_quote(ev)
                continue
            if isinstance(ev, TradeEvent):
                if self.config.venue == "coinbase" and ev.symbol in self._trade_bars:
                    for row in self._trade_bars[ev.symbol].add(ev.ts, ev.price, ev.qty):
                        await self._offer(ev.symbol, Bar(*row), live=True)
                continue
            if ev.closed and ev.symbol in self.sequencers:
                await self._offer(ev.symbol, ev.bar, live=True)

    async def _offer(self, symbol: str, bar: Bar, *, live: bool) -> None:
        released = await self.sequencers[symbol].offer(bar, live=live)
        await self._release(released)

    async def _release(self, released: list[SequencedBar]) -> None:
        if not released:
            return
        for sb in released:
            self._pending[sb.symbol][sb.bar.ts] = sb
            if sb.kind == LIVE:
                self._last_bar_at = time.monotonic()
                if self.stale:
                    self.journal_event("fresh", {"ts": sb.bar.ts}, sb.symbol)
                self.stale = False
        await self._drain()

    async def _drain(self) -> None:
        """Process joined bars (symbol + reference) in time order."""
        trader = self.trader
        assert trader is not None
        mine = self._pending[self.config.symbol]
        ref = self._pending.get(self.reference or "", mine)
        while mine:
            ts = min(mine)
            if trader.last_ts is not None and ts <= trader.last_ts:
                del mine[ts]
                continue
            if ts not in ref:
                if ref and min(ref) > ts:  # the reference history starts later
                    del mine[ts]
                    continue
                return
            sb = mine.pop(ts)
            rb = sb if ref is mine else ref.pop(ts)  # the reference may be the symbol
            if ref is not mine:
                for old in [t for t in ref if t < ts]:
                    del ref[old]
            kind = sb.kind if sb.kind == rb.kind else (CATCHUP if WARMUP not in
                                                      (sb.kind, rb.kind) else WARMUP)
            if self.stale and kind == LIVE:
                kind = CATCHUP
            done = asyncio.get_running_loop().run_in_executor(
                self._worker, trader.process, sb.bar, kind, rb.bar.close)
            try:
                outcome = await asyncio.shield(done)
            except asyncio.CancelledError:
                # a stop while the worker thread trades this bar: the bar is in the
                # journal either way, so finish its accounting (counts, halt and
                # drawdown alerts) before stopping
                outcome = await done
                self._after(outcome)
                raise
            self._after(outcome)

    def _after(self, out: StepOutcome) -> None:
        self.processed += 1
        if self._last_bar_at is not None:  # a long warm-up or backlog is not staleness
            self._last_bar_at = time.monotonic()
        arrived = self._arrivals.pop((self.config.symbol, out.bar.ts), None)
        if arrived is not None and out.kind == LIVE:
            self.latencies_s.append(time.monotonic() - arrived)
        if out.halted and not self.halted:
            self.halted = True
            self._alert("halt", f"drawdown halt fired at {out.bar.ts}; flat for good")
        if out.drawdown is not None:
            breach = out.drawdown >= self.config.drawdown_alert
            if breach and not self.in_drawdown:
                self._alert("drawdown", f"drawdown {out.drawdown:.1%} reached the alert "
                                        f"level {self.config.drawdown_alert:.0%}")
            self.in_drawdown = breach
        if isinstance(out.result, Rejection):
            log.warning("%s: order rejected: %s", self.config.actor, out.result.reason)
        if len(self._arrivals) > 10_000:
            self._arrivals.clear()

    # ---- watchdog, exports, alerts
    async def _watchdog(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(min(1.0, self.interval_s / 4))
            now = time.monotonic()
            feed = self.feed
            assert feed is not None
            if feed.health.state != "live":
                self._feed_down_since = self._feed_down_since or now
                if now - self._feed_down_since > cfg.feed_down_alert_s:
                    self._alert("feed_down", f"feed not live for "
                                             f"{now - self._feed_down_since:.0f} s: "
                                             f"{feed.health.last_error}")
            else:
                self._feed_down_since = None
            trader = self.trader
            if trader is not None and self._last_bar_at is not None and \
                    now - self._last_bar_at > cfg.stale_after_bars * self.interval_s:
                if not self.stale:
                    self.stale = True
                    feed.health.count("stale_holds")
                    self.journal_event("stale", {"last_ts": trader.last_ts}, cfg.symbol)
                await self._rest_fallback()
            for seq in self.sequencers.values():
                if seq.stale:
                    await self._release(await seq.retry())
            if self.clock() - self._last_export >= cfg.export_every_s:
                self._last_export = self.clock()
                objects = await asyncio.get_running_loop().run_in_executor(
                    self._worker, self._export_objects)
                await asyncio.to_thread(upload_paper, self.store.blobs, cfg.actor, objects)

    async def _rest_fallback(self) -> None:
        """While no bar arrives, fetch what REST has (processed as catch-up: no entries)."""
        for sym, seq in self.sequencers.items():
            if seq.last_ts is None or seq.backfill is None:
                continue
            start = seq.last_ts + self.interval_ms
            try:
                bars = await seq.backfill(sym, start, start + 1000 * self.interval_ms)
            except Exception as exc:
                seq.health.count("rest_errors")
                seq.health.last_error = f"REST fallback: {exc}"
                continue
            for bar in bars:
                await self._offer(sym, bar, live=False)

    def _on_gap(self, symbol: str, start: int, end: int, why: str) -> None:
        self.journal_event("gap", {"start": start, "end": end, "why": why}, symbol)

    def journal_event(self, kind: str, detail: dict[str, Any], symbol: str) -> None:
        """Record an event in the journal (if open)."""
        if self.journal is not None:
            self._worker.submit(self.journal.event, kind, detail, symbol, self.clock())

    def _on_executor_event(self, event: ExecutorEvent) -> None:
        self.journal_event(f"policy_{event.kind}", {"version": event.version,
                                                    "reason": event.reason},
                           self.config.symbol)
        if event.kind == "rejected":
            self._alert("policy_rejected", f"v{event.version}: {event.reason}")

    def _alert(self, kind: str, message: str) -> None:
        self.alerts.alert(kind, self.config.actor, self.config.symbol, message)
        self.journal_event("alert", {"kind": kind, "message": message}, self.config.symbol)

    def health(self) -> dict[str, Any]:
        """Plain-JSON health for exports and ``status``."""
        faults: list[str] = []
        feed = self.feed.health.snapshot() if self.feed is not None else {}
        now = time.monotonic()
        if self._feed_down_since is not None and \
                now - self._feed_down_since > self.config.feed_down_alert_s:
            faults.append(f"feed down for {now - self._feed_down_since:.0f} s")
        if self.stale:
            faults.append("stale: no fresh closed bar")
        if self.halted:
            faults.append("drawdown halt")
        ex = self.executor.status()
        if ex.version is None:
            faults.append("no validated policy")
        faults.extend(f"policy v{v} rejected: {why}" for v, why in ex.rejected.items()
                      if ex.version is None or v > ex.version)
        lat = np.array(self.latencies_s) if self.latencies_s else np.zeros(0)
        return {
            "actor": self.config.actor, "symbol": self.config.symbol,
            "venue": self.config.venue, "state": self.state, "updated_at": self.clock(),
            "stale": self.stale, "feed": feed,
            "trader": self.trader.status() if self.trader is not None else None,
            "executor": {"channel": ex.channel, "version": ex.version,
                         "consecutive_failures": ex.consecutive_failures,
                         "last_error": ex.last_error},
            "queue": {"size": self.queue.qsize() if self.queue else 0,
                      "max": self.config.queue_size},
            "processed_bars": self.processed,
            "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99)},
            "alerts": {"sent": self.alerts.sent, "failed": self.alerts.failed},
            "unresolved_faults": faults,
        }

    def _export_objects(self) -> dict[str, bytes]:
        """Read the export from the journal (on the worker thread, which owns it)."""
        assert self.journal is not None
        return paper_objects(self.journal, self.config.symbol, self.health())

    def export(self) -> bool:
        """Write equity, trades and health to ``paper/<actor>/`` now (not while the worker
        runs: shutdown and tests)."""
        self._last_export = self.clock()
        if self.journal is None:
            return False
        return upload_paper(self.store.blobs, self.config.actor, self._export_objects())


def _pct(x: npt.NDArray[np.float64], q: float) -> float | None:
    return None if not len(x) else round(float(np.percentile(x, q)) * 1000.0, 3)


__all__ = ["VENUES", "PaperConfig", "PaperSession", "broker_config", "make_adapter",
           "reference_symbol"]
