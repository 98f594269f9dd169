"""MetaTrader 4/5 order execution through DWX Connect (``execution.OrderExecution``,
market ``futures``: a signed position per symbol).

MetaTrader keeps every market order as its own *ticket* (a hedging account); raytrade
trades one netted position per symbol. The position of a symbol is the sum of the open
tickets with the symbol's magic number (``dwx_symbols.py``), buys positive, in base units
(lots x contract size). An order is carried out against that book:

- an order against the position closes tickets, oldest first (``CLOSE_ORDER ticket,lots``:
  the last one partially when the order ends inside it); what is left of a non reduce-only
  order opens a new ticket (``OPEN_ORDER symbol,buy|sell,lots,0,0,0,magic,comment,0``, a
  market order at the EA's bid/ask). A reduce-only order never opens one;
- ``limit`` orders are marketable limits (``execution.OrderRequest``): MetaTrader market
  orders take no limit, so the band is checked against the EA's bid/ask before sending
  (beyond it: ``expired``, nothing sent) and the fill is at the EA's price;
- one order at a time; each step waits for the EA's reply (``dwx_requests.py``) and the
  orders file's change. A fill's price is the new ticket's ``open_price``, or for a close
  the closed ticket's ``close_price`` from ``GET_HISTORIC_TRADES`` (the bid/ask at the
  close when the history does not list it); its commission is the ticket's (MT4 charges
  it at the open), converted to the quote currency.

Client order ids ride in the new ticket's comment (``dwx_book.order_comment``).

Refusals (an EA or broker ERROR: lots out of range, not enough money, a requote, the
market closed) are ``rejected`` with ``"<error_type> <description>"``. A command the EA
did not read in time (withdrawn) or read without answering raises
``OrderFateUnknownError``: the step is remembered and ``query`` decides it from the
orders file (a ticket with the comment appeared; the closed ticket shrank or vanished).
A retry of the same client id continues the order where it stopped, re-using each
step's command id, so the EA skips a step it already ran.

Reading an order back, the pending tickets and the account: ``dwx_account.py``. Limits
(README, "MetaTrader 4/5"): an order's record lives in this process; after a restart
``query`` finds opened orders by comment, not a close whose answer was lost.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from raytrade.actors.venues import dwx_account
from raytrade.actors.venues import dwx_records as rec
from raytrade.actors.venues import dwx_requests as req
from raytrade.actors.venues.dwx_book import (
    OrderRecord,
    Step,
    check_account_kind,
    comment_matches,
    order_comment,
)
from raytrade.actors.venues.dwx_client import (
    CommandNotReadError,
    DwxClient,
    EaError,
    ReplyTimeoutError,
)
from raytrade.actors.venues.dwx_files import ORDERS
from raytrade.actors.venues.dwx_stream import DwxUserStream
from raytrade.actors.venues.dwx_symbols import SymbolSpec, VenueConfig
from raytrade.actors.venues.execution import (
    FINAL_STATUSES,
    AccountSnapshot,
    MarketKind,
    OrderFateUnknownError,
    OrderRequest,
    OrderState,
    SymbolFilters,
)
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)


class DwxExecution:
    """Orders, account and fills of one MetaTrader account through its EA's folder
    (module docstring). ``network``: ``testnet`` (a demo account), ``mainnet`` (real
    money) or ``loopback`` (the EA simulator); checked by ``ready``. ``dry_run``: the
    live trader sends no orders, so an account kind the EA does not report is only logged
    (otherwise ``ready`` refuses to start)."""

    def __init__(self, client: DwxClient, config: VenueConfig, *, network: str,
                 dry_run: bool = False) -> None:
        self.client = client
        self.config = config
        self.network = network
        self.dry_run = dry_run
        self.records: dict[str, OrderRecord] = {}
        self.listeners: list[Callable[[OrderRecord], None]] = []
        """Called when a record gains a fill or ends (the user stream)."""
        self._checked = False
        self.unverified = ""
        """Why the account kind could not be verified: every order is refused."""

    @property
    def market(self) -> MarketKind:
        """Always ``futures`` (a signed position)."""
        return "futures"

    # ---- start-up checks
    async def orders_now(self) -> rec.OrdersFile:
        """The orders file as of a poll after now. ``TemporaryError`` when the EA is not
        running (the file not validly rewritten for ``stale_after_s``) or when the file is
        invalid or fails the record checks for ``invalid_after_s`` (naming the file and the
        reason): the last good state is never taken as the current one."""
        await self.client.start()
        await self.client.wait_poll()
        cfg = self.client.config
        start = self.client.clock()
        while True:
            error = self.client.reader.orders_error
            orders = self.client.state.orders
            if not error and self.client.alive and orders is not None:
                return orders
            now = self.client.clock()
            if error and now - start >= cfg.invalid_after_s:
                raise TemporaryError(f"DWX: the EA's orders file is unusable ({error}): "
                                     "nothing is traded on an older state")
            if now - start >= cfg.stale_after_s:
                raise TemporaryError(f"the DWX EA in {self.client.paths.folder} is not "
                                     f"running: {ORDERS} not rewritten for "
                                     f"{cfg.stale_after_s:g} s")
            await self.client.wait_poll()

    async def ready(self) -> None:
        """Once: the account kind against the network, and every configured symbol's
        tick value against its pip value (``ConfigError`` on a mismatch, and for an
        account kind that cannot be verified unless this is a dry run)."""
        if self._checked:
            return
        orders = await self.orders_now()
        self.unverified = check_account_kind(orders.account, self.network,
                                             self.client.paths.folder)
        if self.unverified:
            if not self.dry_run:
                raise ConfigError(f"DWX: {self.unverified}: refused")
            log.error("DWX (dry run): %s", self.unverified)
        symbols = tuple(sorted(self.config.symbols))
        for symbol in symbols:
            tick = await self.tick(symbol)
            if tick.tick_value is not None:
                self.config.spec(symbol).check_tick_value(tick.tick_value,
                                                          orders.account.currency,
                                                          self.config.source)
        self._checked = True

    async def tick(self, symbol: str) -> rec.Tick:
        try:
            await self.client.subscribe_ticks((symbol,))
        except EaError as exc:
            raise ConfigError(f"the terminal behind {self.client.paths.folder} does not "
                              f"trade {symbol}: {exc}") from None
        deadline = self.client.clock() + self.client.config.reply_timeout_s
        while symbol not in self.client.state.ticks:
            if self.client.clock() >= deadline:
                raise TemporaryError(f"the DWX EA sends no bid/ask for {symbol}")
            await self.client.wait_poll()
        return self.client.state.ticks[symbol]

    # ---- rules
    async def filters(self, symbol: str) -> SymbolFilters:
        """The configured lot rules in base units."""
        spec = self.config.spec(symbol)
        await self.ready()
        return spec.filters()

    # ---- orders
    async def place(self, order: OrderRequest) -> OrderState:
        """Carry out ``order`` (module docstring)."""
        await self.ready()
        record = self.records.get(order.client_order_id)
        if record is None:
            record = self._new_record(order)
            if self.unverified:
                record.finish("rejected", self.unverified)
        async with self.client.exclusive("orders"):
            if record.unknown is not None:
                # sent again after ``query`` found nothing: a step the EA's state does not
                # show did not run; it is sent again with its command id (the EA skips an
                # id it ran)
                await self.resolve_step(record)
                record.unknown = None
            if record.status not in FINAL_STATUSES:
                await self._execute(record)
            self._notify(record)
            return record.state()

    def _new_record(self, order: OrderRequest) -> OrderRecord:
        spec = self.config.spec(order.symbol)
        if not (math.isfinite(order.qty) and order.qty > 0):
            raise ConfigError(f"order {order.client_order_id}: quantity {order.qty} must be "
                              "finite and > 0")
        if order.kind == "limit" and not (order.limit_price or 0) > 0:
            raise ConfigError(f"order {order.client_order_id}: a limit order needs a price")
        record = OrderRecord(order, spec, spec.lots(order.qty),
                             update_ms=int(time.time() * 1000))
        self.records[order.client_order_id] = record
        return record

    async def _execute(self, record: OrderRecord) -> None:
        order, spec = record.order, record.spec
        if order.kind == "limit" and record.filled_lots == 0:
            tick = await self.tick(order.symbol)
            age = self.client.reader.tick_age(order.symbol)
            bound = self.client.config.tick_stale_s
            if age is None or age > bound:
                raise TemporaryError(f"order {order.client_order_id}: the EA's {order.symbol} "
                                     f"bid/ask has not changed for more than {bound:g} s: "
                                     "too old to check the limit price against")
            price = tick.ask if order.side == "buy" else tick.bid
            limit = order.limit_price or 0.0
            if (order.side == "buy" and price > limit) or (order.side == "sell" and
                                                           price < limit):
                record.finish("expired", f"{'ask' if order.side == 'buy' else 'bid'} "
                              f"{price:g} beyond the limit {limit:g}: not sent")
                return
        orders = await self.orders_now()
        sign = 1.0 if order.side == "buy" else -1.0
        mine = sorted((t for t in orders.tickets.values() if t.symbol == order.symbol
                       and t.magic == spec.magic and t.signed_lots * sign < 0),
                      key=lambda t: (t.open_ms, t.ticket))
        left = round(record.lots - record.filled_lots, 8)
        if order.reduce_only and not mine:
            record.finish("rejected" if record.filled_lots == 0 else "canceled",
                          "reduce-only order, but no position to reduce")
            return
        try:
            for ticket in mine:
                if left <= 1e-9:
                    break
                take = min(ticket.lots, left)
                await self._close(record, ticket, take)
                left = round(left - take, 8)
            if left > 1e-9 and not order.reduce_only:
                await self._open(record, left, frozenset(orders.tickets))
        except EaError as exc:
            record.unknown = None
            record.finish("rejected" if record.filled_lots == 0 else "canceled",
                          f"{exc.message.error_type} {exc.message.text}")
            log.info("order %s refused by the EA: %s", order.client_order_id, record.reason)
            return
        except (CommandNotReadError, ReplyTimeoutError) as exc:
            raise OrderFateUnknownError(f"order {order.client_order_id}: {exc}") from None
        if record.status not in FINAL_STATUSES:
            record.finish("canceled", "reduce-only: the position was smaller than the order")

    def _command_id(self, record: OrderRecord, step: Step) -> int:
        return record.command_ids.setdefault(step.key, self.client.new_id())

    async def _close(self, record: OrderRecord, ticket: rec.Ticket, lots: float) -> None:
        step = Step("close", lots, ticket.ticket, ticket.lots, open_ms=ticket.open_ms)
        record.unknown = step
        await req.close_order(self.client, ticket.ticket,
                              0.0 if lots >= ticket.lots - 1e-9 else lots,
                              command_id=self._command_id(record, step))
        await self._settle_close(record, step, wait=True)

    async def _open(self, record: OrderRecord, lots: float, known: frozenset[int]) -> None:
        order = record.order
        step = Step("open", lots, known=known)
        record.unknown = step
        await req.open_order(self.client, order.symbol, order.side, lots,
                             magic=record.spec.magic,
                             comment=order_comment(order.client_order_id),
                             command_id=self._command_id(record, step))
        deadline = self.client.clock() + self.client.config.reply_timeout_s
        while not await self._settle_open(record, step):
            if self.client.clock() >= deadline:
                raise ReplyTimeoutError(f"the EA confirmed order {order.client_order_id} but "
                                        "no ticket with its comment appeared")
            await self.client.wait_poll()

    async def _settle_open(self, record: OrderRecord, step: Step, *, history: bool = False
                           ) -> bool:
        """Book the step's ticket if the orders file (or, with ``history``, the closed
        trades: it may have been closed since, by a stop) shows it."""
        comment = order_comment(record.order.client_order_id)
        orders = self.client.state.orders
        hits = [(t.ticket, t.lots, t.open_price, t.commission)
                for t in (orders.tickets.values() if orders else ())
                if t.ticket not in step.known and comment_matches(t.comment, comment)
                and t.magic == record.spec.magic]
        if not hits and history:
            days = 1 + int((time.time() * 1000 - record.update_ms) // 86_400_000)
            hits = [(c.ticket, c.lots, c.open_price, c.commission)
                    for c in (await dwx_account.closed_trades(self.client, days)).values()
                    if comment_matches(c.comment, comment) and c.ticket not in step.known]
        if not hits:
            return False
        if len(hits) > 1:
            self.client.report_fault("duplicate_comment", f"order "
                                     f"{record.order.client_order_id}: tickets "
                                     f"{sorted(h[0] for h in hits)} all carry {comment!r}; "
                                     f"booked {min(hits)[0]}")
        found = min(hits)
        ticket, lots, price, commission = found
        record.tickets.append(ticket)
        record.unknown = None
        # the ticket's own lots are what was traded (the EA rounds lots to 2 decimals)
        record.fill(step, lots, price, self._commission(record.spec, commission))
        if abs(lots - step.lots) > 1e-9:
            self.client.report_fault("lots_mismatch", f"order {record.order.client_order_id}: "
                                     f"ticket {ticket} opened {lots:g} lots, {step.lots:g} "
                                     "were sent")
        return True

    async def _settle_close(self, record: OrderRecord, step: Step, *, wait: bool) -> bool:
        """Book the step if the orders file shows the ticket shrunk or gone (MT4 moves a
        partial close's remainder to a new ticket commented ``from #<old>``)."""
        deadline = self.client.clock() + self.client.config.reply_timeout_s
        while True:
            orders = self.client.state.orders
            if orders is not None:
                left = sum(t.lots for t in orders.tickets.values()
                           if t.ticket == step.ticket or t.comment == f"from #{step.ticket}")
                if left <= step.before - step.lots + 1e-9:
                    break
            if not wait or self.client.clock() >= deadline:
                if wait:
                    raise ReplyTimeoutError(f"the EA confirmed closing ticket {step.ticket} "
                                            "but the orders file does not show it")
                return False
            await self.client.wait_poll()
        price = await self._close_price(record, step)
        record.tickets.append(step.ticket)
        record.unknown = None
        record.fill(step, step.lots, price, 0.0)
        return True

    async def _close_price(self, record: OrderRecord, step: Step) -> float:
        # the EA lists trades by their open time: reach back to the ticket's
        days = 2 + int((time.time() * 1000 - step.open_ms) // 86_400_000)
        history = await dwx_account.closed_trades(self.client, days)
        closed = history.get(step.ticket)
        if closed is not None:
            return closed.close_price
        tick = await self.tick(record.order.symbol)  # MT5 deals, or a lagging history
        return tick.bid if record.order.side == "sell" else tick.ask

    def _commission(self, spec: SymbolSpec, mt_commission: float) -> float:
        tick = self.client.state.ticks.get(spec.symbol)
        return 0.0 - mt_commission * spec.quote_per_account(tick.tick_value if tick else None)

    async def resolve_step(self, record: OrderRecord, *, history: bool = True) -> None:
        """Decide a step of unknown fate from the EA's state (module docstring)."""
        step = record.unknown
        if step is None:
            return
        await self.orders_now()
        if step.kind == "open":
            await self._settle_open(record, step, history=history)
        else:
            await self._settle_close(record, step, wait=False)
        if record.unknown is None:
            self._notify(record)

    def _notify(self, record: OrderRecord) -> None:
        for listener in list(self.listeners):
            listener(record)

    async def cancel(self, symbol: str, client_order_id: str) -> OrderState:
        """Market orders never rest: the order's state (``ConfigError`` if unknown)."""
        state = await self.query(symbol, client_order_id)
        if state is None:
            raise ConfigError(f"no DWX order {client_order_id!r} on {symbol}")
        return state

    async def query(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order's state (``dwx_account.query``)."""
        return await dwx_account.query(self, symbol, client_order_id)

    async def open_orders(self, symbol: str) -> list[OrderState]:
        """Pending tickets with the symbol's magic (``dwx_account.open_orders``)."""
        return await dwx_account.open_orders(self, symbol)

    async def account(self, symbols: tuple[str, ...], *, open_orders_for: tuple[str, ...]
                      | None = None) -> AccountSnapshot:
        """Positions, prices, balance and equity (``dwx_account.account``)."""
        return await dwx_account.account(self, symbols, open_orders_for=open_orders_for)

    def user_stream(self) -> DwxUserStream:
        """Fills as the EA's files show them (``dwx_stream.py``)."""
        return DwxUserStream(self)

    async def resolve_pending(self) -> None:
        """Decide the steps of unknown fate that no order call is deciding now (the user
        stream calls this on every change of the EA's files)."""
        lock = self.client.exclusive("orders")
        if lock.locked():
            return
        for record in list(self.records.values()):
            if record.unknown is not None:
                async with lock:
                    await self.resolve_step(record, history=False)

    async def close(self) -> None:
        """Nothing to release: the folder's client is shared (``shared_client``)."""
