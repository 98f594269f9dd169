"""A live trading session for one symbol: the paper session's bar step, then real orders.

The live session *is* a paper session (``paper_session.py``): the same feed, bars,
features, executor, decision rule and risk rules decide a target position on every
closed bar, and the paper twin fills it in its journal exactly as paper trading would.
After each live bar's step (already journaled) the session turns the decided target into
exchange orders:

1. operator commands from the store are applied (``algos/storage/live_commands.py``):
   halt, flatten, resume, adopt. A halted symbol sends nothing; a flatten trades to zero;
2. the daily loss limit: a loss of the allocation since 00:00 UTC beyond
   ``LiveLimits.daily_loss_limit`` flattens and halts until the next UTC day;
3. the target fraction of the allocation's equity (capital plus its PnL, from the orders
   journal) becomes a base quantity at the close; the risk rules (``live_risk.py``:
   stale data, order rate, notional caps) clip or refuse it; the plan
   (``order_planner.py``) sizes it to the exchange's filters;
4. the router (``order_router.py``) sends it with deterministic client ids and learns
   each order's fate from the user stream or REST;
5. reconciliation (``reconcile.py``) compares the exchange's account with the orders
   journal; a mismatch halts the symbol and alerts.

At start, before any bar: the orders journal's open orders are resolved by client id (a
``kill -9`` between send and acknowledgement leaves one), then the account is reconciled.
A first start on an account that already holds a position halts until a person adopts it.
The record goes to ``live/<actor>/`` (``live_export.py``), never to ``paper/``: the paper
gate's evidence stays the paper actors'.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import numpy as np
from raytrade.actors.alerts import Notifier
from raytrade.actors.bar_sequencer import LIVE
from raytrade.actors.live_config import LiveConfig
from raytrade.actors.live_export import live_objects, upload_live
from raytrade.actors.live_ledger import AppliedFill, Halt, LiveLedger
from raytrade.actors.live_risk import LiveRisk
from raytrade.actors.order_planner import Leg, OrderPlan, desired_position, plan_orders
from raytrade.actors.order_router import OrderRouter, RouterSettings
from raytrade.actors.paper_session import PaperSession
from raytrade.actors.reconcile import reconcile
from raytrade.actors.records import Fill, StepOutcome
from raytrade.actors.session_factory import SessionFactory
from raytrade.actors.venues.execution import (
    AccountSnapshot,
    ExecutionReport,
    OrderExecution,
    SymbolFilters,
    VenueBannedError,
)
from raytrade.actors.watchdog import Clock
from raytrade.algos.storage.live_commands import LiveCommand, read_commands
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.calendar import ALWAYS
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
T = TypeVar("T")


class LiveSession(PaperSession):
    """Runs one live actor until ``stop()`` (module docstring). ``execution`` is the
    venue's order side for this account (built by the caller: ``live_actor.py`` from the
    config and keys; tests pass the loopback exchange's)."""

    def __init__(self, config: LiveConfig, store: PolicyStore, execution: OrderExecution,
                 *, notifiers: Sequence[Notifier] = (), clock: Clock | None = None,
                 factory: SessionFactory | None = None) -> None:
        super().__init__(config.paper, store, notifiers=notifiers, clock=clock,
                         factory=factory)
        self.live = config
        self.execution = execution
        self.ledger: LiveLedger | None = None
        self.router: OrderRouter | None = None
        self.filters: SymbolFilters | None = None
        self.risk: LiveRisk | None = None
        self.account: AccountSnapshot | None = None
        self.stream_up = False
        self.last_reconcile: dict[str, Any] | None = None
        self.ack_latencies_ms: deque[float] = deque(maxlen=100_000)
        self.bar_to_ack_ms: deque[float] = deque(maxlen=100_000)
        self._lock = asyncio.Lock()
        self._last_price = float("nan")
        self._last_target = 0.0
        self._last_reconcile_at = 0.0
        self._command_errors: set[str] = set()
        self._bar_arrival: dict[int, float] = {}
        self._commands_lock = asyncio.Lock()
        self._last_skip = ""
        self._failing: str | None = None
        """The last temporary failure of the order side, until a success."""
        self.final_health: dict[str, Any] = {}
        """The live health at shutdown (the orders journal is closed after it)."""

    # ---- clock
    def now_ms(self) -> int:
        """Wall-clock milliseconds (journal times)."""
        return int(self.clock() * 1000)

    def market_ms(self) -> int:
        """The market's time (the replay's virtual time in replays)."""
        return self.parts.market.now_ms() if self.parts is not None else self.now_ms()

    # ---- start
    async def _before_trading(self) -> None:
        cfg = self.live
        policy = self.executor.policy
        assert policy is not None
        if cfg.market == "spot" and min(policy.manifest.env.positions) < 0:
            raise ConfigError(f"policy v{policy.version} can go short "
                              f"({policy.manifest.env.positions}), and {cfg.venue} is "
                              "long/flat: trade it on binance-futures")
        self.ledger = LiveLedger(cfg.orders_journal_path, synchronous=cfg.paper.synchronous)
        await self._sit_out_ban()
        self.filters = await self._persist("the symbol's filters",
                                           lambda: self.execution.filters(cfg.symbol))
        self.ledger.base_asset = self.filters.base_asset
        self.ledger.quote_asset = self.filters.quote_asset
        stale_ms = (int(cfg.limits.stale_after_s * 1000) if cfg.limits.stale_after_s else
                    2 * self.interval_ms)
        self.risk = LiveRisk(cfg.limits, stale_ms)
        self.router = OrderRouter(
            self.execution, self.ledger,
            RouterSettings(cfg.actor, cfg.symbol, cfg.order_type, cfg.price_band_bps,
                           cfg.fill_timeout_s, policy.manifest.env.costs.fee_bps,
                           dry_run=cfg.dry_run,
                           unknown_window_s=cfg.recv_window_ms / 1000 + 1.0),
            self.clock, on_ban=self._on_ban, on_fill=self._on_fill,
            stream_up=lambda: self.stream_up)
        self.ledger.event("start", {"venue": cfg.venue, "network": cfg.network,
                                    "dry_run": cfg.dry_run, "capital": cfg.capital},
                          cfg.symbol, self.now_ms())
        router = self.router
        for row in self.ledger.orders(open_only=True):
            cid = str(row["cid"])
            status = await self._persist(f"the fate of order {cid}",
                                         lambda cid=cid: router.resolve(cid))  # type: ignore[misc]
            self.ledger.event("resolved", {"cid": cid, "status": status}, cfg.symbol,
                              self.now_ms())
            log.info("%s: order %s from before the restart: %s", cfg.actor, cid, status)
        await self._persist("the start-up reconciliation", self._startup_baseline)
        await self._persist("the operator commands", self._apply_commands)

    async def _sit_out_ban(self) -> None:
        """A 418 ban outlives a restart (the orders journal keeps its end): send nothing
        to the exchange before it is over. Repeat offences lengthen Binance's bans."""
        assert self.ledger is not None
        until = float(self.ledger.meta("banned_until_ms") or 0)
        wait = (until - self.now_ms()) / 1000
        if wait > 0:
            log.warning("%s: the exchange banned this IP: waiting %.0f s before any "
                        "request", self.live.actor, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    async def _persist(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A start-up step that must succeed before the first order: temporary errors
        (the exchange's 429 or 5xx, a store outage) are retried after the exchange's
        ``Retry-After``, else with a backoff doubling to 30 s; a ban (418) is waited out
        (and halts the symbol once the journal is open); a stop ends the wait."""
        delay = 1.0
        while True:
            try:
                return await call()
            except VenueBannedError as exc:
                if self._stop.is_set():
                    raise
                self._on_ban(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), exc.retry_after_s + 1.0)
            except TemporaryError as exc:
                if self._stop.is_set():
                    raise
                wait = max(float(getattr(exc, "retry_after_s", 0.0) or 0.0), delay)
                log.warning("%s: %s failed, retrying in %.1f s: %s", self.live.actor, what,
                            wait, exc)
                self._failing = f"{what}: {exc}"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(wait, 60.0))
                delay = min(delay * 2, 30.0)
            else:
                self._failing = None

    async def _startup_baseline(self) -> None:
        cfg, ledger, filters = self.live, self.ledger, self.filters
        assert ledger is not None and filters is not None
        snapshot = await self._snapshot()
        if ledger.book(cfg.symbol) is None:
            held = snapshot.positions.get(cfg.symbol, 0.0)
            price = snapshot.prices.get(cfg.symbol, float("nan"))
            dust = abs(held) < filters.min_qty or abs(held) * price < filters.min_notional
            # the allocation's equity is the capital: a held position is part of it
            cash = cfg.capital - (held * price if held else 0.0)
            ledger.set_baseline(cfg.symbol, held, cash, self.now_ms(), by="raytrade",
                                why="first start")
            if not dust:
                self._halt("reconciliation", f"the account already holds {held:g} "
                           f"{filters.base_asset} at the first start: look, then run "
                           "`raytrade live reconcile --adopt`", "raytrade")
        await self._reconcile("start", snapshot)

    # ---- tasks beside the feed
    def _extra_tasks(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        tasks: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("commands", self._poll_commands()), ("reconcile", self._reconcile_loop())]
        if not self.live.dry_run:
            tasks.append(("user_stream", self.execution.user_stream().run(
                self._on_report, self._on_stream_state)))
        return tasks

    def _on_report(self, report: ExecutionReport) -> None:
        if self.router is not None:
            self.router.on_report(report)

    def _on_stream_state(self, up: bool, why: str) -> None:
        if up != self.stream_up and self.ledger is not None:
            self.ledger.event("stream_up" if up else "stream_down", why, self.live.symbol,
                              self.now_ms())
        self.stream_up = up

    async def _poll_commands(self) -> None:
        while True:
            await asyncio.sleep(self.live.command_poll_s)
            await self._commands_now()

    async def _commands_now(self) -> None:
        """Apply the pending operator commands; a store or exchange failure is logged
        (the command stays pending and is applied at the next poll)."""
        try:
            await self._apply_commands()
        except TemporaryError as exc:
            log.warning("%s: reading operator commands failed: %s", self.live.actor, exc)
        except VenueBannedError as exc:
            self._on_ban(exc)

    async def _reconcile_loop(self) -> None:
        """Reconcile every ``reconcile_every_s``; keep the order connection warm (an
        order after minutes of silence would otherwise pay for a new TLS handshake)."""
        warm = getattr(self.execution, "warm", None)
        last_warm = self.clock()
        while True:
            await asyncio.sleep(min(self.live.reconcile_every_s, 5.0))
            if warm is not None and self.clock() - last_warm >= 20.0:
                last_warm = self.clock()
                try:
                    await warm()
                except VenueBannedError as exc:
                    self._on_ban(exc)
                except TemporaryError as exc:
                    log.warning("%s: keeping the order connection warm failed: %s",
                                self.live.actor, exc)
            due = self.clock() - self._last_reconcile_at >= self.live.reconcile_every_s
            if due:
                async with self._lock:
                    try:
                        await self._reconcile("periodic")
                    except VenueBannedError as exc:
                        self._on_ban(exc)
                    except TemporaryError as exc:
                        log.warning("%s: reconciliation failed: %s", self.live.actor, exc)

    # ---- operator commands
    async def _apply_commands(self) -> None:
        """Apply every operator command for this actor that the journal has not applied
        (by id, so an issuer's clock, ahead or behind, never hides one). A journal that
        has never seen commands (a first start) takes over only the standing halt of the
        history: the last halt, flatten or resume for this actor; a standing flatten
        becomes a halt (the account's holdings predate this journal: a person decides)."""
        async with self._commands_lock:
            ledger = self.ledger
            assert ledger is not None
            applied = ledger.applied_commands()
            commands, errors = await asyncio.to_thread(
                functools.partial(read_commands, self.store.blobs, skip=applied))
            for error in errors:
                if error not in self._command_errors:
                    self._command_errors.add(error)
                    self._alert("command_invalid", f"an operator command was not "
                                f"understood and is ignored: {error}")
            for c in commands:  # another actor's: set aside, never fetched again
                if not c.applies_to(self.live.actor):
                    ledger.command_applied(c.id, f"{c.action} (not for this actor)", c.by,
                                           self.now_ms())
            ours = [c for c in commands if c.applies_to(self.live.actor)]
            if ledger.meta("commands_seen") is None:
                standing = [c for c in ours if c.action in ("halt", "flatten", "resume")]
                if standing and standing[-1].action != "resume":
                    c = standing[-1]
                    self._halt("operator", f"standing {c.action} by {c.by} from before this "
                               f"journal: {c.reason or 'no reason given'}", c.by)
                for c in ours:
                    ledger.command_applied(c.id, c.action, c.by, self.now_ms())
                ledger.set_meta("commands_seen", "1")
                return
            for command in ours:
                async with self._lock:
                    await self._apply(command)
                ledger.command_applied(command.id, command.action, command.by,
                                       self.now_ms())

    async def _apply(self, command: LiveCommand) -> None:
        ledger, sym = self.ledger, self.live.symbol
        assert ledger is not None
        detail = f"{command.action} by {command.by}: {command.reason or 'no reason given'}"
        log.warning("%s: operator command %s", self.live.actor, detail)
        if command.action == "halt":
            self._halt("operator", command.reason or "halted by an operator", command.by)
            await self._cancel_open()
        elif command.action == "flatten":
            self._halt("flatten", command.reason or "flattened by an operator", command.by)
            await self._cancel_open()
            await self._flatten(command.at_ms)
        elif command.action == "resume":
            lifted = ledger.lift_halts(sym, ("operator", "flatten", "banned", "daily_loss"),
                                       event="resume", by=command.by, detail=detail,
                                       at_ms=self.now_ms())
            if lifted:
                self._working_target(None)  # the position moved without the policy
            if ledger.halt(sym) is not None:
                ledger.event("resume_refused", f"{detail}: a reconciliation halt needs "
                             "`raytrade live reconcile --adopt`", sym, self.now_ms(),
                             command.by)
        elif command.action == "adopt":
            await self._adopt(command, detail)

    async def _adopt(self, command: LiveCommand, detail: str) -> None:
        ledger, sym = self.ledger, self.live.symbol
        assert ledger is not None
        snapshot = await self._snapshot()
        foreign = [o.client_order_id for o in snapshot.open_orders if o.symbol == sym
                   and o.client_order_id not in self._open_cids()]
        if foreign:
            ledger.event("adopt_refused", f"{detail}: cancel the open orders the journal "
                         f"does not know first ({', '.join(foreign)})", sym, self.now_ms(),
                         command.by)
            return
        book = ledger.book(sym)
        held = snapshot.positions.get(sym, 0.0)
        price = snapshot.prices.get(sym, 0.0)
        # the change nobody journaled is valued at the current price and taken out of
        # the allocation's cash, so adopting it does not move the allocation's equity
        before = book.position if book else 0.0
        cash = (book.cash if book else self.live.capital) - (held - before) * price
        ledger.set_baseline(sym, held, cash, self.now_ms(), by=command.by,
                            why=f"adopted: {detail}")
        self._working_target(None)
        ledger.lift_halts(sym, ("reconciliation",), event="adopt", by=command.by,
                          detail=detail, at_ms=self.now_ms())
        await self._reconcile("adopt", snapshot)

    def _halt(self, kind: str, reason: str, by: str) -> None:
        """Halt for ``kind`` (each kind is lifted on its own), journaled and alerted."""
        ledger = self.ledger
        assert ledger is not None
        if ledger.add_halt(self.live.symbol, Halt(kind, reason, by, self.now_ms()),
                           detail=reason):
            self._alert("reconciliation" if kind == "reconciliation" else "live_halt",
                        f"{self.live.symbol} halted ({kind}) by {by}: {reason}")

    def _working_target(self, target: float | None) -> None:
        """The target the journal's position was last traded to in full (None: none,
        after a flatten, adopt or resume): live trades when the decided target differs,
        and holds its units otherwise, as the shared accounting does."""
        assert self.ledger is not None
        self.ledger.set_meta("working_target", "" if target is None else repr(target))

    def _on_ban(self, exc: VenueBannedError) -> None:
        """A 418: halt until a person resumes, and remember the ban's end across
        restarts (``_sit_out_ban``)."""
        if self.ledger is None:
            return
        until = self.now_ms() + int(exc.retry_after_s * 1000)
        self.ledger.set_meta("banned_until_ms", str(until))
        self._halt("banned", f"the exchange banned this IP (HTTP 418) for "
                   f"{exc.retry_after_s:.0f} s: {exc}", "exchange")

    # ---- the bar
    async def _after_step(self, outcome: StepOutcome) -> None:
        """Commands, then the bar's orders. A temporary failure (the exchange's 429 or
        5xx, a store outage) skips what is left of this bar, journaled: the next bar
        plans afresh from the journal, and an order left of unknown fate is resolved by
        its client id at the next reconciliation."""
        if self.ledger is None or self.router is None:
            return
        await self._commands_now()
        async with self._lock:
            try:
                await self._trade_bar(outcome)
                self._failing = None
            except VenueBannedError as exc:
                self._on_ban(exc)
            except TemporaryError as exc:
                self._failing = f"bar {outcome.bar.ts}: {exc}"
                log.warning("%s: the bar's order flow failed: %s", self.live.actor, exc)
                self.ledger.event("bar_failed", {"bar": outcome.bar.ts, "error": str(exc)},
                                  self.live.symbol, self.now_ms())

    async def _trade_bar(self, outcome: StepOutcome) -> None:
        cfg, ledger = self.live, self.ledger
        assert ledger is not None and self.filters is not None and self.risk is not None
        bar = outcome.bar
        price = bar.close
        self._last_price = price
        if isinstance(outcome.result, Fill):  # the paper twin's fill: the slippage reference
            decided_at = outcome.result.bar_ts - self.interval_ms * self._latency_bars()
            calendar = self.trader.calendar if self.trader is not None else ALWAYS
            if not calendar.always:  # the decision bar may lie before a weekend
                decided_at = calendar.start_for_bars(outcome.result.bar_ts,
                                                     self._latency_bars(), self.interval_ms)
            ledger.set_paper_price(cfg.symbol, decided_at, outcome.result.price)
        decision = outcome.decision
        book = ledger.book(cfg.symbol)
        if book is None:
            return
        target = decision.decided if decision is not None else self._last_target
        self._last_target = target
        close_ms = bar.ts + self.interval_ms
        if outcome.kind == LIVE and decision is not None:
            self.filters = await self.execution.filters(cfg.symbol)  # refreshed when due
            self._daily_loss(book.equity(price))
            kinds = {h.kind for h in ledger.halts(cfg.symbol)}
            working = ledger.meta("working_target") or ""
            if not kinds and (working == "" or float(working) != target):
                equity = book.equity(price)
                desired = desired_position(target, equity, price, self.live.market,
                                           fee_rate=self._fee_rate())
                if await self._trade_to(desired, price, bar_ts=bar.ts,
                                        version=decision.version, close_ms=close_ms,
                                        operator=False):
                    self._working_target(target)
            elif kinds & {"flatten", "daily_loss"}:
                await self._flatten(bar.ts)
            await self._reconcile("bar")
            paper = self.trader.broker.equity if self.trader is not None else None
            ledger.mark(cfg.symbol, bar.ts, price, target, paper)  # live bars only

    def _latency_bars(self) -> int:
        return self.trader.broker.config.latency_bars if self.trader is not None else 1

    def _daily_loss(self, equity: float) -> None:
        ledger, sym = self.ledger, self.live.symbol
        assert ledger is not None
        day = self.now_ms() // DAY_MS
        start = ledger.day_start(sym, day, equity)
        halt = next((h for h in ledger.halts(sym) if h.kind == "daily_loss"), None)
        if halt is not None and halt.at_ms // DAY_MS < day:
            ledger.lift_halts(sym, ("daily_loss",), event="resume", by="raytrade",
                              detail="a new UTC day: the daily loss limit resets",
                              at_ms=self.now_ms())
            self._working_target(None)
            return
        loss = start - equity
        if loss >= self.live.limits.daily_loss_limit and halt is None:
            self._halt("daily_loss", f"the allocation lost {loss:.2f} since 00:00 UTC "
                       f"(limit {self.live.limits.daily_loss_limit:g}): flat until the "
                       "next UTC day", "raytrade")

    async def _flatten(self, at_ms: int) -> None:
        """Close the position the *exchange* holds (which the journal may not know after
        a mismatch), at the exchange's price."""
        if self.filters is None:
            return
        self._working_target(None)
        snapshot = await self._snapshot()
        held = snapshot.positions.get(self.live.symbol, 0.0)
        price = snapshot.prices.get(self.live.symbol, self._last_price)
        if abs(held) < self.filters.step_size or not price > 0:
            return
        await self._trade_to(0.0, price, bar_ts=at_ms, version=None, close_ms=self.market_ms(),
                             operator=True, current=held)

    async def _trade_to(self, desired: float, price: float, *, bar_ts: int,
                        version: int | None, close_ms: int, operator: bool,
                        current: float | None = None) -> bool:
        """Orders from the position (the journal's, or ``current``) to ``desired`` (base
        units) under the risk rules; True when the plan went through in full (every leg
        filled, or nothing needed). Orders the journal still has open are resolved by
        client id first; while one stays open nothing new is planned."""
        ledger, risk, filters, router = self.ledger, self.risk, self.filters, self.router
        assert ledger and risk and filters and router
        sym = self.live.symbol
        for row in ledger.orders(open_only=True):
            await router.resolve(str(row["cid"]))
        pending = [str(r["cid"]) for r in ledger.orders(open_only=True)]
        if pending:
            ledger.event("pending", f"orders still open, nothing new planned: "
                         f"{', '.join(pending)}", sym, self.now_ms())
            return False
        book = ledger.book(sym)
        assert book is not None
        position = book.position if current is None else current
        if not operator:
            desired = self._affordable(position, desired, price)
        plan = plan_orders(position, desired, filters, price, self.live.market)
        # stale data is judged on the wall clock live (a late bar re-anchors the market
        # clock to its own close), on the replay's clock in replays
        now = self.now_ms() if self.config.speed == 1.0 else self.market_ms()
        verdict = risk.check(position, desired, price, bar_close_ms=close_ms, now_ms=now,
                             other_notional=self._other_notional(), legs=len(plan.legs),
                             operator=operator)
        if verdict.refusal:
            if plan.legs:
                ledger.event("risk", verdict.refusal, sym, self.now_ms())
                log.warning("%s: no order: %s", self.live.actor, verdict.refusal)
            return False
        if verdict.clipped:
            ledger.event("risk", verdict.clipped, sym, self.now_ms())
            plan = plan_orders(position, verdict.desired, filters, price, self.live.market)
        dust = "under one step" in plan.skipped  # rounding, not a decision: not journaled
        if plan.skipped and not dust and plan.skipped != self._last_skip:
            ledger.event("skipped", plan.skipped, sym, self.now_ms())
        self._last_skip = plan.skipped
        if not plan.legs:
            return True
        if operator:
            plan = OrderPlan(plan.desired, plan.current,
                             tuple(Leg(leg.leg + 2, leg.side, leg.qty, leg.reduce_only)
                                   for leg in plan.legs), plan.skipped)
        risk.sent(now, len(plan.legs))
        results = await router.execute(plan, filters, bar_ts=bar_ts, version=version,
                                       price=price)
        for result in results:
            if result.ack_latency_ms is not None:
                self.ack_latencies_ms.append(result.ack_latency_ms)
        first = results[0] if results else None
        if first is not None and first.acked_at is not None and not operator:
            arrived = self._bar_arrival.get(bar_ts)
            if arrived is not None:
                self.bar_to_ack_ms.append((first.acked_at - arrived) * 1000.0)
        return len(results) == len(plan.legs) and all(
            r.status in ("filled", "dry_run") for r in results)

    def _fee_rate(self) -> float:
        """The policy's fee rate (a fraction): its trained cost model sizes trades."""
        return self.router.settings.commission_bps / 1e4 if self.router else 0.0

    def _affordable(self, position: float, desired: float, price: float) -> float:
        """On spot, a buy the account's quote balance cannot pay for (at the limit price
        through the band, plus commission) is clipped to what it can: Binance refuses
        the whole order otherwise (-2010)."""
        snap, filters = self.account, self.filters
        if self.live.market != "spot" or snap is None or filters is None or \
                desired <= position:
            return desired
        fee = self._fee_rate()
        band = self.live.price_band_bps / 1e4 if self.live.order_type == "limit" else 0.0
        cash = snap.balances.get(filters.quote_asset, 0.0)
        return min(desired, position + max(cash, 0.0) / (price * (1 + band) * (1 + fee)))

    async def _cancel_open(self) -> None:
        ledger = self.ledger
        assert ledger is not None and self.router is not None
        if self.live.dry_run:
            return
        for order in await self.execution.open_orders(self.live.symbol):
            if ledger.order(order.client_order_id) is not None:
                state = await self.execution.cancel(self.live.symbol, order.client_order_id)
                self.router.apply_state(state)

    def _other_notional(self) -> float:
        snap = self.account
        if snap is None:
            return 0.0
        return sum(abs(snap.positions.get(s, 0.0)) * snap.prices.get(s, 0.0)
                   for s in self.live.run_symbols if s != self.live.symbol)

    # ---- reconciliation
    async def _snapshot(self) -> AccountSnapshot:
        self.account = await self.execution.account(self.live.run_symbols,
                                                     open_orders_for=(self.live.symbol,))
        return self.account

    def _open_cids(self) -> set[str]:
        assert self.ledger is not None
        return {str(r["cid"]) for r in self.ledger.orders(open_only=True)}

    async def _reconcile(self, why: str, snapshot: AccountSnapshot | None = None) -> None:
        ledger, sym, router = self.ledger, self.live.symbol, self.router
        assert ledger is not None and self.filters is not None and router is not None
        self._last_reconcile_at = self.clock()
        for row in ledger.orders(open_only=True):
            await router.resolve(str(row["cid"]))
        snapshot = snapshot or await self._snapshot()
        book = ledger.book(sym)
        if book is None:
            return
        result = reconcile(book.position, snapshot.positions.get(sym, 0.0),
                           [o for o in snapshot.open_orders if o.symbol == sym],
                           self._open_cids(), self.filters.step_size / 2)
        self.last_reconcile = {"at_ms": self.now_ms(), "ok": result.ok,
                               "detail": f"{why}: {result.detail}"}
        if result.ok:
            if why != "bar":
                ledger.event("reconciled", f"{why}: {result.detail}", sym, self.now_ms())
            return
        halt = ledger.halt(sym)
        if halt is None or halt.kind != "reconciliation" or halt.reason != result.detail:
            ledger.event("mismatch", f"{why}: {result.detail}", sym, self.now_ms())
        self._halt("reconciliation", result.detail, "raytrade")

    # ---- fills, health, export
    def _on_fill(self, fill: AppliedFill) -> None:
        log.info("%s: fill %s %s %.12g @ %.8g (commission %.8g %s%s)", self.live.actor,
                 fill.cid, fill.side, fill.qty, fill.price, fill.commission,
                 fill.commission_asset, ", estimated" if fill.estimated else "")

    def _after(self, out: StepOutcome) -> None:
        arrived = self._arrivals.get((self.config.symbol, out.bar.ts))
        if arrived is not None:
            self._bar_arrival[out.bar.ts] = arrived
            if len(self._bar_arrival) > 1000:
                self._bar_arrival.pop(next(iter(self._bar_arrival)))
        super()._after(out)

    def live_health(self) -> dict[str, Any]:
        """The live part of the health record (``live/<actor>/health.json``)."""
        ledger, cfg = self.ledger, self.live
        halt = ledger.halt(cfg.symbol) if ledger is not None else None
        book = ledger.book(cfg.symbol) if ledger is not None else None
        price = self._last_price
        equity = book.equity(price) if book is not None and price > 0 else None
        day_pnl = None
        if ledger is not None and equity is not None:
            start = ledger.day_start_equity(cfg.symbol, self.now_ms() // DAY_MS)
            day_pnl = None if start is None else equity - start
        faults = list(self.health().get("unresolved_faults", []))
        if halt is not None:
            faults.append(f"halted ({halt.kind}): {halt.reason}")
        if not self.stream_up and not cfg.dry_run:
            faults.append("user data stream down: fills from REST")
        if self._failing:
            faults.append(f"exchange failing: {self._failing}")

        def pct(values: deque[float], q: float) -> float | None:
            return round(float(np.percentile(np.array(values), q)), 3) if values else None

        return {
            "actor": cfg.actor, "symbol": cfg.symbol, "venue": cfg.venue,
            "market": cfg.market, "network": cfg.network, "dry_run": cfg.dry_run,
            "state": self.state, "updated_at": self.clock(),
            "halted": None if halt is None else {"kind": halt.kind, "reason": halt.reason,
                                                 "by": halt.by, "at_ms": halt.at_ms},
            "position_qty": book.position if book is not None else None,
            "target": self._last_target, "equity": equity, "day_pnl": day_pnl,
            "price": price if price > 0 else None,
            "open_orders": ledger.orders(open_only=True) if ledger is not None else [],
            "stream_up": self.stream_up, "last_reconcile": self.last_reconcile,
            "order_latency_ms": {"p50": pct(self.ack_latencies_ms, 50),
                                 "p99": pct(self.ack_latencies_ms, 99)},
            "bar_to_ack_ms": {"p50": pct(self.bar_to_ack_ms, 50),
                              "p99": pct(self.bar_to_ack_ms, 99)},
            "unresolved_faults": faults,
        }

    async def _export_now(self) -> None:
        if self.ledger is None:
            return
        objects = live_objects(self.ledger, self.live.symbol, self.live_health())
        await asyncio.to_thread(upload_live, self.store.blobs, self.live.actor, objects)

    def export(self, health: dict[str, Any] | None = None) -> bool:
        """Write the live record now (shutdown and tests)."""
        self._last_export = self.clock()
        if self.ledger is None:
            return False
        upload_live(self.store.blobs, self.live.actor,
                    live_objects(self.ledger, self.live.symbol,
                                 health or self.live_health()))
        return True

    async def _before_shutdown(self) -> None:
        if self.ledger is None:
            return
        book = self.ledger.book(self.live.symbol)
        log.info("%s: stopping with position %s on %s", self.live.actor,
                 None if book is None else f"{book.position:g}", self.live.symbol)
        self.ledger.event("shutdown", {"position": None if book is None else book.position},
                          self.live.symbol, self.now_ms())
        self.final_health = {**self.live_health(), "state": "stopped"}
        self.export(self.final_health)
        self.ledger.close()
        self.ledger = None
        await self.execution.close()


def wall_clock() -> float:
    """Seconds (the default clock)."""
    return time.time()
