"""Sends a plan's orders and learns their fate, never placing one twice.

For each leg, in order (a futures close before the open):

1. the intent is committed to the orders journal (``live_ledger.py``) with its
   deterministic client id; an id the journal already has is *resolved*, never resent;
2. the request goes out. A ``RateLimitedError`` waits the exchange's ``Retry-After`` (up
   to ``max_wait_s``) and retries; other ``TemporaryError``s retry with backoff; an
   ``OrderFateUnknownError`` (timeout, 5xx, a dropped connection after sending) is
   resolved by querying the client id before anything else: found, its state is taken;
   not found, it is queried again until the request's ``recvWindow`` has passed (a
   request still inside the exchange may land late, and an order that fills at once is
   final, so Binance would accept its id a second time); only an order still absent
   then was never placed, and the same id is sent again. ``VenueBannedError`` halts the
   symbol (the session's ``on_ban``);
3. the acknowledgement is journaled; fills come from the user stream (``on_report``)
   and, when the stream has not reported the order final within ``fill_timeout_s`` (or
   is down), from a REST query, whose commission is estimated from ``commission_bps``.

A leg the exchange rejects (insufficient balance, a filter) is journaled with the
exchange's code and message, and the plan stops there (the next bar plans afresh from the
journal's position). Times: the injected ``clock`` (seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raytrade.actors.live_ledger import AppliedFill, LiveLedger
from raytrade.actors.order_planner import Leg, OrderPlan, client_order_id, limit_price
from raytrade.actors.venues.execution import (
    ExecutionReport,
    OrderExecution,
    OrderFateUnknownError,
    OrderRequest,
    OrderState,
    RateLimitedError,
    SymbolFilters,
    VenueBannedError,
)
from raytrade.envs.errors import TemporaryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterSettings:
    """How orders are sent (``LiveConfig`` fills these)."""

    actor: str
    symbol: str
    order_type: str = "limit"
    price_band_bps: float = 50.0
    fill_timeout_s: float = 3.0
    commission_bps: float = 10.0
    """Commission rate for fills learnt from REST alone (estimated)."""
    max_wait_s: float = 30.0
    """Longest rate-limit wait before a leg is given up (journaled)."""
    retries: int = 3
    """Attempts on temporary errors."""
    dry_run: bool = False
    unknown_window_s: float = 6.0
    """How long after sending an order whose fate is unknown may still appear: the
    request's ``recvWindow`` (5 s) plus a margin for the clocks."""


@dataclass(frozen=True)
class LegResult:
    """What became of one leg."""

    cid: str
    status: str
    filled_qty: float
    reason: str
    ack_latency_ms: float | None
    """From the call to send to the acknowledgement (None: no acknowledgement)."""
    acked_at: float | None = None
    """The clock (seconds) at the acknowledgement."""


