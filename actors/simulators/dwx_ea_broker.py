"""The trade server behind the simulated DWX EA: an MT4 account with orders, stops and history.

What a MetaTrader 4 broker does with ``OrderSend``/``OrderClose``/``OrderDelete``/
``OrderModify`` for one forex symbol whose quote currency is the account currency
(EURUSD on a USD account), with the MT4 error codes a client sees through the EA
(``dwx_ea_format.MT4_ERRORS``):

- market orders fill at the ask (buy) or bid (sell); a requested price more than
  ``slippage_points`` from it is a requote (138); lots off the lot step, below the minimum or
  above the maximum are an invalid trade volume (131); stops on the wrong side of the price
  are invalid stops (130); a margin need above the free margin is not enough money (134);
- a partial close works as MT4's: the closed lots stay in the history under the OLD ticket
  (comment ``to #<new>``) and the rest re-opens as a NEW ticket (comment ``from #<old>``)
  with the same open price, time and magic number;
- stop loss, take profit and pending orders trigger on each closed bar's range (the bars are
  bid prices; buys close at the bid, sells at the ask = bid + spread), the stop loss first when
  one bar reaches both; the history comment gains ``[sl]``/``[tp]`` as MT4 brokers write it
  (a comment too long for the tag within 31 characters loses its tail: keep comments to 27);
- profit is (close - open) x lots x contract size in the quote currency, rounded to cents when
  booked; margin is lots x contract size x open price / leverage; no swap;
- while the market is closed (a weekend replayed at the clock's pace) every trade operation
  is "market is closed" (132);
- commission (``commission_per_lot``, account currency per lot, the round turn) is charged as
  MT4 brokers do at the open: the order shows it (negative) at once, equity includes it, and
  the balance pays it when the order closes (a partial close takes its share of it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MARKET = ("buy", "sell")
PENDING = ("buylimit", "selllimit", "buystop", "sellstop")
COMMENT_MAX = 31
"""MT4 keeps at most 31 characters of an order comment."""


class MtError(Exception):
    """A trade operation the server refused, with its MT4 error code."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"MT4 error {code}")


@dataclass(frozen=True)
class BrokerSpec:
    """The account and the one symbol the simulated broker serves."""

    symbol: str = "EURUSD"
    digits: int = 5
    contract_size: float = 100_000.0
    min_lot: float = 0.01
    max_lot: float = 100.0
    lot_step: float = 0.01
    leverage: int = 100
    spread_points: int = 10
    slippage_points: int = 3
    commission_per_lot: float = 0.0
    """Account currency per lot, charged once per order (the round turn) at its open."""
    currency: str = "USD"
    account_number: int = 7_000_001
    account_name: str = "raytrade simulator"
    account_kind: str = "demo"
    """``"demo"`` or ``"real"``: the truth, which the real EA does not print."""

    @property
    def point(self) -> float:
        """The price of one point (``10 ** -digits``)."""
        return float(10.0 ** -self.digits)


@dataclass(frozen=True)
class SimOrder:
    """An open order, a pending order or a history entry (``type="balance"``: a deposit)."""

    ticket: int
    symbol: str
    type: str
    lots: float
    open_price: float
    open_time: int
    """Server time, epoch seconds."""
    sl: float = 0.0
    tp: float = 0.0
    magic: int = 0
    comment: str = ""
    expiration: int = 0
    close_price: float = 0.0
    close_time: int = 0
    profit: float = 0.0
    """Booked profit of a closed order (account currency); the amount of a deposit."""
    commission: float = 0.0
    """Commission charged (negative, account currency)."""


