"""The loopback exchange (``raytrade exchange sim``): Binance spot (``/api/v3``) and USD-M
futures (``/fapi``) on one loopback port, speaking Binance's own REST and user-stream
protocol for the subset the live trader uses, filling orders against a ``PriceSource``
and injecting faults on a schedule.

Layers: ``exchange_book`` holds the accounts, symbols and orders and matches them;
``exchange_wire`` renders Binance's JSON; ``exchange_streams`` owns listen keys and the
user-stream websockets; ``exchange_faults`` the fault schedule. This module is the HTTP
side: a Starlette app served by uvicorn in a background thread with its own event loop
(every state change happens on that loop; the Python API below hands its calls to it).

Every REST request is weighed into ``X-MBX-USED-WEIGHT-1M`` (fixed one-minute windows per
market, 429 over the limit); order requests also into the order counts. SIGNED requests
are checked like Binance does: the ``X-MBX-APIKEY`` account (401 -2015), the HMAC-SHA256
signature over the query string followed by the form body (-1022), then ``timestamp`` and
``recvWindow`` against the server time, which is the wall clock plus ``skew_ms`` (-1021).
Faults scheduled on the Nth authenticated order request (``exchange_faults``) fire between
the signature check and the timestamp check.

Loopback-only extras (no signature): ``GET /sim/state``, ``POST /sim/faults``,
``POST /sim/adjust``. Secrets are never logged or shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import uvicorn
from raytrade.actors.simulators import exchange_wire as wire
from raytrade.actors.simulators.exchange_accounts import AccountConfig
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
from raytrade.actors.simulators.exchange_faults import (
    BEFORE_PLACING,
    Fault,
    FaultSchedule,
    parse_faults,
)
from raytrade.actors.simulators.exchange_prices import PriceSource
from raytrade.actors.simulators.exchange_streams import ABORT_EXTENSION, UserStreams
from raytrade.envs.errors import ConfigError, OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as WsRequest

log = logging.getLogger(__name__)

Security = Literal["NONE", "USER_STREAM", "SIGNED"]
T = TypeVar("T")


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, plus a scope extension that cuts the TCP connection
    without a close frame: the ``drop_user_stream`` fault needs a real abrupt drop, which
    ASGI alone cannot express."""

    def handle_connect(self, event: WsRequest) -> None:
        """Accept as uvicorn does, then offer ``transport.abort`` to the app."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = {
                "abort": self.transport.abort,
                "write_buffer_size": self.transport.get_write_buffer_size}


@dataclass(frozen=True)
class Limits:
    """Rate limits the exchange enforces (Binance's defaults)."""

    spot_weight_1m: int = 6000
    futures_weight_1m: int = 2400
    spot_orders_10s: int = 100
    futures_orders_1m: int = 1200


@dataclass(frozen=True)
class _Ctx:
    request: Request
    market: Market
    params: dict[str, str]
    account: str
    now_ms: int
    faults: tuple[Fault, ...]


Handler = Callable[[_Ctx], Awaitable[Response]]

_SPOT_WEIGHTS = {"time": 1, "exchangeInfo": 20, "ticker": 2, "order": 4, "newOrder": 1,
                 "cancel": 1, "openOrders": 6, "account": 20, "listenKey": 2}
_FUTURES_WEIGHTS = {"time": 1, "exchangeInfo": 1, "ticker": 1, "premiumIndex": 1,
                    "order": 1, "newOrder": 0, "cancel": 1, "openOrders": 1, "account": 5,
                    "positionRisk": 5, "listenKey": 1}


def _error(code: int, msg: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def _mandatory(name: str) -> ExchangeError:
    return ExchangeError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                         "or malformed.")


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


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its ``signature=`` parameter, and the signature."""
    parts = raw.split("&") if raw else []
    sig = None
    kept = []
    for part in parts:
        if part.startswith("signature="):
            sig = urllib.parse.unquote(part[len("signature="):])
        else:
            kept.append(part)
    return "&".join(kept), sig


class BinanceExchangeSim:
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

    def __init__(self, accounts: Sequence[AccountConfig], prices: PriceSource, *,
                 specs: Sequence[SymbolSpec] | None = None,
                 symbols: Sequence[str] = (), faults: Iterable[Fault] = (),
                 host: str = "127.0.0.1", port: int = 0, skew_ms: int = 0,
                 listen_key_ttl_s: float = 3600.0, fees: Fees | None = None,
                 default_leverage: int = 1, limits: Limits = Limits()) -> None:
        if specs is None:
            if not symbols:
                raise ConfigError("the exchange needs symbols (or specs)")
            specs = default_specs(symbols, prices)
        self.book = ExchangeBook(accounts, specs, prices, fees=fees or Fees(),
                                 default_leverage=default_leverage)
        self.faults = FaultSchedule(faults)
        self.streams = UserStreams(listen_key_ttl_s)
        self.host, self.port = host, port
        self.skew_ms = skew_ms
        self.limits = limits
        self.requests: Counter[str] = Counter()
        """Requests by ``METHOD /path``."""
        self.order_requests = 0
        """Authenticated order requests so far (the faults' ``at_order`` counter)."""
        self.banned_until_ms = 0
        self._weights: dict[Market, tuple[int, int]] = {}
        """market -> (minute number, weight used in it)."""
        self._order_counts: dict[tuple[str, Market, int], tuple[int, int]] = {}
        """(account, market, window length ms) -> (window number, orders in it)."""
        self._event_no = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
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

    def start(self, timeout_s: float = 10.0) -> BinanceExchangeSim:
        """Listen and serve in a background thread; returns once accepting."""
        if self._thread is not None:
            raise OperationalError("the exchange is already running")
        # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections whose socket says
        # so, and without it every keep-alive reply waits ~40 ms for a delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OperationalError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, log_level="warning",
                                access_log=False, ws=AbortableWebSocketProtocol, lifespan="on",
                                timeout_graceful_shutdown=1, ws_ping_interval=20.0)
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start() or stop()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"exchange-sim:{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OperationalError(f"the exchange did not start: {self._error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (open websockets are closed, held replies cut after 1 s)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._thread = None
        self._server = None

    def __enter__(self) -> BinanceExchangeSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._spawn(self._expire_loop())
        try:
            yield
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_loop(self) -> None:
        period = min(0.25, self.streams.ttl_s / 4)
        while True:
            await asyncio.sleep(period)
            self.streams.expire_due(self.now_ms())

    # ---- Python API (thread-safe: runs on the server's loop)
    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None or self._thread is None:
            return fn()  # not running: nothing else touches the state

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)

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
                "banned_until": self.banned_until_ms}

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

    def _weight(self, market: Market, name: str, params: dict[str, str], now_ms: int) -> int:
        table = _SPOT_WEIGHTS if market == "spot" else _FUTURES_WEIGHTS
        w = table.get(name, 1)
        if name in ("openOrders", "ticker", "positionRisk") and "symbol" not in params:
            w = {"openOrders": 80 if market == "spot" else 40, "ticker": 4 if market == "spot"
                 else 2, "positionRisk": 5}[name]
        window = now_ms // 60_000
        prev_window, used = self._weights.get(market, (window, 0))
        used = (used if prev_window == window else 0) + w
        self._weights[market] = (window, used)
        return used

    def _count_order(self, account: str, market: Market, now_ms: int) -> dict[str, str]:
        spans = {"10S": 10_000, "1D": 86_400_000} if market == "spot" else {"1M": 60_000}
        headers = {}
        for label, span in spans.items():
            slot = (account, market, span)
            window, n = self._order_counts.get(slot, (now_ms // span, 0))
            n = (n if window == now_ms // span else 0) + 1
            self._order_counts[slot] = (now_ms // span, n)
            headers[f"X-MBX-ORDER-COUNT-{label}"] = str(n)
        return headers

    async def _dispatch(self, request: Request, market: Market, name: str,
                        security: Security, handler: Handler) -> Response:
        self.requests[f"{request.method} {request.url.path}"] += 1
        now = self.now_ms()
        if self.banned_until_ms > now:
            return self._ban_response(now)
        query = request.url.query
        body = (await request.body()).decode("utf-8", errors="replace")
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(query, keep_blank_values=True))
        used = self._weight(market, name, params, now)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        limit = self.limits.spot_weight_1m if market == "spot" else \
            self.limits.futures_weight_1m
        if used > limit:
            return self._too_many(headers, limit, 60 - (now // 1000) % 60)
        try:
            account = ""
            faults: tuple[Fault, ...] = ()
            if security != "NONE":
                account = self._api_key(request)
            if security == "SIGNED":
                self._verify_signature(account, query, body)
                if name == "newOrder":
                    headers.update(self._count_order(account, market, now))
                    if self._orders_over_limit(headers, market):
                        return _with(_error(-1015, self._order_limit_msg(market), 429),
                                     headers)
                    faults = self.faults.take(self.order_requests)
                    self.order_requests += 1
                    refusal = self._refusal(faults, market, now)
                    if refusal is not None:
                        return _with(refusal, headers)
                self._check_timestamp(params, now)
            response = await handler(_Ctx(request, market, params, account, now, faults))
        except ExchangeError as exc:
            response = _error(exc.code, exc.msg, exc.status)
        return _with(response, headers)

    def _orders_over_limit(self, headers: dict[str, str], market: Market) -> bool:
        if market == "spot":
            return int(headers["X-MBX-ORDER-COUNT-10S"]) > self.limits.spot_orders_10s
        return int(headers["X-MBX-ORDER-COUNT-1M"]) > self.limits.futures_orders_1m

    def _order_limit_msg(self, market: Market) -> str:
        if market == "spot":
            return (f"Too many new orders; current limit is {self.limits.spot_orders_10s} "
                    "orders per 10 SECOND.")
        return (f"Too many new orders; current limit is {self.limits.futures_orders_1m} "
                "orders per MINUTE.")

    def _too_many(self, headers: dict[str, str], limit: int, retry_after_s: float) -> Response:
        resp = _error(-1003, f"Too many requests; current limit of IP({self.host}) is {limit} "
                      "requests per minute. Please use the websocket for live updates to "
                      "avoid polling the API.", 429)
        return _with(resp, {**headers, "Retry-After": str(max(1, math.ceil(retry_after_s)))})

    def _ban_response(self, now_ms: int) -> Response:
        resp = _error(-1003, f"Way too many requests; IP({self.host}) banned until "
                      f"{self.banned_until_ms}. Please use the websocket for live updates to "
                      "avoid bans.", 418)
        wait = max(1, math.ceil((self.banned_until_ms - now_ms) / 1000))
        return _with(resp, {"Retry-After": str(wait)})

    def _refusal(self, faults: tuple[Fault, ...], market: Market, now_ms: int
                 ) -> Response | None:
        """The answer of the first fault that refuses the order, if any."""
        for f in faults:
            if f.kind not in BEFORE_PLACING:
                continue
            if f.kind == "rate_limit":
                limit = self.limits.spot_weight_1m if market == "spot" else \
                    self.limits.futures_weight_1m
                return self._too_many({}, limit, f.retry_after_s)
            if f.kind == "ban":
                self.banned_until_ms = now_ms + int(f.retry_after_s * 1000)
                return self._ban_response(now_ms)
            if f.kind == "error_5xx_before":
                return _error(-1008, "Server is currently overloaded with other requests. "
                              "Please try again in a few minutes.", 503)
            if f.kind == "timestamp":
                return _error(-1021, "Timestamp for this request is outside of the "
                              "recvWindow.")
            if f.kind == "insufficient_balance":
                return (_error(-2010, "Account has insufficient balance for requested "
                               "action.") if market == "spot" else
                        _error(-2019, "Margin is insufficient."))
            if f.kind == "filter_lot_size":
                return (_error(-1013, "Filter failure: LOT_SIZE") if market == "spot" else
                        _error(-1111, "Precision is over the maximum defined for this "
                               "asset."))
        return None

    def _api_key(self, request: Request) -> str:
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key or self.book.secret(key) is None:
            raise ExchangeError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return key

    def _verify_signature(self, account: str, query: str, body: str) -> None:
        q, sig_q = _strip_signature(query)
        b, sig_b = _strip_signature(body)
        sig = sig_q if sig_q is not None else sig_b
        if not sig:
            raise _mandatory("signature")
        secret = self.book.secret(account) or ""
        expected = hmac.new(secret.encode(), (q + b).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise ExchangeError(-1022, "Signature for this request is not valid.")

    @staticmethod
    def _check_timestamp(params: dict[str, str], now_ms: int) -> None:
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError) as exc:
            raise _mandatory("timestamp") from exc
        try:
            window = int(params.get("recvWindow", "5000"))
        except ValueError as exc:
            raise _mandatory("recvWindow") from exc
        if window > 60_000 or window <= 0:
            raise ExchangeError(-1131, "recvWindow must be less than 60000")
        if ts >= now_ms + 1000 or now_ms - ts > window:
            raise ExchangeError(-1021, "Timestamp for this request is outside of the "
                                "recvWindow.")

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
                raise _mandatory(name)
        side, typ = p["side"].upper(), p["type"].upper()
        if side not in ("BUY", "SELL"):
            raise ExchangeError(-1117, "Invalid side.")
        if typ not in ("MARKET", "LIMIT"):
            raise ExchangeError(-1116, "Invalid orderType.")
        qty = _decimal_param(p, "quantity")
        if qty is None:
            raise _mandatory("quantity")
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
            return _error(-1007, "Timeout waiting for response from backend server. Send "
                          "status unknown; execution status unknown.", 503)
        return response

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
            raise _mandatory("symbol")
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
            raise _mandatory("listenKey")
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
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"POST /sim/adjust: {name!r} must be a number or decimal string")
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"POST /sim/adjust: {name!r} is not a number: {value!r}") from exc
    if not d.is_finite():
        raise ConfigError(f"POST /sim/adjust: {name!r} is not finite")
    return d


def _with(response: Response, headers: dict[str, str]) -> Response:
    for k, v in headers.items():
        response.headers[k] = v
    return response
