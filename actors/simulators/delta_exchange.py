"""The loopback Delta Exchange (``raytrade exchange sim --venue delta``): Delta India's
REST API (``/v2``), its public socket and its private socket on one loopback port, for the
subset raytrade uses, filling perpetual-futures orders against a ``PriceSource`` and
injecting the loopback exchanges' faults on a schedule.

Protocol source: docs.delta.exchange (github.com/delta-exchange/slate
``delta-exchange-api-docs.md``, generated 2026-08-26), plus the error bodies the live API
returns where the docs lag (see ``delta_auth``). Layers: ``delta_auth`` checks signatures
and ``key-auth``; ``delta_book`` holds products, wallets, positions and orders and fills
them; ``delta_wire`` renders Delta's JSON; ``delta_market`` replays bars as candles and
tickers on a virtual clock; ``delta_sockets`` serves both websockets; ``exchange_faults``
is the fault schedule shared with the Binance loopback exchange (same kinds, same JSON),
keyed here by authenticated ``POST /v2/orders`` requests. This module is the HTTP side: a
Starlette app served by uvicorn in a background thread with its own event loop, as in
``binance_exchange``; every state change happens on that loop.

Endpoints: REST under ``http://host:port/v2``, public socket ``ws://host:port/public``,
private socket ``ws://host:port/private``. Rate limit: Delta's fixed 5-minute window per
user (per IP unsigned) with its endpoint weights; over the quota, HTTP 429 with
``X-RATE-LIMIT-RESET`` (ms). Every answer carries ``Request-In-Time`` (server µs, as the
live API does). ``GET /v2/settings`` gives ``server_time`` on the market's clock (the
replay's virtual clock when replaying), which decides which candle is still forming;
signatures are checked against the wall clock plus ``skew_ms``.

How each fault kind shows on Delta: ``error_5xx_before``/``error_5xx_after`` HTTP 503
``unavailable`` (before placing / after filling); ``accept_then_timeout`` fills, then holds
the reply ``delay_s``; ``place_late`` answers 503 and places the order ``delay_s`` later if
still inside the 5 s signature window; ``rate_limit`` 429 with ``X-RATE-LIMIT-RESET``;
``ban`` 429 on every request for ``retry_after_s``; ``timestamp`` 401 ``expired_signature``;
``insufficient_balance`` 400 ``insufficient_margin``; ``filter_lot_size`` 400 ``bad_schema``
on ``size``; ``partial_fill`` fills ``fraction`` of the contracts (a market order's rest
``delay_s`` later, a limit IOC's rest cancelled); ``expire_listen_key`` closes every private
socket (1001) after the order's ``create`` event; ``drop_user_stream`` cuts them without a
close frame. Either way the fills are lost to the socket and must be read over REST.

Loopback extras (no signature, ``delta_loopback``): ``GET /sim/state``, ``POST /sim/faults``,
``POST /sim/adjust``, ``POST /sim/drop``. Secrets are never logged or shown.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from decimal import Decimal
from typing import Any

from raytrade.actors.simulators.delta_auth import (
    CDN_FORBIDDEN_HTML,
    DeltaError,
    bad_schema,
    check_rest,
    coded,
)
from raytrade.actors.simulators.delta_book import DeltaBook
from raytrade.actors.simulators.delta_endpoints import (
    Ctx,
    DeltaEndpoints,
    Handler,
    error_response,
)
from raytrade.actors.simulators.delta_loopback import DeltaLoopback
from raytrade.actors.simulators.delta_market import DeltaReplay
from raytrade.actors.simulators.delta_products import DeltaProduct, default_products
from raytrade.actors.simulators.delta_sockets import DeltaSockets, Kind
from raytrade.actors.simulators.exchange_accounts import AccountConfig
from raytrade.actors.simulators.exchange_faults import Fault, FaultSchedule
from raytrade.actors.simulators.exchange_prices import PriceSource
from raytrade.actors.simulators.loopback_server import LoopbackServer
from raytrade.envs.errors import ConfigError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

WINDOW_MS = 300_000
"""Delta's rate-limit window: a fixed 5 minutes."""
WEIGHTS = {"products": 3, "tickers": 3, "candles": 3, "open_orders": 3, "positions": 3,
           "wallet": 3, "place_order": 5, "cancel_order": 5, "cancel_all": 5}
"""Delta's endpoint weights (others cost 1)."""


