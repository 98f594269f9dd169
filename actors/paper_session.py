"""A paper-trading session for one symbol: the wiring of feed, bars, trader and store.

::

    websocket -> FeedClient -> bounded queue -> BarSequencer(s) -> BarJoiner (reference)
      -> SymbolTrader.process (worker thread: features, broker, policy, risk, journal)
    Watchdog (staleness, feed down, REST fallback)     exports -> paper/<actor>/
    PolicyExecutor (own thread, follows the store channel)

The parts come from a ``SessionFactory`` (``session_factory.py``: journal, venue feed and
REST backfill, broker and trader, one injected clock); the session only moves events
between them. The feed reader only parses and enqueues; every bar step runs on one worker
thread, so a slow inference never blocks the websocket reader. The queue is bounded: when
it is full the oldest *market data* is dropped and counted (a dropped closed bar becomes
a gap that REST backfills); journal writes are never dropped. Every time decision
(staleness, feed down, latency, export cadence, REST bars closed or not) reads the
injected ``clock`` (``watchdog.py``); ``speed`` scales bar intervals for replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.actors.alerts import AlertDispatcher, Notifier
from raytrade.actors.bar_sequencer import CATCHUP, LIVE, BarSequencer, SequencedBar
from raytrade.actors.events import KlineEvent, MarketEvent, QuoteEvent, TradeEvent
from raytrade.actors.executor import ExecutorEvent, PolicyExecutor
from raytrade.actors.journal import Journal, JournalError
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_export import paper_objects, restore_journal, upload_paper
from raytrade.actors.records import Rejection, StepOutcome
from raytrade.actors.session_factory import SessionFactory, TradingParts, Transitions
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.actors.venues.protocol import MarketFeed
from raytrade.actors.watchdog import Clock, Watchdog
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.bars import Bar
from raytrade.envs.calendar import ALWAYS
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

log = logging.getLogger(__name__)

EXPORT_GUARD_S = 2.0
"""Exports keep at least this far (or a quarter bar, whichever is less) from a bar close
(``PaperSession._supervise``): 2 s covers a venue's closed kline arriving late and the
steps of every actor on the machine."""


CHECK_MAX_S = 1.0
"""Longest wait between two watchdog checks (``check_every_s``)."""
CHECK_MIN_S = 0.25
"""Shortest wait between two watchdog checks: only fast replays (bars under a second
apart) reach it."""


class PaperSession:
    """Runs one paper actor until ``stop()`` (module docstring).

    ``factory`` builds the parts (default: from ``config``, with ``clock`` and
    ``push_transitions``); a given factory brings its own clock and transitions sink.
    """

    def __init__(self, config: PaperConfig, store: PolicyStore, *,
                 notifiers: Sequence[Notifier] = (), clock: Clock | None = None,
                 push_transitions: Transitions | None = None,
                 factory: SessionFactory | None = None) -> None:
        if factory is not None and (clock is not None or push_transitions is not None):
            raise ConfigError("PaperSession: pass clock and push_transitions to the "
                              "factory, not beside it")
        self.factory = factory or SessionFactory(config, clock=clock or time.time,
                                                 push_transitions=push_transitions)
        self.config = config
        self.store = store
        self.clock = self.factory.clock
        self.alerts = AlertDispatcher(notifiers, clock=self.clock)
        self.interval_ms = interval_to_ms(config.interval)
        self.interval_s = self.interval_ms / 1000.0 / config.speed
        self.executor = PolicyExecutor(store, config.channel,
                                       poll_interval_s=config.poll_interval_s,
                                       max_backoff_s=max(60.0, config.poll_interval_s),
                                       min_confidence=config.min_confidence,
                                       on_event=self._on_executor_event)
        self.journal: Journal | None = None
        self.parts: TradingParts | None = None
        self.watchdog: Watchdog | None = None
        self.queue: asyncio.Queue[MarketEvent] | None = None
        self.state = "starting"
        self.halted = False
        self.in_drawdown = False
        self.latencies_s: deque[float] = deque(maxlen=100_000)
        self.bar_times: deque[tuple[int, float, float]] = deque(maxlen=100_000)
        """Per live bar of the traded symbol: its open time (ms), when its closed kline
        arrived and when its step was journaled (the commit returned), on ``clock``."""
        self.processed = 0
        self._journaled_at = 0.0
        self._arrivals: dict[tuple[str, int], float] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"trader-{config.actor}")
        self._stop = asyncio.Event()
        self._last_export = 0.0

    # ---- views of the parts (None before the first policy)
    @property
    def trader(self) -> SymbolTrader | None:
        """The symbol's trader."""
        return self.parts.trader if self.parts is not None else None

    @property
    def feed(self) -> MarketFeed | None:
        """The venue feed."""
        return self.parts.feed if self.parts is not None else None

    @property
    def sequencers(self) -> dict[str, BarSequencer]:
        """Per-symbol bar sequencers."""
        return dict(self.parts.sequencers) if self.parts is not None else {}

    @property
    def reference(self) -> str | None:
        """The venue symbol of the reference asset, if separate from the traded one."""
        return self.parts.joiner.reference if self.parts is not None else None

    @property
    def stale(self) -> bool:
        """No fresh closed bar for ``stale_after_bars`` intervals: no new entries."""
        return self.watchdog is not None and self.watchdog.stale

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
        self.journal = self.factory.journal()
        self.journal.event("start", {"config": repr(cfg)}, cfg.symbol, self.clock())
        try:
            policy = await self._first_policy()
            if policy is None:
                return
            self._build(policy)
            await self._before_trading()
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
        journal = self.journal
        assert journal is not None
        spec = policy.feature_spec
        if spec.interval_ms != self.interval_ms:
            raise ConfigError(f"policy v{policy.version} trades {spec.base_interval} bars, "
                              f"the actor is configured for {self.config.interval}")
        known = journal.meta("feature_spec_hash")
        if known is not None and known != spec.hash:
            raise JournalError(f"{journal.path} was written for FeatureSpec "
                               f"{known[:12]}, the policy uses {spec.hash[:12]}: use a new "
                               "journal for a new feature set")
        journal.set_meta("feature_spec_hash", spec.hash)
        parts = self.factory.build(policy, journal, lambda: self.executor.policy,
                                   self._enqueue, self._on_gap)
        self.parts = parts
        self.queue = asyncio.Queue(self.config.queue_size)
        self.watchdog = Watchdog(
            clock=self.clock, interval_s=self.interval_s,
            stale_after_bars=self.config.stale_after_bars,
            feed_down_alert_s=self.config.feed_down_alert_s, health=parts.feed.health,
            sequencers=parts.sequencers,
            offer=lambda sym, bar: self._offer(sym, bar, live=False), release=self._release,
            on_stale=lambda: self.journal_event(
                "stale", {"last_ts": parts.trader.last_ts}, self.config.symbol),
            on_fresh=lambda sym, ts: self.journal_event("fresh", {"ts": ts}, sym),
            on_feed_down=lambda down_s, why: self._alert(
                "feed_down", f"feed not live for {down_s:.0f} s: {why}"),
            calendar=policy.manifest.env.calendar, market_ms=parts.market.now_ms)

    async def _trade(self) -> None:
        assert self.feed is not None
        self.state = "running"
        tasks = [asyncio.create_task(self.feed.run(), name="feed"),
                 asyncio.create_task(self._process(), name="process"),
                 asyncio.create_task(self._supervise(), name="watchdog"),
                 *(asyncio.create_task(c, name=n) for n, c in self._extra_tasks())]
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

    # ---- hooks for sessions built on this one (the live session); no-ops here
    async def _before_trading(self) -> None:
        """After the parts are built, before the first bar."""

    def _extra_tasks(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """More tasks to run beside the feed, the trader and the watchdog."""
        return []

    async def _after_step(self, outcome: StepOutcome) -> None:
        """After each traded bar (its step is journaled)."""

    async def _before_shutdown(self) -> None:
        """Before the journal closes."""

    async def _shutdown(self) -> None:
        try:
            await self._before_shutdown()
        except Exception:
            log.exception("%s: shutdown hook failed", self.config.actor)
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
            self._arrivals[(ev.symbol, ev.bar.ts)] = self.clock()
        if self.queue.full():
            dropped = self.queue.get_nowait()  # drop the oldest market data
            self.feed.health.count("dropped_queue")
            if isinstance(dropped, KlineEvent):
                self._arrivals.pop((dropped.symbol, dropped.bar.ts), None)
        self.queue.put_nowait(ev)

    async def _process(self) -> None:
        assert self.queue is not None and self.parts is not None
        parts = self.parts
        while True:
            ev = await self.queue.get()
            if isinstance(ev, QuoteEvent):
                if ev.symbol == self.config.symbol:
                    parts.trader.broker.on_quote(ev)
                continue
            if isinstance(ev, TradeEvent):
                builder = parts.trade_bars.get(ev.symbol)
                if builder is not None:
                    for row in builder.add(ev.ts, ev.price, ev.qty):
                        await self._offer_live(ev.symbol, Bar(*row))
                continue
            if ev.closed and ev.symbol in parts.sequencers:
                await self._offer_live(ev.symbol, ev.bar)

    async def _offer_live(self, symbol: str, bar: Bar) -> None:
        assert self.parts is not None
        self.parts.market.observe_close(bar.ts + self.interval_ms)
        await self._offer(symbol, bar, live=True)

    async def _offer(self, symbol: str, bar: Bar, *, live: bool) -> None:
        assert self.parts is not None
        await self._release(await self.parts.sequencers[symbol].offer(bar, live=live))

    async def _release(self, released: list[SequencedBar]) -> None:
        if not released:
            return
        assert self.parts is not None and self.watchdog is not None
        for sb in released:
            self.parts.joiner.add(sb)
            if sb.kind == LIVE:
                self.watchdog.live_bar(sb.symbol, sb.bar.ts)
        await self._drain()

    async def _drain(self) -> None:
        """Trade joined bars (symbol + reference) in time order, on the worker thread."""
        assert self.parts is not None
        trader = self.parts.trader
        while (joined := self.parts.joiner.pop_next(trader.last_ts)) is not None:
            kind = CATCHUP if self.stale and joined.kind == LIVE else joined.kind
            done = asyncio.get_running_loop().run_in_executor(
                self._worker, self._step, trader, joined.bar, kind, joined.ref_close)
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
            after = asyncio.ensure_future(self._after_step(outcome))
            try:
                await asyncio.shield(after)
            except asyncio.CancelledError:
                await after  # a stop never cuts a bar's orders in half
                raise

    def _step(self, trader: SymbolTrader, bar: Bar, kind: str, ref_close: float | None
              ) -> StepOutcome:
        """``trader.process`` on the worker thread, stamping when its commit returned
        (the event loop may take the result later)."""
        outcome = trader.process(bar, kind, ref_close)
        self._journaled_at = self.clock()
        return outcome

    def _after(self, out: StepOutcome) -> None:
        assert self.watchdog is not None
        self.processed += 1
        self.watchdog.processed()
        arrived = self._arrivals.pop((self.config.symbol, out.bar.ts), None)
        if arrived is not None and out.kind == LIVE:
            self.latencies_s.append(self._journaled_at - arrived)
            self.bar_times.append((out.bar.ts, arrived, self._journaled_at))
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
    async def _supervise(self) -> None:
        """The watchdog's checks and the exports, every ``check_every_s``: a quarter bar
        within ``CHECK_MIN_S`` and ``CHECK_MAX_S`` (a 5m bar in real time: every second;
        a fast replay: four times a second, not four times a bar: each wake-up costs the
        event loop about 0.15 ms, which at 4 bars/s was a third of its CPU per bar).

        Every actor's bar closes at the same moment, and on a machine running one actor
        process per symbol an export (it reads the whole journal on the worker thread,
        serializes and fsyncs the record) running then takes CPU and disk from every
        actor's step, and blocks this actor's own step if its bar arrives meanwhile. So:

        - the first export is due ``export_phase`` after the session starts trading (a
          fixed fraction of ``export_every_s`` per actor name), then ``export_every_s``
          after the previous one: actors started together export at different moments
          instead of all in the same gap between two closes;
        - a due export starts only when the market clock is clear of the last close and
          leaves room before the next one for as long as the previous export took
          (``clear_of_close`` with ``need_ms``). An export postponed for a whole further
          ``export_every_s`` (exports longer than the gap between closes: a fast replay
          on a busy machine) drops the room requirement, keeping only the guard, so the
          record never stops updating."""
        assert self.watchdog is not None
        every = self.config.export_every_s
        due = self.clock() + export_phase(self.config.actor, every)
        took_s = 0.0
        pause = check_every_s(self.interval_s)
        while True:
            await asyncio.sleep(pause)
            await self.watchdog.check()
            now = self.clock()
            pause = check_every_s(self.interval_s)
            if now < due:
                continue
            need = 0.0 if now - due >= every else took_s
            if self._clear_of_close(need):
                self._last_export = now
                await self._export_now()
                took_s = self.clock() - now
                due = now + every
            else:  # due but too near a close: wake when the next clear window opens (a
                # fixed check period that divides the bar would land on the same phase
                # every time and could postpone the export indefinitely)
                pause = min(pause, self._until_clear_s(need))

    def _clear_of_close(self, need_s: float = 0.0) -> bool:
        """Whether the market clock is clear of a bar close with ``need_s`` clock seconds
        of room before the next one (``clear_of_close``)."""
        if self.parts is None:
            return True
        return clear_of_close(self.parts.market.now_ms(), self.interval_ms, self.config.speed,
                              need_ms=need_s * 1000.0 * self.config.speed)

    def _until_clear_s(self, need_s: float) -> float:
        """Clock seconds until the market clock next enters a window clear of bar closes
        with ``need_s`` of room (``until_clear_ms``); a small positive floor."""
        if self.parts is None:
            return 0.0
        speed = self.config.speed
        wait_ms = until_clear_ms(self.parts.market.now_ms(), self.interval_ms, speed,
                                 need_ms=need_s * 1000.0 * speed)
        return max(0.005, wait_ms / (1000.0 * speed))

    async def _export_now(self) -> None:
        """Write the record to the store (``paper/<actor>/``)."""
        objects = await asyncio.get_running_loop().run_in_executor(
            self._worker, self._export_objects)
        await asyncio.to_thread(upload_paper, self.store.blobs, self.config.actor, objects)

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
        faults: list[str] = self.watchdog.faults() if self.watchdog is not None else []
        feed = self.feed.health.snapshot() if self.feed is not None else {}
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
        calendar = self.parts.trader.calendar if self.parts is not None else ALWAYS
        return paper_objects(self.journal, self.config.symbol, self.health(),
                             calendar=calendar)

    def export(self) -> bool:
        """Write equity, trades and health to ``paper/<actor>/`` now (not while the worker
        runs: shutdown and tests)."""
        self._last_export = self.clock()
        if self.journal is None:
            return False
        return upload_paper(self.store.blobs, self.config.actor, self._export_objects())


def clear_of_close(market_ms: int, interval_ms: int, speed: float, *,
                   need_ms: float = 0.0) -> bool:
    """Whether market time ``market_ms`` is more than a quarter bar, and more than
    ``EXPORT_GUARD_S`` clock seconds (``speed`` market ms per clock ms), from the nearest
    close of an epoch-aligned ``interval_ms`` bar, with ``need_ms`` more market ms of room
    before the next close (what the work about to start takes): a bar's step and the burst
    of every symbol's steps run right after a close."""
    guard = min(interval_ms / 4, EXPORT_GUARD_S * 1000.0 * speed)
    phase = market_ms % interval_ms
    return guard <= phase <= interval_ms - guard - need_ms


def until_clear_ms(market_ms: int, interval_ms: int, speed: float, *,
                   need_ms: float = 0.0) -> float:
    """Market ms from ``market_ms`` until ``clear_of_close`` next holds (0 if it holds now):
    the start of the clear window after the nearest coming close; if ``need_ms`` leaves no
    window at all, the start of the guard-free part of the next bar."""
    guard = min(interval_ms / 4, EXPORT_GUARD_S * 1000.0 * speed)
    phase = market_ms % interval_ms
    if guard <= phase <= interval_ms - guard - need_ms:
        return 0.0
    if phase < guard and guard <= interval_ms - guard - need_ms:
        return guard - phase
    return interval_ms - phase + guard


def check_every_s(interval_s: float) -> float:
    """Seconds between two watchdog checks for bars ``interval_s`` clock seconds apart: a
    quarter bar, at least ``CHECK_MIN_S`` and at most ``CHECK_MAX_S``. Staleness and
    feed-down are decided at most this late."""
    return min(CHECK_MAX_S, max(CHECK_MIN_S, interval_s / 4))


def export_phase(actor: str, every_s: float) -> float:
    """Seconds from the start of trading to ``actor``'s first export: a fraction of
    ``every_s`` fixed by the actor's name (CRC-32), so actors started together spread
    their exports over the period instead of exporting together."""
    return (zlib.crc32(actor.encode()) % 1000) / 1000.0 * every_s


def _pct(x: npt.NDArray[np.float64], q: float) -> float | None:
    return None if not len(x) else round(float(np.percentile(x, q)) * 1000.0, 3)


__all__ = ["PaperConfig", "PaperSession"]
