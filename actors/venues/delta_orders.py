"""Delta Exchange order execution for USD perpetual futures (``execution.OrderExecution``,
``market="futures"``: a position is signed).

One ``DeltaExecution`` serves one account (its ``ApiKeys``). The same code talks to
Delta's production and testnet (demo) endpoints and to the loopback simulator: only
``rest_url`` and ``ws_url`` differ. Endpoints and formats: Delta's API documentation
(https://docs.delta.exchange: "Orders", "Positions", "Wallet", "Products").

- ``filters`` come from ``GET /v2/products/{symbol}`` (cached for ``products_refresh_s``):
  only a live, vanilla (linear) ``perpetual_futures`` product is traded; a product in
  a disrupted trading status is a temporary error (the session waits). The quantity step
  and minimum are one contract (``contract_value`` base units). Product ids differ between
  testnet and mainnet: they are always looked up, never configured. The first time a
  product is loaded its order leverage is set (``POST /v2/products/{id}/orders/leverage``)
  to the configured value (``leverage``: per symbol, default 1: no borrowed exposure beyond
  what the live trader's capital and limits already allow).
- ``place`` sends ``market_order``, or ``limit_order`` with ``time_in_force: ioc`` (a
  marketable limit: a market order with a price band), ``size`` in whole contracts
  (base quantity / contract_value), ``reduce_only``, and the caller's client order id.
  Delta's ``client_order_id`` holds at most 32 characters, and it travels in a URL path
  when queried: an id of at most 32 letters, digits, ``_`` and ``-`` (raytrade's own,
  ``rt-<actor hash>-<bar>-<version>-<leg>``) is sent as is; any other (up to 36 characters,
  or with ``.``, ``:`` or ``/``) as its first 20 characters with those three replaced by
  ``-``, then ``-`` and the first 11 hex digits of its SHA-256 (``delta_client_id``).
  The mapping is deterministic, so a query after a restart finds the order from the
  journal's id alone; replies are mapped back through the ids this object has sent or
  queried. Any 4xx refusal of an order (``insufficient_margin``, ``bad_schema``,
  ``order_size_exceed_available``, ``risk_limits_breached``, ``invalid_contract``, ...)
  comes back as a ``rejected`` ``OrderState`` with Delta's code and context as its reason:
  nothing was placed.
- ``query`` finds an order by client id (None when Delta answers 404); ``cancel`` of an
  order no longer open (``open_order_not_found``) returns its final state.
- ``account`` combines the wallet (``/v2/wallet/balances``; equity is its
  ``meta.net_equity``, else the settling asset's balance), each symbol's real-time
  position (``/v2/positions``), mark prices (``/v2/tickers/{symbol}``) and open orders.

An order whose fate is unknown may still land while its signature is valid: Delta accepts a
signed request up to 5 s after its timestamp, so ``recv_window_ms`` (the router waits that
long plus a second before it treats an absent order as never placed) must be at least 5000.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from raytrade.actors.venues.api_keys import ApiKeys
from raytrade.actors.venues.delta_replies import (
    Product,
    parse_mark_price,
    parse_order,
    parse_orders,
    parse_position,
    parse_product,
    parse_wallet,
)
from raytrade.actors.venues.delta_signed import DeltaApiError, SignedTransport
from raytrade.actors.venues.delta_user_stream import DeltaUserStream
from raytrade.actors.venues.execution import (
    AccountSnapshot,
    MarketKind,
    OrderFateUnknownError,
    OrderRequest,
    OrderState,
    SymbolFilters,
)
from raytrade.actors.venues.http import decimal_text
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)

MAX_CLIENT_ID = 32
"""Delta's limit on ``client_order_id`` (changelog 08.10.25)."""
_PLAIN_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CLIENT_ID}}}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
SIGNATURE_WINDOW_MS = 5000
"""Delta accepts a signed request up to 5 s after its timestamp."""
UNKNOWN_CONTRACT = "invalid_contract"
NOT_OPEN = "open_order_not_found"