class DeltaExchangeSim(LoopbackServer, DeltaEndpoints, DeltaLoopback):
    """The loopback Delta exchange (module docstring).

    Args:
        accounts: one per API key (``futures_wallet``: the USD wallet balance).
        prices: where fills get their prices; default: the replay's.
        replay: bars served as candles and tickers (None: no market data).
        products: default one per replayed symbol (``delta_book.default_products``), or
            per ``symbols``.
        faults: faults scheduled from the start.
        host, port: where to listen (port 0: any free port; see ``port`` after ``start``).
        skew_ms: server clock minus wall clock (tests of clock sync).
        rate_quota: weight per 5-minute window (Delta India: 10000); changeable live.
        heartbeat_s, idle_timeout_s: the sockets' heartbeat period and idle cut (30, 60).
    """

    server_name = "the Delta exchange"
    thread_prefix = "delta-sim"

    def __init__(self, accounts: Sequence[AccountConfig], prices: PriceSource | None = None,
                 *, replay: DeltaReplay | None = None,
                 products: Sequence[DeltaProduct] | None = None, symbols: Sequence[str] = (),
                 faults: Iterable[Fault] = (), host: str = "127.0.0.1", port: int = 0,
                 skew_ms: int = 0, rate_quota: int = 10_000, heartbeat_s: float = 30.0,
                 idle_timeout_s: float = 60.0) -> None:
        source = prices if prices is not None else replay
        if source is None:
            raise ConfigError("the Delta exchange needs prices (a PriceSource or a replay)")
        if products is None:
            feeds = list(replay.tables) if replay is not None else list(symbols)
            if not feeds:
                raise ConfigError("the Delta exchange needs products, symbols or a replay")
            products = default_products(feeds)
        self.book = DeltaBook(accounts, products, source)
        self.replay = replay
        self.faults = FaultSchedule(faults)
        super().__init__(host, port)
        self.skew_ms = skew_ms
        self.rate_quota = rate_quota
        self.sockets = DeltaSockets(self.book.secret, self.now_s, self._snapshot,
                                    self._public_subscribed, heartbeat_s, idle_timeout_s)
        self.requests: Counter[str] = Counter()
        """Requests by ``METHOD /path``."""
        self.order_requests = 0
        """Authenticated ``POST /v2/orders`` so far (the faults' ``at_order`` counter)."""
        self.banned_until_ms = 0
        self._used: dict[tuple[str, int], int] = {}
        self._order_seq: Counter[tuple[str, str]] = Counter()
        self._trade_seq: Counter[tuple[str, str]] = Counter()
        self.app = self._build_app()

    # ---- clocks and URLs
    @property
    def rest_url(self) -> str:
        """``http://host:port`` (REST under ``/v2``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_ws_url(self) -> str:
        """The public socket (``candlestick_<res>``, ``ticker``)."""
        return f"ws://{self.host}:{self.port}/public"

    @property
    def private_ws_url(self) -> str:
        """The private socket (``key-auth``, ``orders``, ``v2/user_trades``, ``positions``)."""
        return f"ws://{self.host}:{self.port}/private"

    # ---- lifecycle
    def _background(self) -> list[Coroutine[Any, Any, None]]:
        tasks = [self._match_loop()]
        if self.replay is not None:
            tasks.append(self._market_loop(self.replay))
        return tasks

    async def _match_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self._publish(self.book.match_resting(self._now_us()))

    async def _market_loop(self, replay: DeltaReplay) -> None:
        """Tell each bar on the public socket as the virtual clock reaches it."""
        while not replay.started:
            await asyncio.sleep(0.01)
        served = {s: p.id for s, p in self.book.products.items() if s in replay.by_delta}
        i = max(replay.start, replay.closed_until())
        while i < replay.stop:
            for at, what in replay.schedule(i):
                delay = replay.real_delay_s(at)
                if delay > 0:
                    await asyncio.sleep(delay)
                for channel, sym, msg in replay.messages(i, at, what, served):
                    self.sockets.publish_public(channel, sym, msg)
            i += 1

    def _public_subscribed(self) -> None:
        if self.replay is not None:
            self.replay.start_clock()

    # ---- Python API (thread-safe: runs on the server's loop)
    def state(self) -> dict[str, Any]:
        """What ``GET /sim/state`` answers."""
        return self._call(self._state)

    def schedule(self, faults: Iterable[Fault]) -> None:
        """Schedule more faults."""
        items = tuple(faults)
        self._call(lambda: self.faults.add(items))

    def adjust_position(self, symbol: str, contracts: int, key: str | None = None) -> int:
        """Move a position behind the trader's back (``/sim/adjust``); its new size."""
        out = self._call(lambda: self._adjust({"symbol": symbol, "position_delta": contracts,
                                               **({"key": key} if key else {})}))
        return int(out["size"])

    def adjust_balance(self, delta: Decimal | str | float, key: str | None = None) -> Decimal:
        """Change a wallet balance (USD) behind the trader's back; the new balance."""
        out = self._call(lambda: self._adjust({"balance_delta": str(delta),
                                               **({"key": key} if key else {})}))
        return Decimal(out["balance"])

    def drop_sockets(self, socket_kind: Kind, close_code: int | None = None) -> int:
        """End every connection of the public or private socket (``/sim/drop``): with
        ``close_code``, or without a close frame; how many."""
        loop = self._loop
        if loop is None or self._thread is None:
            return 0
        out = asyncio.run_coroutine_threadsafe(
            self._drop({"socket": socket_kind, "close_code": close_code}), loop
        ).result(timeout=10)
        return int(out.get("cut", out.get("closed", 0)))

    # ---- the app
    def _build_app(self) -> Starlette:
        r = self._route
        routes: list[Route | WebSocketRoute] = [
            r("/v2/settings", "GET", "settings", False, self._settings),
            r("/v2/products", "GET", "products", False, self._products),
            r("/v2/products/{symbol}", "GET", "products", False, self._product),
            r("/v2/tickers/{symbol}", "GET", "tickers", False, self._ticker),
            r("/v2/history/candles", "GET", "candles", False, self._candles),
            r("/v2/orders", "POST", "place_order", True, self._place),
            r("/v2/orders", "GET", "open_orders", True, self._open_orders),
            r("/v2/orders", "DELETE", "cancel_order", True, self._cancel),
            r("/v2/orders/all", "DELETE", "cancel_all", True, self._cancel_all),
            r("/v2/orders/client_order_id/{client_oid}", "GET", "order", True,
              self._order_by_client_id),
            r("/v2/orders/{order_id}", "GET", "order", True, self._order_by_id),
            r("/v2/positions", "GET", "positions", True, self._position),
            r("/v2/positions/margined", "GET", "positions", True, self._positions),
            r("/v2/wallet/balances", "GET", "wallet", True, self._wallet),
            r("/v2/products/{product_id}/orders/leverage", "POST", "leverage", True,
              self._set_leverage),
            r("/v2/products/{product_id}/orders/leverage", "GET", "leverage", True,
              self._get_leverage),
            Route("/sim/state", self._sim_state, methods=["GET"]),
            *(Route(f"/sim/{name}", self._sim_post, methods=["POST"])
              for name in ("faults", "adjust", "drop")),
            WebSocketRoute("/public", self.sockets.serve_public),
            WebSocketRoute("/private", self.sockets.serve_private),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def _route(self, path: str, method: str, name: str, signed: bool,
               handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, name, signed, handler)

        return Route(path, endpoint, methods=[method], name=f"{method}:{path}")

    async def _dispatch(self, request: Request, name: str, signed: bool,
                        handler: Handler) -> Response:
        self.requests[f"{request.method} {request.url.path}"] += 1
        now_us = self._now_us()
        try:
            response = await self._checked(request, name, signed, handler, now_us)
        except DeltaError as exc:
            response = error_response(exc)
        response.headers["Request-In-Time"] = str(now_us)
        return response

    async def _checked(self, request: Request, name: str, signed: bool, handler: Handler,
                       now_us: int) -> Response:
        now_ms = now_us // 1000
        if now_ms < self.banned_until_ms:
            return self._too_many(self.banned_until_ms - now_ms)
        if not request.headers.get("user-agent"):
            raise DeltaError(403, html=CDN_FORBIDDEN_HTML)  # the CDN, before any API check
        raw = await request.body()
        body_text = raw.decode("utf-8", errors="replace")
        who = request.headers.get("api-key") or (request.client.host if request.client
                                                 else "?")
        window = now_ms // WINDOW_MS
        if any(w != window for _, w in self._used):
            self._used = {k: v for k, v in self._used.items() if k[1] == window}
        used = self._used.get((who, window), 0) + WEIGHTS.get(name, 1)
        self._used[(who, window)] = used
        if used > self.rate_quota:
            return self._too_many(WINDOW_MS - now_ms % WINDOW_MS)
        account, ts = "", 0
        faults: tuple[Fault, ...] = ()
        if signed:
            account = check_rest(request.headers, request.method, request.url.path,
                                 request.url.query, body_text, self.book.secret,
                                 now_us / 1e6)
            ts = int(request.headers["timestamp"])
            if name == "place_order":
                faults = self.faults.take(self.order_requests)
                self.order_requests += 1
                refusal = self._refusal(faults, ts, now_ms)
                if refusal is not None:
                    return refusal
        body: dict[str, Any] = {}
        if body_text.strip():
            try:
                parsed = json.loads(body_text)
            except ValueError:
                raise bad_schema("body", "the body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise bad_schema("body", "the body must be a JSON object")
            body = parsed
        return await handler(Ctx(request, account, body, now_us, tuple(faults), ts))

    def _too_many(self, reset_ms: int) -> Response:
        return JSONResponse({"success": False, "error": {"code": "rate_limit_exceeded"}},
                            status_code=429, headers={"X-RATE-LIMIT-RESET": str(reset_ms)})

    def _refusal(self, faults: Iterable[Fault], request_ts: int, now_ms: int
                 ) -> Response | None:
        """The answer of a fault that refuses the order before placing it, if any."""
        for f in faults:
            if f.kind == "error_5xx_before":
                return error_response(coded(503, "unavailable"))
            if f.kind == "rate_limit":
                return self._too_many(int(f.retry_after_s * 1000))
            if f.kind == "ban":
                self.banned_until_ms = now_ms + int(f.retry_after_s * 1000)
                return self._too_many(int(f.retry_after_s * 1000))
            if f.kind == "timestamp":
                return error_response(coded(401, "expired_signature", {
                    "request_time": request_ts, "server_time": now_ms // 1000 + 60}))
            if f.kind == "insufficient_balance":
                return error_response(coded(400, "insufficient_margin",
                                            {"additional_margin_required": "1000"}))
            if f.kind == "filter_lot_size":
                return error_response(bad_schema("size", "size is not a valid number of contracts"))
        return None
