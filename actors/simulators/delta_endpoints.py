"""The REST endpoints of the loopback Delta exchange and what they publish on its private
socket, mixed into ``delta_exchange.DeltaExchangeSim`` (which owns the server, the request
checks and the fault schedule).

Paths, parameters and answers as docs.delta.exchange documents them (github.com/
delta-exchange/slate ``delta-exchange-api-docs.md``): ``GET /v2/settings`` (``server_time``,
µs), ``/v2/products``, ``/v2/products/{symbol}``, ``/v2/tickers/{symbol}``,
``/v2/history/candles``; signed ``POST|GET|DELETE /v2/orders``, ``DELETE /v2/orders/all``,
``GET /v2/orders/{id}``, ``GET /v2/orders/client_order_id/{client_oid}``,
``GET /v2/positions``, ``GET /v2/positions/margined``, ``GET /v2/wallet/balances``,
``POST|GET /v2/products/{product_id}/orders/leverage``. After every order change the
private socket gets the ``orders`` update, and after a fill the ``v2/user_trades`` message
and the ``positions`` update (``create``, ``update`` or ``delete``), each ``orders`` and
``v2/user_trades`` message numbered per account and symbol (``seq_no``, ``se``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from raytrade.actors.simulators import delta_wire as wire
from raytrade.actors.simulators.delta_auth import DeltaError, bad_schema, coded
from raytrade.actors.simulators.delta_book import DeltaBook, Event
from raytrade.actors.simulators.delta_market import DeltaReplay, price_text
from raytrade.actors.simulators.delta_sockets import DeltaSockets
from raytrade.actors.simulators.exchange_faults import Fault
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response


@dataclass(frozen=True)
class Ctx:
    """One authenticated (or public) request, checked: its account, JSON body, server
    time (µs), the faults due on it and its ``timestamp`` header (s)."""

    request: Request
    account: str
    body: dict[str, Any]
    now_us: int
    faults: tuple[Fault, ...]
    request_ts: int


Handler = Callable[[Ctx], Awaitable[Response]]


def ok(result: Any, status: int = 200) -> JSONResponse:
    """Delta's success envelope."""
    return JSONResponse({"success": True, "result": result}, status_code=status)


def error_response(exc: DeltaError) -> Response:
    """Delta's error answer (JSON, or the CDN's HTML)."""
    if exc.html is not None:
        return HTMLResponse(exc.html, status_code=exc.status)
    return JSONResponse(dict(exc.body), status_code=exc.status)


