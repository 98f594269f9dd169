"""The loopback exchange (``raytrade exchange sim``): Binance spot (``/api/v3``) and USD-M
futures (``/fapi``) on one loopback port, speaking Binance's own REST and user-stream
protocol for the subset the live trader uses, filling orders against a ``PriceSource``
and injecting faults on a schedule.

Layers: ``exchange_book`` holds the accounts, symbols and orders and matches them;
``exchange_wire`` renders Binance's JSON; ``exchange_streams`` owns listen keys and the
user-stream websockets; ``exchange_gate`` checks each request (ban, weights, order counts,
key, signature, timestamp); ``exchange_faults`` is the fault schedule. This module is the
HTTP side: a Starlette app served by ``loopback_server.LoopbackServer`` (uvicorn in a
background thread with its own event loop; every state change happens on that loop, and
the Python API below hands its calls to it). The server time is the wall clock plus
``skew_ms``. Faults scheduled on the Nth authenticated order request fire between the
signature check and the timestamp check.

Loopback-only extras (no signature): ``GET /sim/state``, ``POST /sim/faults``,
``POST /sim/adjust``. Secrets are never logged or shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from raytrade.actors.simulators import exchange_wire as wire
from raytrade.actors.simulators.exchange_accounts import AccountConfig, parse_decimal
from raytrade.actors.simulators.exchange_book import (
    CLIENT_ID,
    ExchangeBook,
    ExchangeError,
    Fees,
    Market,
    NewOrder,
    OrderUpdate,
    SymbolSpec,
    default_specs,
)
from raytrade.actors.simulators.exchange_faults import Fault, FaultSchedule, parse_faults
from raytrade.actors.simulators.exchange_gate import (
    Limits,
    RequestGate,
    check_timestamp,
    error_response,
    mandatory,
    verify_signature,
    with_headers,
)
from raytrade.actors.simulators.exchange_prices import PriceSource
from raytrade.actors.simulators.exchange_streams import UserStreams
from raytrade.actors.simulators.loopback_server import LoopbackServer
from raytrade.envs.errors import ConfigError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

log = logging.getLogger(__name__)

Security = Literal["NONE", "USER_STREAM", "SIGNED"]


@dataclass(frozen=True)
class _Ctx:
    request: Request
    market: Market
    params: dict[str, str]
    account: str
    now_ms: int
    faults: tuple[Fault, ...]


Handler = Callable[[_Ctx], Awaitable[Response]]

def _decimal_param(params: dict[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        d = Decimal(raw)
    except InvalidOperation as exc:
        raise ExchangeError(-1100, f"Illegal characters found in parameter '{name}'; legal "
                            "range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from exc
    if not d.is_finite():
        raise ExchangeError(-1100, f"Illegal characters found in parameter '{name}'; legal "
                            "range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return d


class BinanceExchangeSim(LoopbackServer):
    """The loopback exchange (module docstring).

    Args:
        accounts: one per API key.
        prices: where fills get their prices (``FixedPrices``, ``ReplayPrices``).
        specs: symbols and their filters, per market; default ``default_specs(symbols)``.
        symbols: symbols traded on both markets with default filters (when ``specs`` is
            None).
        faults: faults scheduled from the start.
        host, port: where to listen (port 0: any free port; see ``port`` after ``start``).
        skew_ms: server time minus wall clock (ms); may be changed while running.
        listen_key_ttl_s: seconds a listen key lives after its last keepalive.
        fees, default_leverage, limits: commissions, futures leverage, rate limits.
    """

    server_name = "the exchange"
    thread_prefix = "exchange-sim"

    def __init__(self, accounts: Sequence[AccountConfig], prices: PriceSource, *,
                 specs: Sequence[SymbolSpec] | None = None,
                 symbols: Sequence[str] = (), faults: Iterable[Fault] = (),
                 host: str = "127.0.0.1", port: int = 0, skew_ms: int = 0,
                 listen_key_ttl_s: float = 3600.0, fees: Fees | None = None,
                 default_leverage: int = 1, limits: Limits | None = None) -> None:
        if specs is None:
            if not symbols:
                raise ConfigError("the exchange needs symbols (or specs)")
            specs = default_specs(symbols, prices)
        self.book = ExchangeBook(accounts, specs, prices, fees=fees or Fees(),
                                 default_leverage=default_leverage)
        self.faults = FaultSchedule(faults)
        self.streams = UserStreams(listen_key_ttl_s)
        super().__init__(host, port)
        self.skew_ms = skew_ms
        self.gate = RequestGate(limits or Limits(), host)
        """Weights, order counts, the ban (``exchange_gate``)."""
        self.requests: Counter[str] = Counter()
        """Requests by ``METHOD /path``."""
        self.order_requests = 0
        """Authenticated order requests so far (the faults' ``at_order`` counter)."""
        self._event_no = 0
        self.app = self._build_app()

    # ---- lifecycle
    @property
    def rest_url(self) -> str:
        """``http://host:port`` (spot under ``/api/v3``, futures under ``/fapi``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` (user streams at ``/ws/<listenKey>``)."""
        return f"ws://{self.host}:{self.port}"

    def now_ms(self) -> int:
        """Server time: wall clock plus ``skew_ms`` (ms)."""
        return int(time.time() * 1000) + self.skew_ms

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._expire_loop()]

    async def _expire_loop(self) -> None:
        period = min(0.25, self.streams.ttl_s / 4)
        while True:
            await asyncio.sleep(period)
            self.streams.expire_due(self.now_ms())

    # ---- Python API (thread-safe: runs on the server's loop)
    def state(self) -> dict[str, Any]:
        """What ``GET /sim/state`` answers (accounts, orders, listen keys, counts)."""
        return self._call(self._state)

    def schedule(self, faults: Iterable[Fault]) -> None:
        """Schedule more faults (``exchange_faults.Fault``)."""
        items = tuple(faults)
        self._call(lambda: self.faults.add(items))

    def adjust_balance(self, asset: str, delta: Decimal | str | float,
                       key: str | None = None) -> Decimal:
        """Change a spot balance behind the trader's back; the new balance."""
        d = Decimal(str(delta))
        return self._call(lambda: self._adjust_balance(self._account_for(key), asset, d))

    def adjust_position(self, symbol: str, delta: Decimal | str | float,
                        key: str | None = None) -> Decimal:
        """Change a futures position at the current mark behind the trader's back; the
        new position amount."""
        d = Decimal(str(delta))
        return self._call(lambda: self._adjust_position(self._account_for(key), symbol, d))

    def expire_listen_keys(self) -> None:
        """Expire every listen key now (as the ``expire_listen_key`` fault does)."""
        self._call(lambda: self.streams.expire_all(self.now_ms()))

    def _account_for(self, key: str | None) -> str:
        if key is None:
            if len(self.book.accounts) != 1:
                raise ConfigError("adjust: several accounts, say which one ('key')")
            return next(iter(self.book.accounts))
        if key not in self.book.accounts:
            raise ConfigError(f"adjust: no account with key {key!r}")
        return key

    def _adjust_balance(self, key: str, asset: str, delta: Decimal) -> Decimal:
        now = self.now_ms()
        new = self.book.adjust_balance(key, asset, delta, now)
        self.streams.publish(key, "spot", [wire.outbound_account_position(
            self.book, key, [asset.upper()], now)])
        return new

    def _adjust_position(self, key: str, symbol: str, delta: Decimal) -> Decimal:
        now = self.now_ms()
        pos = self.book.adjust_position(key, symbol, delta, now)
        self.streams.publish(key, "futures", [wire.account_update(
            self.book, key, symbol, "ADJUSTMENT", now)])
        return pos.amount

    def _state(self) -> dict[str, Any]:
        return {"server_time": self.now_ms(), "accounts": self.book.state(),
                "listen_keys": self.streams.describe(),
                "listen_keys_expired": self.streams.expired,
                "user_streams_dropped": self.streams.dropped,
                "requests": dict(sorted(self.requests.items())),
                "order_requests": self.order_requests,
                "faults_fired": dict(self.faults.fired),
                "faults_pending": [f.to_json() for f in self.faults.pending],
                "banned_until": self.gate.banned_until_ms}

    # ---- the app
    def _build_app(self) -> Starlette:
        r = self._route
        routes: list[Route | WebSocketRoute] = []
        markets: tuple[tuple[Market, str, str, str], ...] = (
            ("spot", "/api/v3", "/api/v3", "/api/v3/userDataStream"),
            ("futures", "/fapi/v1", "/fapi/v2", "/fapi/v1/listenKey"))
        for m, v1, v2, lk_path in markets:
            routes += [
                r(f"{v1}/time", "GET", m, "time", "NONE", self._time),
                r(f"{v1}/exchangeInfo", "GET", m, "exchangeInfo", "NONE",
                  self._exchange_info),
                r(f"{v1}/ticker/price", "GET", m, "ticker", "NONE", self._ticker),
                r(f"{v1}/order", "POST", m, "newOrder", "SIGNED", self._new_order),
                r(f"{v1}/order", "GET", m, "order", "SIGNED", self._query_order),
                r(f"{v1}/order", "DELETE", m, "cancel", "SIGNED", self._cancel_order),
                r(f"{v1}/openOrders", "GET", m, "openOrders", "SIGNED", self._open_orders),
                r(f"{v2}/account", "GET", m, "account", "SIGNED", self._account),
            ]
            routes += [r(lk_path, meth, m, "listenKey", "USER_STREAM", self._listen_key)
                       for meth in ("POST", "PUT", "DELETE")]
        routes += [
            r("/fapi/v1/premiumIndex", "GET", "futures", "premiumIndex", "NONE",
              self._premium_index),
            r("/fapi/v2/positionRisk", "GET", "futures", "positionRisk", "SIGNED",
              self._position_risk),
            Route("/sim/state", self._sim_state, methods=["GET"]),
            Route("/sim/faults", self._sim_faults, methods=["POST"]),
            Route("/sim/adjust", self._sim_adjust, methods=["POST"]),
            WebSocketRoute("/ws/{listen_key}", self.streams.serve),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def _route(self, path: str, method: str, market: Market, name: str, security: Security,
               handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, market, name, security, handler)

        return Route(path, endpoint, methods=[method], name=f"{market}:{method}:{path}")

    async def _dispatch(self, request: Request, market: Market, name: str,
                        security: Security, handler: Handler) -> Response:
        self.requests[f"{request.method} {request.url.path}"] += 1
        now = self.now_ms()
        banned = self.gate.banned(now)
        if banned is not None:
            return banned
        query = request.url.query
        body = (await request.body()).decode("utf-8", errors="replace")
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(query, keep_blank_values=True))  # query wins
        used = self.gate.weigh(market, name, params, now)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if used > self.gate.weight_limit(market):
            return self.gate.too_many(headers, self.gate.weight_limit(market),
                                      60 - (now // 1000) % 60)
        try:
            account = ""
            faults: tuple[Fault, ...] = ()
            if security != "NONE":
                account = self._api_key(request)
            if security == "SIGNED":
                verify_signature(self.book.secret(account) or "", query, body)
                if name == "newOrder":
                    headers.update(self.gate.count_order(account, market, now))
                    over = self.gate.orders_over_limit(headers, market)
                    if over is not None:
                        return over
                    faults = self.faults.take(self.order_requests)
                    self.order_requests += 1
                    refusal = self.gate.refusal(faults, market, now)
                    if refusal is not None:
                        return with_headers(refusal, headers)
                check_timestamp(params, now)
            response = await handler(_Ctx(request, market, params, account, now, faults))
        except ExchangeError as exc:
            response = error_response(exc.code, exc.msg, exc.status)
        return with_headers(response, headers)

    def _api_key(self, request: Request) -> str:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key or self.book.secret(key) is None:
            raise ExchangeError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return key

    # ---- public endpoints
    async def _time(self, ctx: _Ctx) -> Response:
        return JSONResponse({"serverTime": ctx.now_ms})

    async def _exchange_info(self, ctx: _Ctx) -> Response:
        specs = self.book.symbols(ctx.market)
        if ctx.market == "spot":
            wanted: list[str] | None = None
            if "symbol" in ctx.params:
                wanted = [ctx.params["symbol"]]
            elif "symbols" in ctx.params:
                try:
                    parsed = json.loads(ctx.params["symbols"])
                except json.JSONDecodeError as exc:
                    raise ExchangeError(-1100, "Illegal characters found in parameter "
                                        "'symbols'.") from exc
                if not isinstance(parsed, list):
                    raise ExchangeError(-1100, "Illegal characters found in parameter "
                                        "'symbols'.")
                wanted = [str(s) for s in parsed]
            if wanted is not None:
                specs = [self.book.spec("spot", s) for s in wanted]
        return JSONResponse(wire.exchange_info(self.book, ctx.market, specs, ctx.now_ms))

    def _price_row(self, market: Market, spec: SymbolSpec, now_ms: int
                   ) -> dict[str, Any] | None:
        mark = self.book.mark(spec)
        if mark is None:
            return None
        price = mark.quantize(spec.tick_size)
        if market == "spot":
            return {"symbol": spec.symbol, "price": wire.s8(price)}
        return {"symbol": spec.symbol, "price": wire.fp(spec, price), "time": now_ms}

    async def _ticker(self, ctx: _Ctx) -> Response:
        if "symbol" in ctx.params:
            row = self._price_row(ctx.market, self.book.spec(ctx.market, ctx.params["symbol"]),
                                  ctx.now_ms)
            if row is None:
                raise ExchangeError(-1013, "Market is closed.")
            return JSONResponse(row)
        rows = [self._price_row(ctx.market, s, ctx.now_ms) for s in
                self.book.symbols(ctx.market)]
        return JSONResponse([row for row in rows if row is not None])

    async def _premium_index(self, ctx: _Ctx) -> Response:
        def row(spec: SymbolSpec) -> dict[str, Any] | None:
            mark = self.book.mark(spec)
            if mark is None:
                return None
            m = f"{mark:.8f}"
            next_funding = (ctx.now_ms // 28_800_000 + 1) * 28_800_000
            return {"symbol": spec.symbol, "markPrice": m, "indexPrice": m,
                    "estimatedSettlePrice": m, "lastFundingRate": "0.00000000",
                    "interestRate": "0.00000000", "nextFundingTime": next_funding,
                    "time": ctx.now_ms}

        if "symbol" in ctx.params:
            one = row(self.book.spec("futures", ctx.params["symbol"]))
            if one is None:
                raise ExchangeError(-1013, "Market is closed.")
            return JSONResponse(one)
        rows = [row(s) for s in self.book.symbols("futures")]
        return JSONResponse([x for x in rows if x is not None])

    # ---- orders
    def _parse_new_order(self, ctx: _Ctx) -> tuple[NewOrder, str]:
        p = ctx.params
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                raise mandatory(name)
        side, typ = p["side"].upper(), p["type"].upper()
        if side not in ("BUY", "SELL"):
            raise ExchangeError(-1117, "Invalid side.")
        if typ not in ("MARKET", "LIMIT"):
            raise ExchangeError(-1116, "Invalid orderType.")
        qty = _decimal_param(p, "quantity")
        if qty is None:
            raise mandatory("quantity")
        cid = p.get("newClientOrderId") or None
        if cid is not None and not CLIENT_ID.match(cid):
            raise ExchangeError(-1100, "Illegal characters found in parameter "
                                "'newClientOrderId'; legal range is "
                                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        reduce_raw = p.get("reduceOnly", "false").lower()
        if reduce_raw not in ("true", "false"):
            raise ExchangeError(-1100, "Illegal characters found in parameter 'reduceOnly'.")
        default_resp = "FULL" if ctx.market == "spot" else "ACK"
        resp_type = p.get("newOrderRespType", default_resp).upper()
        if resp_type not in ("ACK", "RESULT", "FULL") or (ctx.market == "futures" and
                                                          resp_type == "FULL"):
            raise ExchangeError(-1100, "Illegal characters found in parameter "
                                "'newOrderRespType'.")
        order = NewOrder(symbol=p["symbol"].upper(), side="BUY" if side == "BUY" else "SELL",
                         type="MARKET" if typ == "MARKET" else "LIMIT", quantity=qty,
                         price=_decimal_param(p, "price"),
                         time_in_force=p.get("timeInForce") or None, client_order_id=cid,
                         reduce_only=ctx.market == "futures" and reduce_raw == "true")
        return order, resp_type

    async def _new_order(self, ctx: _Ctx) -> Response:
        req, resp_type = self._parse_new_order(ctx)
        kinds = {f.kind: f for f in ctx.faults}
        if "place_late" in kinds:
            self._spawn(self._place_late(ctx, req, kinds["place_late"].delay))
            return error_response(-1007, "Timeout waiting for response from backend "
                                  "server. Send status unknown; execution status unknown.",
                                  503)
        partial = kinds.get("partial_fill")
        updates = self.book.place(ctx.account, ctx.market, req, ctx.now_ms,
                                  partial.fraction if partial else None)
        order = updates[-1].order
        self._publish(ctx.account, ctx.market, updates[:1])
        if "drop_user_stream" in kinds:
            await self.streams.drop_all()
        self._publish(ctx.account, ctx.market, updates[1:])
        if partial is not None and order.is_open:
            self._spawn(self._fill_rest(ctx.account, ctx.market, order.order_id,
                                        partial.delay))
        if "expire_listen_key" in kinds:
            self.streams.expire_all(self.now_ms())
        spec = self.book.spec(ctx.market, order.symbol)
        if ctx.market == "spot":
            response: Response = JSONResponse(wire.spot_new_order(order, resp_type))
        else:
            response = JSONResponse(wire.futures_order(spec, order, ack=resp_type == "ACK",
                                                       with_time=False))
        if "accept_then_timeout" in kinds:
            await asyncio.sleep(kinds["accept_then_timeout"].delay)
        if "error_5xx_after" in kinds:
            return error_response(-1007, "Timeout waiting for response from backend server. Send "
                          "status unknown; execution status unknown.", 503)
        return response

    async def _place_late(self, ctx: _Ctx, req: NewOrder, delay_s: float) -> None:
        """The ``place_late`` fault: the order reaches the book after the reply, if still
        within its ``recvWindow`` (as Binance's matching engine checks it)."""
        await asyncio.sleep(delay_s)
        window = int(ctx.params.get("recvWindow") or 5000)
        if self.now_ms() > int(ctx.params.get("timestamp") or 0) + window:
            return
        try:
            updates = self.book.place(ctx.account, ctx.market, req, self.now_ms(), None)
        except ExchangeError:
            return  # refused (a duplicate id, the balance): nothing placed
        self._publish(ctx.account, ctx.market, updates)

    async def _fill_rest(self, account: str, market: Market, order_id: int,
                         delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._publish(account, market, self.book.fill_rest(order_id, self.now_ms()))

    def _publish(self, account: str, market: Market, updates: Sequence[OrderUpdate],
                 cancel_id: str = "") -> None:
        """The user-stream events of ``updates``: the order events, then the balances
        (spot) or wallet and position (futures) after any trade."""
        if not updates:
            return
        now = self.now_ms()
        events: list[dict[str, Any]] = []
        for u in updates:
            self._event_no += 1
            if market == "spot":
                events.append(wire.execution_report(u, now, self._event_no, cancel_id))
            else:
                spec = self.book.spec("futures", u.order.symbol)
                events.append(wire.order_trade_update(spec, u, now))
        if any(u.fill is not None for u in updates):
            symbol = updates[-1].order.symbol
            if market == "spot":
                spec = self.book.spec("spot", symbol)
                events.append(wire.outbound_account_position(self.book, account,
                                                             [spec.base, spec.quote], now))
            else:
                events.append(wire.account_update(self.book, account, symbol, "ORDER", now))
        self.streams.publish(account, market, events)

    def _order_ref(self, ctx: _Ctx) -> tuple[str, str | None, int | None]:
        symbol = ctx.params.get("symbol")
        if not symbol:
            raise mandatory("symbol")
        cid = ctx.params.get("origClientOrderId") or None
        oid_raw = ctx.params.get("orderId") or None
        if cid is None and oid_raw is None:
            raise ExchangeError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                                "but both were empty/null!")
        try:
            oid = int(oid_raw) if oid_raw is not None else None
        except ValueError as exc:
            raise ExchangeError(-1100, "Illegal characters found in parameter "
                                "'orderId'.") from exc
        return symbol.upper(), cid, oid

    async def _query_order(self, ctx: _Ctx) -> Response:
        symbol, cid, oid = self._order_ref(ctx)
        order = self.book.find(ctx.account, ctx.market, symbol, cid, oid)
        if ctx.market == "spot":
            return JSONResponse(wire.spot_order(order))
        return JSONResponse(wire.futures_order(self.book.spec("futures", symbol), order))

    async def _cancel_order(self, ctx: _Ctx) -> Response:
        symbol, cid, oid = self._order_ref(ctx)
        order = self.book.cancel(ctx.account, ctx.market, symbol, cid, oid, ctx.now_ms)
        cancel_id = ctx.params.get("newClientOrderId") or f"cancel-{order.order_id}"
        self._publish(ctx.account, ctx.market, [OrderUpdate(order, "CANCELED")], cancel_id)
        if ctx.market == "spot":
            return JSONResponse(wire.spot_canceled(order, cancel_id, ctx.now_ms))
        return JSONResponse(wire.futures_order(self.book.spec("futures", symbol), order))

    async def _open_orders(self, ctx: _Ctx) -> Response:
        orders = self.book.open_orders(ctx.account, ctx.market, ctx.params.get("symbol"))
        if ctx.market == "spot":
            return JSONResponse([wire.spot_order(o) for o in orders])
        return JSONResponse([wire.futures_order(self.book.spec("futures", o.symbol), o)
                             for o in orders])

    async def _account(self, ctx: _Ctx) -> Response:
        if ctx.market == "spot":
            return JSONResponse(wire.spot_account(self.book, ctx.account, ctx.now_ms))
        return JSONResponse(wire.futures_account(self.book, ctx.account, ctx.now_ms))

    async def _position_risk(self, ctx: _Ctx) -> Response:
        symbol = ctx.params.get("symbol")
        specs = [self.book.spec("futures", symbol)] if symbol else \
            self.book.symbols("futures")
        return JSONResponse(wire.position_risk(self.book, ctx.account, specs))

    async def _listen_key(self, ctx: _Ctx) -> Response:
        method = ctx.request.method
        if method == "POST":
            return JSONResponse({"listenKey": self.streams.create(ctx.account, ctx.market)})
        given = ctx.params.get("listenKey") or None
        if ctx.market == "spot" and given is None:
            raise mandatory("listenKey")
        lk = self.streams.find(ctx.account, ctx.market, given)
        if lk is None:
            raise ExchangeError(-1125, "This listenKey does not exist.")
        if method == "PUT":
            self.streams.keepalive(lk)
            return JSONResponse({} if ctx.market == "spot" else {"listenKey": lk.key})
        self.streams.delete(lk)
        return JSONResponse({})

    # ---- loopback extras
    async def _sim_state(self, request: Request) -> Response:
        self.requests["GET /sim/state"] += 1
        return JSONResponse(self._state())

    async def _sim_faults(self, request: Request) -> Response:
        self.requests["POST /sim/faults"] += 1
        try:
            faults = parse_faults(json.loads(await request.body()), "POST /sim/faults")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"POST /sim/faults: not JSON: {exc}"},
                                status_code=400)
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.faults.add(faults)
        return JSONResponse({"scheduled": len(faults),
                             "pending": [f.to_json() for f in self.faults.pending]})

    async def _sim_adjust(self, request: Request) -> Response:
        self.requests["POST /sim/adjust"] += 1
        try:
            raw = json.loads(await request.body())
            if not isinstance(raw, dict):
                raise ConfigError("POST /sim/adjust: expected a JSON object")
            key = self._account_for(raw.get("key"))
            if set(raw) - {"key"} == {"asset", "delta"}:
                new = self._adjust_balance(key, str(raw["asset"]),
                                           _sim_decimal(raw["delta"], "delta"))
                return JSONResponse({"asset": str(raw["asset"]).upper(), "balance": str(new)})
            if set(raw) - {"key"} == {"symbol", "position_delta"}:
                amount = self._adjust_position(key, str(raw["symbol"]), _sim_decimal(
                    raw["position_delta"], "position_delta"))
                return JSONResponse({"symbol": str(raw["symbol"]).upper(),
                                     "positionAmt": str(amount)})
            raise ConfigError("POST /sim/adjust: expected {\"asset\", \"delta\"} or "
                              "{\"symbol\", \"position_delta\"} (and optionally \"key\")")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"POST /sim/adjust: not JSON: {exc}"},
                                status_code=400)
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ExchangeError as exc:
            return JSONResponse({"error": f"POST /sim/adjust: {exc.msg}"}, status_code=400)


def _sim_decimal(value: object, name: str) -> Decimal:
    return parse_decimal(value, f"POST /sim/adjust: {name!r}")