class OrderRouter:
    """One actor's order sending (module docstring)."""

    def __init__(self, execution: OrderExecution, ledger: LiveLedger,
                 settings: RouterSettings, clock: Callable[[], float], *,
                 on_ban: Callable[[VenueBannedError], None] = lambda exc: None,
                 on_fill: Callable[[AppliedFill], None] = lambda fill: None,
                 stream_up: Callable[[], bool] = lambda: False) -> None:
        self.execution = execution
        self.ledger = ledger
        self.settings = settings
        self.clock = clock
        self.on_ban = on_ban
        self.on_fill = on_fill
        self.stream_up = stream_up
        self._final: dict[str, asyncio.Event] = {}

    def clock_ms(self) -> int:
        """Journal time, ms."""
        return int(self.clock() * 1000)

    # ---- the user stream
    def on_report(self, report: ExecutionReport) -> None:
        """An order update from the user stream: status and cumulative fill."""
        if self.ledger.order(report.client_order_id) is None:
            return  # not ours (another bot on the account): reconciliation judges it
        now = self.clock_ms()
        if report.cum_qty > 0:
            fill_id = (f"t{report.trade_id}" if report.trade_id >= 0 else
                       f"{report.client_order_id}:cum:{report.cum_qty:.12g}")
            known = self._filled(report.client_order_id)
            exact = abs(report.last_qty - (report.cum_qty - known)) < 1e-12
            commission = report.commission if exact else self._estimate(
                report.side, report.cum_qty, report.cum_quote, report.client_order_id)
            applied = self.ledger.progress(
                report.client_order_id, report.cum_qty, report.cum_quote, report.event_ms,
                fill_id=fill_id, commission=commission,
                commission_asset=report.commission_asset or self._fee_asset(report.side),
                estimated=not exact)
            if applied is not None:
                self.on_fill(applied)
        self.ledger.acknowledge(_state_of(report), now)
        waiting = self._final.get(report.client_order_id)
        if waiting is not None:
            waiting.set()  # wakes the ``_settle`` waiting for this order

    def _event(self, cid: str) -> asyncio.Event:
        if cid not in self._final:
            self._final[cid] = asyncio.Event()
        return self._final[cid]

    # ---- a plan
    async def execute(self, plan: OrderPlan, filters: SymbolFilters, *, bar_ts: int,
                      version: int | None, price: float) -> list[LegResult]:
        """Send the plan's legs in order; stop at the first leg that is not filled."""
        results = []
        for leg in plan.legs:
            result = await self.send(leg, filters, bar_ts=bar_ts, version=version,
                                     price=price)
            results.append(result)
            if result.status != "filled" and result.status != "dry_run":
                break
        return results

    def request(self, leg: Leg, filters: SymbolFilters, *, bar_ts: int,
                version: int | None, price: float) -> OrderRequest:
        """The order for one leg."""
        s = self.settings
        cid = client_order_id(s.actor, bar_ts, version, leg.leg)
        if s.order_type == "limit":
            return OrderRequest(cid, s.symbol, leg.side, leg.qty, "limit",
                                limit_price(price, leg.side, s.price_band_bps, filters),
                                leg.reduce_only)
        return OrderRequest(cid, s.symbol, leg.side, leg.qty, "market", None, leg.reduce_only)

    async def send(self, leg: Leg, filters: SymbolFilters, *, bar_ts: int,
                   version: int | None, price: float) -> LegResult:
        """One leg (module docstring)."""
        order = self.request(leg, filters, bar_ts=bar_ts, version=version, price=price)
        cid = order.client_order_id
        now = self.clock_ms()
        if self.settings.dry_run:
            self.ledger.intent(order, bar_ts=bar_ts, version=version, leg=leg.leg,
                               ref_price=price, at_ms=now, status="dry_run")
            return LegResult(cid, "dry_run", 0.0, "dry run: not sent", None)
        if not self.ledger.intent(order, bar_ts=bar_ts, version=version, leg=leg.leg,
                                  ref_price=price, at_ms=now):
            status = await self.resolve(cid)  # decided before (a restart): never resend
            return LegResult(cid, status, self._filled(cid), "already sent", None)
        started = self.clock()
        state = await self._place(order)
        acked_at = self.clock()
        if state is None:
            return LegResult(cid, self._status(cid), self._filled(cid),
                             str(self._row(cid).get("reason", "")), None)
        ack_ms = (acked_at - started) * 1000.0
        self.apply_trades(state)
        self.ledger.acknowledge(state, self.clock_ms())
        if state.status == "rejected":
            log.warning("%s: order %s rejected: %s", self.settings.actor, cid, state.reason)
            return LegResult(cid, "rejected", 0.0, state.reason, ack_ms, acked_at)
        await self._settle(cid, state)
        return LegResult(cid, self._status(cid), self._filled(cid),
                         str(self._row(cid).get("reason", "")), ack_ms, acked_at)

    async def _place(self, order: OrderRequest) -> OrderState | None:
        """Send with retries (module docstring); None when nothing could be placed."""
        cid = order.client_order_id
        waited = 0.0
        attempt = 0
        while True:
            self.ledger.set_status(cid, "sending", "", self.clock_ms(), attempt=True)
            sent_at = self.clock()
            try:
                return await self.execution.place(order)
            except RateLimitedError as exc:
                wait = max(exc.retry_after_s, 0.05)
                if waited + wait > self.settings.max_wait_s:
                    self.ledger.set_status(cid, "rejected", f"rate limited: {exc}",
                                           self.clock_ms())
                    return None
                log.warning("%s: rate limited, retrying %s in %.2f s", self.settings.actor,
                            cid, wait)
                self.ledger.event("rate_limited", {"cid": cid, "retry_after_s": wait},
                                  self.settings.symbol, self.clock_ms())
                waited += wait
                await asyncio.sleep(wait)
            except OrderFateUnknownError as exc:
                log.warning("%s: order %s fate unknown (%s): querying it",
                            self.settings.actor, cid, exc)
                self.ledger.event("fate_unknown", {"cid": cid, "error": str(exc)},
                                  self.settings.symbol, self.clock_ms())
                state = await self._absent_for_good(order.symbol, cid, sent_at)
                if state is not None:
                    return state
                attempt += 1  # never placed, and now it never will be: the same id again
                if attempt > self.settings.retries:
                    self.ledger.set_status(cid, "lost", f"not placed after {attempt} "
                                           f"attempts: {exc}", self.clock_ms())
                    return None
            except VenueBannedError as exc:
                self.ledger.set_status(cid, "rejected", f"banned: {exc}", self.clock_ms())
                self.on_ban(exc)
                return None
            except TemporaryError as exc:
                attempt += 1
                if attempt > self.settings.retries:
                    self.ledger.set_status(cid, "rejected", f"not sent: {exc}",
                                           self.clock_ms())
                    return None
                await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))

    async def _absent_for_good(self, symbol: str, cid: str, sent_at: float
                               ) -> OrderState | None:
        """After an unknown fate: the order's state if the exchange has it, else None once
        it cannot appear any more. A request may still be inside the exchange after the
        gateway gave up (a 5xx, a timeout), and an order that lands and fills at once is
        final, so a second request with the same id would be accepted: an absent order
        is queried again until ``unknown_window_s`` after it was sent (Binance's
        ``recvWindow``: the matching engine refuses a request older than that), and only
        then counts as never placed."""
        while True:
            state = await self._query_until_known(symbol, cid)
            if state is not None:
                return state
            left = sent_at + self.settings.unknown_window_s - self.clock()
            if left <= 0:
                return None
            await asyncio.sleep(min(left + 0.05, 0.5))

    async def _query_until_known(self, symbol: str, cid: str) -> OrderState | None:
        """Query ``cid`` until the exchange answers (temporary errors retried)."""
        for attempt in range(self.settings.retries + 3):
            try:
                return await self.execution.query(symbol, cid)
            except RateLimitedError as exc:
                await asyncio.sleep(max(exc.retry_after_s, 0.05))
            except TemporaryError:
                await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
        raise OrderFateUnknownError(f"order {cid}: the exchange did not answer queries")

    async def _settle(self, cid: str, state: OrderState) -> None:
        """Wait for the stream to report the order final and filled at least as far as
        acknowledged; else take its state from REST."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.fill_timeout_s
        while not self._settled(cid, state) and self.stream_up():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            event = self._event(cid)
            event.clear()
            if self._settled(cid, state):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        if not self._settled(cid, state):
            fresh = await self._query_until_known(self.settings.symbol, cid)
            if fresh is not None:
                self.apply_state(fresh)
        self._final.pop(cid, None)

    def _settled(self, cid: str, state: OrderState) -> bool:
        row = self._row(cid)
        return (row.get("status") in ("filled", "canceled", "rejected", "expired", "lost")
                and self._filled(cid) >= state.filled_qty - 1e-12)

    async def resolve(self, cid: str) -> str:
        """Learn the fate of a journaled order by its client id (restarts, unknown
        fates): its state from the exchange, or ``lost`` if it was never placed."""
        row = self._row(cid)
        state = await self._query_until_known(str(row["symbol"]), cid)
        if state is None:
            if row["status"] in ("sending", "new", "partially_filled"):
                self.ledger.set_status(cid, "lost", "the exchange has no such order: never "
                                       "placed", self.clock_ms())
        else:
            self.apply_state(state)
        return self._status(cid)

    def apply_trades(self, state: OrderState) -> None:
        """Fills an acknowledgement lists with their commissions (spot ``FULL``), applied
        in order as cumulative progress: exact, and ignored when the stream told first
        (the same trade ids)."""
        row = self.ledger.order(state.client_order_id)
        if row is None or not state.trades:
            return
        cum_qty, cum_quote = 0.0, 0.0
        for trade in state.trades:
            cum_qty += trade.qty
            cum_quote += trade.qty * trade.price
            applied = self.ledger.progress(
                state.client_order_id, cum_qty, cum_quote, self.clock_ms(),
                fill_id=f"t{trade.trade_id}", commission=trade.commission,
                commission_asset=trade.commission_asset, estimated=False)
            if applied is not None:
                self.on_fill(applied)

    def apply_state(self, state: OrderState) -> None:
        """An order's state from REST: status, and fills beyond the journal's."""
        if state.filled_qty > 0 and state.avg_price is not None:
            cum_quote = state.filled_qty * state.avg_price
            applied = self.ledger.progress(
                state.client_order_id, state.filled_qty, cum_quote, self.clock_ms(),
                fill_id=f"{state.client_order_id}:cum:{state.filled_qty:.12g}",
                commission=self._estimate(state.side, state.filled_qty, cum_quote,
                                          state.client_order_id),
                commission_asset=self._fee_asset(state.side), estimated=True)
            if applied is not None:
                self.on_fill(applied)
        self.ledger.acknowledge(state, self.clock_ms())

    def _estimate(self, side: str, cum_qty: float, cum_quote: float, cid: str) -> float:
        row = self._row(cid)
        qty = cum_qty - float(row.get("filled_qty", 0.0))
        quote = cum_quote - float(row.get("cum_quote", 0.0))
        rate = self.settings.commission_bps / 1e4
        if self._fee_asset(side) == self.ledger.base_asset:
            return qty * rate
        return quote * rate

    def _fee_asset(self, side: str) -> str:
        """Spot buys pay commission in the base asset; everything else in quote."""
        if getattr(self.execution, "market", "spot") == "spot" and side == "buy":
            return self.ledger.base_asset
        return self.ledger.quote_asset

    def _row(self, cid: str) -> dict[str, Any]:
        return self.ledger.order(cid) or {}

    def _status(self, cid: str) -> str:
        return str(self._row(cid).get("status", "unknown"))

    def _filled(self, cid: str) -> float:
        return float(self._row(cid).get("filled_qty", 0.0))


def _state_of(report: ExecutionReport) -> OrderState:
    avg = report.cum_quote / report.cum_qty if report.cum_qty > 0 else None
    return OrderState(report.client_order_id, report.venue_order_id, report.symbol,
                      report.side, report.status, report.qty, report.cum_qty, avg,
                      report.reason, report.event_ms)