class Broker:
    """The account's state and the trade operations on it (module docstring)."""

    def __init__(self, spec: BrokerSpec, *, balance: float, server_time: int, bid: float,
                 first_ticket: int = 50_000_001) -> None:
        self.spec = spec
        self.balance = round(balance, 2)
        self.server_time = server_time
        self.bid = bid
        self.next_ticket = first_ticket + 1
        self.market_open = True
        """False during a closure (weekend): every trade operation is error 132."""
        self.orders: dict[int, SimOrder] = {}
        """Open and pending orders by ticket, in the order they were opened."""
        self.history: dict[int, SimOrder] = {first_ticket: SimOrder(
            first_ticket, "", "balance", 0.0, 0.0, server_time, comment="Deposit",
            close_time=server_time, profit=self.balance)}

    # -- prices and account -------------------------------------------------------------
    @property
    def ask(self) -> float:
        """Bid plus the spread."""
        return round(self.bid + self.spec.spread_points * self.spec.point, self.spec.digits)

    @property
    def tick_value(self) -> float:
        """Account currency per point per lot."""
        return self.spec.contract_size * self.spec.point

    def floating(self, o: SimOrder) -> float:
        """Unbooked profit of an open market order at the current prices."""
        if o.type == "buy":
            return (self.bid - o.open_price) * o.lots * self.spec.contract_size
        if o.type == "sell":
            return (o.open_price - self.ask) * o.lots * self.spec.contract_size
        return 0.0

    def equity(self) -> float:
        """Balance plus the floating profit of every open market order."""
        return self.balance + sum(self.floating(o) + o.commission
                                  for o in self.orders.values())

    def margin(self) -> float:
        """Margin held by the open market orders."""
        return sum(self._margin_of(o.lots, o.open_price) for o in self.orders.values()
                   if o.type in MARKET)

    def free_margin(self) -> float:
        """Equity less margin."""
        return self.equity() - self.margin()

    def _margin_of(self, lots: float, price: float) -> float:
        return lots * self.spec.contract_size * price / self.spec.leverage

    # -- operations ---------------------------------------------------------------------
    def select(self, ticket: int) -> SimOrder | None:
        """MT4 ``OrderSelect(ticket, SELECT_BY_TICKET)``: open, pending OR closed."""
        return self.orders.get(ticket) or self.history.get(ticket)

    def open(self, symbol: str, type_: str, lots: float, price: float, sl: float, tp: float,
             magic: int, comment: str, expiration: int) -> SimOrder:
        """``OrderSend``: the new order, or ``MtError``."""
        self._check_open()
        if symbol != self.spec.symbol:
            raise MtError(4106)
        self._check_volume(lots)
        if type_ in MARKET:
            market = self.ask if type_ == "buy" else self.bid
            if abs(price - market) > (self.spec.slippage_points + 0.5) * self.spec.point:
                raise MtError(138)
            price = market
            self._check_stops(type_, self.bid if type_ == "buy" else self.ask, sl, tp)
            if self._margin_of(lots, price) > self.free_margin():
                raise MtError(134)
        else:
            self._check_pending_price(type_, price)
            self._check_stops(type_, price, sl, tp)
        order = SimOrder(self._ticket(), symbol, type_, lots, price, self.server_time, sl, tp,
                         magic, comment[:COMMENT_MAX], expiration,
                         commission=self._commission(lots) if type_ in MARKET else 0.0)
        self.orders[order.ticket] = order
        return order

    def close(self, ticket: int, lots: float) -> None:
        """``OrderClose`` of a market order (``lots`` already defaulted to all by the EA)."""
        self._check_open()
        order = self.orders.get(ticket)
        if order is None or order.type not in MARKET:
            raise MtError(4108)
        self._check_volume(lots)
        rest = round(order.lots - lots, 8)
        if rest < -1e-9 or (1e-9 < rest < self.spec.min_lot - 1e-9):
            raise MtError(131)
        price = self.bid if order.type == "buy" else self.ask
        if rest <= 1e-9:
            self._book(order, price, order.comment)
            return
        share = round(order.commission * lots / order.lots, 2)
        new = dataclasses.replace(order, ticket=self._ticket(), lots=round(rest, 2),
                                  comment=f"from #{ticket}",
                                  commission=round(order.commission - share, 2))
        closed = dataclasses.replace(order, lots=lots, commission=share)
        self._book(closed, price, f"to #{new.ticket}")
        self.orders[new.ticket] = new

    def delete(self, ticket: int) -> None:
        """``OrderDelete`` of a pending order."""
        self._check_open()
        order = self.orders.get(ticket)
        if order is None or order.type not in PENDING:
            raise MtError(4108)
        del self.orders[ticket]
        self.history[ticket] = dataclasses.replace(order, close_time=self.server_time,
                                                   close_price=order.open_price)

    def modify(self, ticket: int, price: float, sl: float, tp: float, expiration: int) -> None:
        """``OrderModify``: new stops (and price/expiration of a pending order)."""
        self._check_open()
        order = self.orders.get(ticket)
        if order is None:
            raise MtError(4108)
        if order.type in MARKET:
            price = order.open_price
            reference = self.bid if order.type == "buy" else self.ask
        else:
            self._check_pending_price(order.type, price)
            reference = price
        same = (abs(price - order.open_price) < self.spec.point / 2
                and abs(sl - order.sl) < self.spec.point / 2
                and abs(tp - order.tp) < self.spec.point / 2 and expiration == order.expiration)
        if same:
            raise MtError(1)
        self._check_stops(order.type, reference, sl, tp)
        self.orders[ticket] = dataclasses.replace(order, open_price=price, sl=sl, tp=tp,
                                                  expiration=expiration)

    # -- time ---------------------------------------------------------------------------
    def bar_closed(self, high: float, low: float, close: float, server_time: int, *,
                   market_open: bool = True) -> None:
        """A bar with this (bid) range closed; ``server_time`` is the next bar's open (or,
        when a closure follows, ``market_open=False``, the bar's close). Pending orders fill,
        stops trigger, expired pending orders go, then the price moves to ``close``."""
        spread = self.spec.spread_points * self.spec.point
        self.server_time = server_time
        self.market_open = True
        for order in list(self.orders.values()):
            if order.type in PENDING:
                if order.expiration and server_time >= order.expiration:
                    self.delete(order.ticket)
                elif self._pending_hit(order, high, low, spread):
                    self.orders[order.ticket] = dataclasses.replace(
                        order, type=order.type[:-5] if order.type.endswith("limit")
                        else order.type[:-4], open_time=server_time,
                        commission=self._commission(order.lots))
                continue
            hit = self._stop_hit(order, high, low, spread)
            if hit is not None:
                price, tag = hit
                self._book(order, price, order.comment[:COMMENT_MAX - len(tag)] + tag)
        self.bid = round(close, self.spec.digits)
        self.market_open = market_open

    def reopen(self, server_time: int) -> None:
        """A closure ends: the bar opening at ``server_time`` starts forming."""
        self.server_time = server_time
        self.market_open = True

    # -- helpers ------------------------------------------------------------------------
    def _ticket(self) -> int:
        ticket = self.next_ticket
        self.next_ticket += 1
        return ticket

    def _commission(self, lots: float) -> float:
        return -round(self.spec.commission_per_lot * lots, 2)

    def _book(self, order: SimOrder, price: float, comment: str) -> None:
        size = order.lots * self.spec.contract_size
        profit = round((price - order.open_price) * size if order.type == "buy"
                       else (order.open_price - price) * size, 2)
        self.balance = round(self.balance + profit + order.commission, 2)
        self.orders.pop(order.ticket, None)
        self.history[order.ticket] = dataclasses.replace(
            order, close_price=price, close_time=self.server_time, profit=profit,
            comment=comment)

    def _check_open(self) -> None:
        if not self.market_open:
            raise MtError(132)

    def _check_volume(self, lots: float) -> None:
        steps = lots / self.spec.lot_step
        if (abs(steps - round(steps)) > 1e-6 or lots < self.spec.min_lot - 1e-9
                or lots > self.spec.max_lot + 1e-9):
            raise MtError(131)

    def _check_pending_price(self, type_: str, price: float) -> None:
        ok = {"buylimit": price < self.ask, "buystop": price > self.ask,
              "selllimit": price > self.bid, "sellstop": price < self.bid}[type_]
        if not ok:
            raise MtError(130)

    @staticmethod
    def _check_stops(type_: str, reference: float, sl: float, tp: float) -> None:
        if type_.startswith("buy"):
            bad = (sl != 0 and sl >= reference) or (tp != 0 and tp <= reference)
        else:
            bad = (sl != 0 and sl <= reference) or (tp != 0 and tp >= reference)
        if bad:
            raise MtError(130)

    @staticmethod
    def _pending_hit(o: SimOrder, high: float, low: float, spread: float) -> bool:
        return {"buylimit": low + spread <= o.open_price, "buystop": high + spread >= o.open_price,
                "selllimit": high >= o.open_price, "sellstop": low <= o.open_price}[o.type]

    @staticmethod
    def _stop_hit(o: SimOrder, high: float, low: float, spread: float
                  ) -> tuple[float, str] | None:
        if o.type == "buy":
            if o.sl and low <= o.sl:
                return o.sl, "[sl]"
            if o.tp and high >= o.tp:
                return o.tp, "[tp]"
        else:
            if o.sl and high + spread >= o.sl:
                return o.sl, "[sl]"
            if o.tp and low + spread <= o.tp:
                return o.tp, "[tp]"
        return None

    # -- persistence (the simulator's truth file) ---------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume after a kill, plus derived account figures."""
        return {"spec": dataclasses.asdict(self.spec), "balance": self.balance,
                "equity": round(self.equity(), 2), "margin": round(self.margin(), 2),
                "free_margin": round(self.free_margin(), 2), "bid": self.bid,
                "ask": self.ask, "server_time": self.server_time,
                "market_open": self.market_open,
                "next_ticket": self.next_ticket,
                "orders": [dataclasses.asdict(o) for o in self.orders.values()],
                "history": [dataclasses.asdict(o) for o in self.history.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any], spec: BrokerSpec) -> Broker:
        """Resume from :meth:`to_json` (``spec``: today's settings, as after a terminal
        restart the broker keeps the account and the orders)."""
        broker = cls(spec, balance=float(data["balance"]), server_time=int(data["server_time"]),
                     bid=float(data["bid"]))
        broker.next_ticket = int(data["next_ticket"])
        broker.orders = {int(o["ticket"]): SimOrder(**o) for o in data["orders"]}
        broker.history = {int(o["ticket"]): SimOrder(**o) for o in data["history"]}
        return broker