def delta_client_id(cid: str) -> str:
    """Delta's spelling of a client order id (module docstring)."""
    if _PLAIN_ID.fullmatch(cid):
        return cid
    prefix = _UNSAFE.sub("-", cid[:20])
    return f"{prefix}-{hashlib.sha256(cid.encode()).hexdigest()[:11]}"


class UnknownOrderError(DeltaApiError):
    """``cancel`` of a client order id Delta has never seen."""


class DeltaExecution:
    """Orders, account and order stream of one Delta account (module docstring).

    Args:
        rest_url: REST base URL (``https://cdn-ind.testnet.deltaex.org``, the loopback's).
        ws_url: private websocket URL (``wss://socket-ind.testnet.deltaex.org``).
        keys: the account's keys (``delta_auth.load_keys``).
        timeout_s: per-request socket timeout (s); an order request that times out is an
            ``OrderFateUnknownError``.
        recv_window_ms: how long after sending an order may still land (>= 5000: Delta's
            signature window).
        leverage: symbol -> order leverage set when its product is first loaded.
        default_leverage: for symbols ``leverage`` does not name.
        products_refresh_s: how long product rules are trusted (s).
    """

    def __init__(self, rest_url: str, ws_url: str, keys: ApiKeys, *, timeout_s: float = 5.0,
                 recv_window_ms: int = SIGNATURE_WINDOW_MS,
                 leverage: Mapping[str, float] | None = None, default_leverage: float = 1.0,
                 products_refresh_s: float = 3600.0, pool_size: int = 4) -> None:
        if recv_window_ms < SIGNATURE_WINDOW_MS:
            raise ConfigError(f"recv_window_ms {recv_window_ms} is shorter than Delta's 5 s "
                              "signature window: an order of unknown fate could land after "
                              "the router gave it up and sent it again; use >= 5000")
        for sym, lev in {**(leverage or {}), "(default)": default_leverage}.items():
            if not (math.isfinite(lev) and lev >= 1):
                raise ConfigError(f"Delta leverage for {sym} is {lev}: must be >= 1")
        self.ws_url = ws_url
        self.leverage = dict(leverage or {})
        self.default_leverage = default_leverage
        self.products_refresh_s = products_refresh_s
        self.transport = SignedTransport(rest_url, keys, timeout_s=timeout_s,
                                         pool_size=pool_size)
        self._products: dict[str, tuple[Product, float]] = {}
        self._leverage_set: set[str] = set()
        self._lock = asyncio.Lock()
        self._cids: dict[str, str] = {}
        """Delta's client order id -> the caller's, for every id sent or queried."""

    @property
    def market(self) -> MarketKind:
        """Perpetual futures: a signed position."""
        return "futures"

    def __repr__(self) -> str:
        return f"DeltaExecution({self.transport.rest_url})"

    def cid_of(self, delta_cid: str) -> str:
        """The caller's id for one of Delta's (itself when not mapped)."""
        return self._cids.get(delta_cid, delta_cid)

    def _delta_cid(self, cid: str) -> str:
        mapped = delta_client_id(cid)
        self._cids[mapped] = cid
        return mapped

    async def warm(self) -> None:
        """``GET /v2/settings`` (public, weight 1): its reply re-measures the server clock
        offset and leaves a fresh keep-alive connection in the pool, so an order after
        minutes of silence pays for no TCP and TLS handshake (the live session calls this
        every 20 s between bars)."""
        await self.transport.call("GET", "/v2/settings")

    # ---- products and filters

    async def product(self, symbol: str) -> Product:
        """The live product ``symbol`` (cached; module docstring)."""
        cached = self._products.get(symbol)
        if cached is None or time.monotonic() - cached[1] >= self.products_refresh_s:
            async with self._lock:
                cached = self._products.get(symbol)
                if cached is None or time.monotonic() - cached[1] >= self.products_refresh_s:
                    try:
                        cached = (await self._load(symbol), time.monotonic())
                        self._products[symbol] = cached
                    except TemporaryError as exc:
                        if cached is None:
                            raise
                        log.warning("%s product: refresh failed, using the rules fetched "
                                    "%.0f s ago (%s)", symbol, time.monotonic() - cached[1],
                                    exc)
        product = cached[0]
        if product.trading_status != "operational":
            raise TemporaryError(f"{symbol}: Delta's trading status is "
                                 f"{product.trading_status}, not operational")
        if symbol not in self._leverage_set:
            await self._set_leverage(product)
        return product

    async def _load(self, symbol: str) -> Product:
        path = f"/v2/products/{symbol}"
        try:
            env = await self.transport.call("GET", path)
        except DeltaApiError as exc:
            if exc.code == UNKNOWN_CONTRACT or exc.status == 404:
                raise ConfigError(f"{symbol}: Delta ({self.transport.rest_url}) has no such "
                                  f"product ({exc.code or exc.status})") from None
            raise
        product = parse_product(env.get("result"), f"GET {path}")
        problems = [f"{name} is {value!r}, not {want!r}" for name, value, want in (
            ("symbol", product.symbol, symbol),
            ("contract_type", product.contract_type, "perpetual_futures"),
            ("notional_type", product.notional_type, "vanilla"),
            ("state", product.state, "live"), ("is_quanto", product.quanto, False))
            if value != want]
        if problems:
            raise ConfigError(f"{symbol}: not a live linear (vanilla) Delta perpetual: "
                              f"{'; '.join(problems)}")
        return product

    async def _set_leverage(self, product: Product) -> None:
        leverage = self.leverage.get(product.symbol, self.default_leverage)
        path = f"/v2/products/{product.id}/orders/leverage"
        env = await self.transport.call("POST", path, body={"leverage": decimal_text(leverage)},
                                        signed=True)
        result = env.get("result")
        got = result.get("leverage") if isinstance(result, dict) else None
        try:
            ok = float(got) == float(leverage)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MalformedReplyError(f"POST {path}: leverage {got!r} in the reply, asked for "
                                      f"{leverage:g}")
        self._leverage_set.add(product.symbol)
        log.info("%s: order leverage %g", product.symbol, leverage)

    async def filters(self, symbol: str) -> SymbolFilters:
        """Trading rules for ``symbol`` in base units (module docstring)."""
        return (await self.product(symbol)).filters()

    # ---- orders

    async def place(self, order: OrderRequest) -> OrderState:
        """Submit ``order`` (module docstring)."""
        product = await self.product(order.symbol)
        body = self._order_body(order, product)
        try:
            env = await self.transport.call("POST", "/v2/orders", body=body, signed=True,
                                            unsafe=True)
            return parse_order(env.get("result"), product, self.cid_of, "POST /v2/orders")
        except DeltaApiError as exc:
            log.info("order %s %s refused: %s", order.client_order_id, order.symbol, exc)
            reason = exc.code + (f" {exc.context}" if exc.context else "")
            return OrderState(order.client_order_id, None, order.symbol, order.side,
                              "rejected", order.qty, 0.0, None, reason=reason or str(exc))
        except MalformedReplyError as exc:
            raise OrderFateUnknownError(f"{exc}; the order was accepted (HTTP 2xx) but its "
                                        "state could not be read") from None

    def _order_body(self, order: OrderRequest, product: Product) -> dict[str, Any]:
        cid = order.client_order_id
        try:
            size = product.contracts(order.qty)
        except ValueError as exc:
            raise ConfigError(f"order {cid}: {exc}") from None
        body: dict[str, Any] = {"product_id": product.id, "size": size, "side": order.side,
                                "order_type": f"{order.kind}_order"}
        price = order.checked_limit_price()
        if price is not None:
            body["limit_price"] = decimal_text(float(f"{price:.12g}"))
            body["time_in_force"] = "ioc"
        body["reduce_only"] = order.reduce_only
        body["client_order_id"] = self._delta_cid(cid)
        return body

    async def query(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order's state; None when Delta has no such order (404)."""
        product = await self.product(symbol)
        path = f"/v2/orders/client_order_id/{self._delta_cid(client_order_id)}"
        try:
            env = await self.transport.call("GET", path, signed=True)
        except DeltaApiError as exc:
            if exc.status == 404:
                return None
            raise
        return parse_order(env.get("result"), product, self.cid_of, f"GET {path}")

    async def cancel(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order; one no longer open is queried and returned as it ended;
        ``UnknownOrderError`` if Delta never had it."""
        product = await self.product(symbol)
        body = {"client_order_id": self._delta_cid(client_order_id), "product_id": product.id}
        try:
            env = await self.transport.call("DELETE", "/v2/orders", body=body, signed=True)
        except DeltaApiError as exc:
            if exc.code != NOT_OPEN and exc.status != 404:
                raise
            state = await self.query(symbol, client_order_id)
            if state is None:
                raise UnknownOrderError(exc.what, exc.status, exc.code,
                                        {"client_order_id": client_order_id}) from None
            return state
        return parse_order(env.get("result"), product, self.cid_of, "DELETE /v2/orders")

    async def open_orders(self, symbol: str) -> list[OrderState]:
        """Orders on ``symbol`` that can still fill (every page)."""
        product = await self.product(symbol)
        out: list[OrderState] = []
        after: str | None = None
        while True:
            query: dict[str, str | int] = {"product_ids": product.id,
                                           "states": "open,pending"}
            if after:
                query["after"] = after
            env = await self.transport.call("GET", "/v2/orders", query, signed=True)
            out += parse_orders(env.get("result"), product, self.cid_of, "GET /v2/orders")
            meta = env.get("meta")
            after = meta.get("after") if isinstance(meta, dict) else None
            if not isinstance(after, str) or not after:
                return out

    # ---- account

    async def account(self, symbols: tuple[str, ...], *,
                      open_orders_for: tuple[str, ...] | None = None) -> AccountSnapshot:
        """Wallet, positions, mark prices and open orders (module docstring)."""
        products = [await self.product(s) for s in symbols]
        wanted = symbols if open_orders_for is None else open_orders_for
        wallet, positions, prices, orders = await asyncio.gather(
            self.transport.call("GET", "/v2/wallet/balances", signed=True),
            asyncio.gather(*(self._position(p) for p in products)),
            asyncio.gather(*(self._mark(p) for p in products)),
            asyncio.gather(*(self.open_orders(s) for s in wanted)))
        balances, net_equity = parse_wallet(wallet, "GET /v2/wallet/balances")
        settling = {p.settling for p in products}
        if net_equity is None and len(settling) > 1:
            raise ConfigError(f"Delta account over {symbols}: settling assets "
                              f"{sorted(settling)} differ, so there is no single equity")
        equity = net_equity if net_equity is not None else \
            balances.get(next(iter(settling)), 0.0) if settling else 0.0
        return AccountSnapshot(self.transport.now_s() * 1000, balances,
                               dict(zip(symbols, positions, strict=True)),
                               dict(zip(symbols, prices, strict=True)), equity,
                               tuple(o for group in orders for o in group))

    async def _position(self, product: Product) -> float:
        env = await self.transport.call("GET", "/v2/positions", {"product_id": product.id},
                                        signed=True)
        return parse_position(env.get("result"), product, "GET /v2/positions")

    async def _mark(self, product: Product) -> float:
        path = f"/v2/tickers/{product.symbol}"
        env = await self.transport.call("GET", path)
        return parse_mark_price(env.get("result"), product, f"GET {path}")

    # ---- stream and lifetime

    def user_stream(self) -> DeltaUserStream:
        """The account's order stream (``delta_user_stream.py``) for the products loaded
        so far (the live session loads its symbol's before it starts the stream)."""
        return DeltaUserStream(self.ws_url, self.transport,
                               lambda s: self._products[s][0] if s in self._products else None,
                               tuple(sorted(self._products)), self.cid_of)

    async def close(self) -> None:
        """Close the REST connections."""
        self.transport.close()