class DeltaEndpoints:
    """The endpoints and the private socket's publishing (module docstring)."""

    book: DeltaBook
    replay: DeltaReplay | None
    sockets: DeltaSockets
    skew_ms: int
    _spawn: Callable[[Coroutine[Any, Any, None]], None]
    """``loopback_server.LoopbackServer._spawn``."""
    _order_seq: Counter[tuple[str, str]]
    _trade_seq: Counter[tuple[str, str]]

    # ---- clocks and tasks
    def now_s(self) -> float:
        """Server clock (Unix seconds): wall clock plus ``skew_ms``."""
        return time.time() + self.skew_ms / 1000.0

    def market_now_ms(self) -> int:
        """The market's clock: the replay's virtual time, else the server clock."""
        return self.replay.now_ms() if self.replay is not None else int(self.now_s() * 1000)

    def _now_us(self) -> int:
        return int(self.now_s() * 1_000_000)

    # ---- public endpoints
    async def _settings(self, ctx: Ctx) -> Response:
        return ok({"server_time": self.market_now_ms() * 1000})

    async def _products(self, ctx: Ctx) -> Response:
        rows = [wire.product(p) for p in self.book.products.values()]
        return JSONResponse({"success": True, "result": rows,
                             "meta": {"after": None, "before": None}})

    async def _product(self, ctx: Ctx) -> Response:
        sym = str(ctx.request.path_params["symbol"]).upper()
        if sym not in self.book.products:
            raise coded(404, "not_found")
        return ok(wire.product(self.book.products[sym]))

    def _market(self) -> DeltaReplay:
        if self.replay is None:
            raise coded(503, "unavailable")
        return self.replay

    async def _ticker(self, ctx: Ctx) -> Response:
        p = self.book.product(str(ctx.request.path_params["symbol"]))
        t = self._market().ticker(p.symbol, p.id)
        return ok({"symbol": p.symbol, "product_id": p.id, "contract_type":
                    "perpetual_futures", "open": t["open"], "high": t["high"], "low": t["low"],
                    "close": t["close"], "mark_price": price_text(t["close"]),
                    "spot_price": price_text(t["close"]), "volume": t["volume"],
                    "quotes": {"best_bid": price_text(t["best_bid"]),
                               "best_ask": price_text(t["best_ask"]),
                               "bid_size": "1000", "ask_size": "1000"},
                    "timestamp": t["timestamp"], "turnover_usd": t["volume"] * t["close"]})

    async def _candles(self, ctx: Ctx) -> Response:
        q = ctx.request.query_params
        for name in ("resolution", "symbol", "start", "end"):
            if not q.get(name):
                raise bad_schema(name, f"{name} is required")
        try:
            start, end = int(q["start"]), int(q["end"])
        except ValueError:
            raise bad_schema("start", "start and end are Unix seconds") from None
        return ok(self._market().candles(q["symbol"], q["resolution"], start, end))

    # ---- orders
    async def _place(self, ctx: Ctx) -> Response:
        kinds = {f.kind: f for f in ctx.faults}
        if "place_late" in kinds:
            self._spawn(self._place_late(ctx, kinds["place_late"].delay))
            return error_response(coded(503, "unavailable"))
        partial = kinds.get("partial_fill")
        events = self.book.place(ctx.account, ctx.body, ctx.now_us,
                                 partial.fraction if partial else None)
        self._publish(events[:1])
        if "drop_user_stream" in kinds:
            await self.sockets.cut("private")
        if "expire_listen_key" in kinds:
            self.sockets.close_all("private", 1001)
        self._publish(events[1:])
        order = self.book.orders[events[0].order.id]
        if partial is not None and order.state == "open" and \
                order.order_type == "market_order":
            self._spawn(self._fill_rest(order.id, partial.delay))
        response = ok(wire.order(self.book, order))
        if "accept_then_timeout" in kinds:
            await asyncio.sleep(kinds["accept_then_timeout"].delay)
        if "error_5xx_after" in kinds:
            return error_response(coded(503, "unavailable"))
        return response

    async def _place_late(self, ctx: Ctx, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.now_s() - ctx.request_ts > 5:
            return
        with contextlib.suppress(DeltaError):
            self._publish(self.book.place(ctx.account, ctx.body, self._now_us()))

    async def _fill_rest(self, order_id: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._publish(self.book.fill_rest(order_id, self._now_us()))

    def _publish(self, events: Sequence[Event]) -> None:
        """The private socket's messages for ``events``: the order update, then (after a
        fill) the user trade and the position."""
        now = self._now_us()
        for e in events:
            acc, p = e.order.account, e.order.product
            self._order_seq[(acc, p.symbol)] += 1
            self.sockets.publish_private(acc, "orders", p.symbol, wire.order_message(
                e, self._order_seq[(acc, p.symbol)], now))
            if e.fill is None:
                continue
            self._trade_seq[(acc, p.symbol)] += 1
            self.sockets.publish_private(acc, "v2/user_trades", p.symbol,
                                         wire.user_trade_message(
                                             self.book, e, self._trade_seq[(acc, p.symbol)]))
            signed = e.fill.size if e.order.side == "buy" else -e.fill.size
            before = e.fill.position_after - signed
            action = "create" if before == 0 else "delete" if e.fill.position_after == 0 \
                else "update"
            self.sockets.publish_private(acc, "positions", p.symbol,
                                         wire.position_message(self.book, acc, p, action))

    def _snapshot(self, account: str, channel: str, symbol: str) -> dict[str, Any] | None:
        if symbol.upper() not in self.book.products:
            return None
        p = self.book.products[symbol.upper()]
        if channel == "orders":
            return {"meta": {"seq_no": self._order_seq[(account, p.symbol)],
                             "timestamp": self._now_us()},
                    "result": [wire.order(self.book, o)
                               for o in self.book.open_orders(account, p)],
                    "success": True, "symbol": p.symbol, "type": "orders",
                    "action": "snapshot"}
        if channel == "positions":
            pos = self.book.accounts[account].positions.get(p.id)
            rows = [wire.position_row(self.book, account, p)] if pos and pos.size else []
            return {"result": rows, "success": True, "type": "positions",
                    "action": "snapshot"}
        return None

    async def _open_orders(self, ctx: Ctx) -> Response:
        ids = ctx.request.query_params.get("product_ids", "")
        wanted = {self.book.product(x.strip()).id for x in ids.split(",") if x.strip()}
        rows = [wire.order(self.book, o) for o in self.book.open_orders(ctx.account)
                if not wanted or o.product.id in wanted]
        return JSONResponse({"success": True, "result": rows,
                             "meta": {"after": None, "before": None}})

    async def _cancel(self, ctx: Ctx) -> Response:
        oid = ctx.body.get("id")
        cid = ctx.body.get("client_order_id")
        if oid is None and cid is None:
            raise bad_schema("id", "id or client_order_id is required")
        if oid is not None and (isinstance(oid, bool) or not isinstance(oid, int)):
            raise bad_schema("id", "id must be an integer")
        events = self.book.cancel(ctx.account, oid, cid if isinstance(cid, str) else None)
        self._publish(events)
        return ok(wire.order(self.book, events[-1].order))

    async def _cancel_all(self, ctx: Ctx) -> Response:
        ref = ctx.body.get("product_id")
        product = None if ref is None else self.book.product(ref)
        for o in self.book.open_orders(ctx.account, product):
            self._publish(self.book.cancel(ctx.account, o.id, None))
        return JSONResponse({"success": True})

    async def _order_by_id(self, ctx: Ctx) -> Response:
        raw = str(ctx.request.path_params["order_id"])
        order = self.book.find(ctx.account, int(raw)) if raw.isdigit() else None
        if order is None:
            raise coded(404, "not_found")
        return ok(wire.order(self.book, order))

    async def _order_by_client_id(self, ctx: Ctx) -> Response:
        order = self.book.find(ctx.account, None,
                               str(ctx.request.path_params["client_oid"]))
        if order is None:
            raise coded(404, "not_found")
        return ok(wire.order(self.book, order))

    async def _position(self, ctx: Ctx) -> Response:
        ref = ctx.request.query_params.get("product_id")
        if not ref:
            raise bad_schema("product_id", "product_id is required")
        row = wire.position_row(self.book, ctx.account, self.book.product(ref))
        return ok({"size": row["size"], "entry_price": row["entry_price"]})

    async def _positions(self, ctx: Ctx) -> Response:
        rows = [wire.position_row(self.book, ctx.account, p)
                for p in self.book.products.values()]
        return ok([r for r in rows if r["size"] != 0])

    async def _wallet(self, ctx: Ctx) -> Response:
        return JSONResponse(wire.wallet(self.book, ctx.account))

    async def _set_leverage(self, ctx: Ctx) -> Response:
        p = self.book.product(str(ctx.request.path_params["product_id"]))
        lev = self.book.set_leverage(ctx.account, p, ctx.body.get("leverage"))
        return ok({"leverage": lev, "order_margin": "0", "product_id": p.id})

    async def _get_leverage(self, ctx: Ctx) -> Response:
        p = self.book.product(str(ctx.request.path_params["product_id"]))
        return ok({"leverage": self.book.leverage(ctx.account, p), "order_margin": "0",
                    "product_id": p.id})
