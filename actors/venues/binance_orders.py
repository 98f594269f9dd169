"""Binance spot and USD-M futures order execution (``execution.OrderExecution``).

One ``BinanceExecution`` serves one account (its ``ApiKeys``) on one market: ``spot``
(``/api/v3``: long/flat, a position is the base asset's balance) or ``futures`` (``/fapi``:
USD-M perpetuals in one-way mode, a position is the signed ``positionAmt``). The same code
talks to Binance's production and testnet endpoints and to the loopback exchange
(``raytrade exchange sim``): only ``rest_url`` and ``ws_url`` differ.

- ``place`` sends ``MARKET`` orders, or ``LIMIT`` orders with ``timeInForce=IOC`` (a
  marketable limit: a market order with a price band), ``reduceOnly`` on futures,
  ``newClientOrderId`` = the caller's idempotency key (checked locally against Binance's
  ``^[.A-Z:/a-z0-9_-]{1,36}$`` first) and ``newOrderRespType=FULL`` on spot (the state
  after matching with each fill and its commission) or ``RESULT`` on futures (the state
  after matching). An exchange
  refusal (insufficient balance or margin, a filter failure, an unknown symbol, a duplicate
  client id, a refused reduce-only order) comes back as a ``rejected`` ``OrderState`` with
  ``"<code> <msg>"`` as its reason; other failures raise (``binance_signed.py``).
- ``query`` finds an order by client id (None when Binance has none: -2013); ``cancel``
  of an order that is already final (-2011) returns its final state.
- ``filters`` come from ``exchangeInfo`` (per symbol on spot, the whole list on futures,
  which has no symbol parameter), cached for ``filters_refresh_s``; when a refresh fails
  temporarily the cached rules are used and the failure logged, because trading rules
  change rarely and an order checked against the previous rules is refused by the exchange
  at worst.
- ``account`` combines the balances (spot ``/api/v3/account``; futures ``/fapi/v2/account``)
  with prices (spot last trade ``/api/v3/ticker/price``; futures mark price
  ``/fapi/v1/premiumIndex``) and the open orders of the requested symbols.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from dataclasses import dataclass

from raytrade.actors.venues.binance_auth import ApiKeys
from raytrade.actors.venues.binance_clock import parse_rate_limits
from raytrade.actors.venues.binance_replies import (
    ExchangeSymbol,
    parse_futures_account,
    parse_order,
    parse_orders,
    parse_price,
    parse_spot_balances,
    parse_symbols,
)
from raytrade.actors.venues.binance_signed import (
    BinanceApiError,
    MalformedReplyError,
    Params,
    SignedTransport,
    decimal_text,
)
from raytrade.actors.venues.binance_user_stream import BinanceUserStream
from raytrade.actors.venues.execution import (
    AccountSnapshot,
    MarketKind,
    OrderFateUnknownError,
    OrderRequest,
    OrderState,
    SymbolFilters,
)
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)

CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
"""Binance's rule for ``newClientOrderId``."""
REFUSAL_CODES = frozenset({
    -2010,  # spot: insufficient balance, duplicate order, other new-order refusals
    -2019,  # futures: margin is insufficient
    -1013,  # filter failure (LOT_SIZE, NOTIONAL, PRICE_FILTER, MARKET_LOT_SIZE, ...)
    -1111,  # precision over the maximum for the asset
    -1121,  # invalid symbol
    -2022,  # futures: reduce-only order rejected
    -4003,  # futures: quantity <= 0
    -4015,  # futures: client order id is not valid (duplicate of an open order)
    -4116,  # futures: client order id is duplicated
    -4131,  # futures: best price outside PERCENT_PRICE for a market order
    -4164,  # futures: notional below the minimum
})
"""Binance codes by which a new order is refused: nothing was placed."""
ORDER_DOES_NOT_EXIST = -2013
UNKNOWN_ORDER_SENT = -2011


@dataclass(frozen=True)
class _Paths:
    """A market's REST endpoints."""

    time: str
    exchange_info: str
    order: str
    open_orders: str
    account: str
    price: str
    price_field: str
    listen_key: str


PATHS: dict[MarketKind, _Paths] = {
    "spot": _Paths("/api/v3/time", "/api/v3/exchangeInfo", "/api/v3/order",
                   "/api/v3/openOrders", "/api/v3/account", "/api/v3/ticker/price", "price",
                   "/api/v3/userDataStream"),
    "futures": _Paths("/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/order",
                      "/fapi/v1/openOrders", "/fapi/v2/account", "/fapi/v1/premiumIndex",
                      "markPrice", "/fapi/v1/listenKey"),
}


class UnknownOrderError(BinanceApiError):
    """``cancel`` of a client order id the exchange has never seen."""


class BinanceExecution:
    """Orders, account and user stream of one Binance account on one market (module
    docstring).

    Args:
        market: ``spot`` or ``futures``.
        rest_url: REST base URL (``https://testnet.binance.vision``,
            ``https://testnet.binancefuture.com``, the loopback exchange's URL).
        ws_url: user-stream websocket base URL (``wss://stream.testnet.binance.vision``,
            ``wss://fstream.binancefuture.com``); the stream connects to ``<ws_url>/ws/<key>``.
        keys: the account's keys (``binance_auth.load_keys``).
        timeout_s: per-request socket timeout (s); an order request that times out is an
            ``OrderFateUnknownError``.
        filters_refresh_s: how long ``exchangeInfo`` filters are trusted (s).
        recv_window_ms: Binance's ``recvWindow`` (ms, at most 60000).
        time_resync_s: how often the server-time offset is re-measured (s).
        keepalive_s: listen-key keepalive period (s; Binance expires keys after 60 min).
        pool_size: keep-alive connections and worker threads for REST calls.
    """

    def __init__(self, market: MarketKind, rest_url: str, ws_url: str, keys: ApiKeys, *,
                 timeout_s: float = 5.0, filters_refresh_s: float = 3600.0,
                 recv_window_ms: int = 5000, time_resync_s: float = 600.0,
                 keepalive_s: float = 1800.0, pool_size: int = 4) -> None:
        if market not in PATHS:
            raise ConfigError(f"market must be 'spot' or 'futures', got {market!r}")
        if filters_refresh_s <= 0:
            raise ConfigError(f"filters_refresh_s must be > 0, got {filters_refresh_s}")
        self._market: MarketKind = market
        self.paths = PATHS[market]
        self.ws_url = ws_url.rstrip("/")
        self.keepalive_s = keepalive_s
        self.filters_refresh_s = filters_refresh_s
        self.transport = SignedTransport(rest_url, keys, time_path=self.paths.time,
                                         timeout_s=timeout_s, recv_window_ms=recv_window_ms,
                                         time_resync_s=time_resync_s, pool_size=pool_size)
        self._symbols: dict[str, tuple[ExchangeSymbol, float]] = {}
        self._filters_lock = asyncio.Lock()

    @property
    def market(self) -> MarketKind:
        """``spot`` or ``futures``."""
        return self._market

    def __repr__(self) -> str:
        return f"BinanceExecution({self._market}, {self.transport.rest_url})"

    async def prepare(self, symbols: tuple[str, ...]) -> None:
        """Sync the clock and load the filters of ``symbols`` now, so the first order pays
        for neither."""
        await self.warm()
        await self._refresh_stale(symbols)
        for symbol in symbols:
            await self.filters(symbol)

    async def _refresh_stale(self, symbols: tuple[str, ...]) -> None:
        """Load the filters of every symbol in ``symbols`` not cached or older than the
        refresh period in one ``exchangeInfo`` request (weight 20 whatever the number of
        symbols: twenty actors reconciling twenty symbols must not ask 400 times)."""
        now = time.monotonic()
        stale = [s for s in symbols if s not in self._symbols
                 or now - self._symbols[s][1] >= self.filters_refresh_s]
        if len(stale) < 2:
            return
        async with self._filters_lock:
            params: Params = ({"symbols": json.dumps(stale, separators=(",", ":"))}
                              if self._market == "spot" else {})
            try:
                data = await self.transport.call("GET", self.paths.exchange_info, params)
            except TemporaryError as exc:
                log.warning("filters of %s: batched refresh failed (%s); asking one by one",
                            stale, exc)
                return
            except BinanceApiError as exc:  # e.g. -1121: one of them is not listed
                log.warning("filters of %s: batched refresh refused (%s %s); asking one "
                            "by one", stale, exc.code, exc.msg)
                return
            if isinstance(data, dict):
                self.transport.tracker.set_limits(parse_rate_limits(data.get("rateLimits")))
            fetched = time.monotonic()
            for name, entry in parse_symbols(data, f"GET {self.paths.exchange_info}").items():
                self._symbols[name] = (entry, fetched)

    async def warm(self) -> None:
        """Re-measure the clock offset (``GET /time``, weight 1), which leaves a fresh
        keep-alive connection in the pool. Pooled connections idle for longer than the
        transport's ``max_idle_s`` (50 s) are not trusted, so with bars minutes apart the
        live trader calls this shortly before a bar closes: the order then goes out on a
        warm connection instead of paying for a TCP and TLS handshake."""
        await self.transport.run(self.transport.clock.sync)

    # ---- filters

    async def filters(self, symbol: str) -> SymbolFilters:
        """Trading rules for ``symbol`` (module docstring); ``ConfigError`` when the
        exchange does not trade it."""
        cached = self._symbols.get(symbol)
        if cached is None or time.monotonic() - cached[1] >= self.filters_refresh_s:
            async with self._filters_lock:
                cached = self._symbols.get(symbol)
                if cached is None or time.monotonic() - cached[1] >= self.filters_refresh_s:
                    try:
                        await self._refresh(symbol)
                    except TemporaryError as exc:
                        if cached is None:
                            raise
                        log.warning("%s filters: refresh failed, using the rules fetched "
                                    "%.0f s ago (%s)", symbol, time.monotonic() - cached[1],
                                    exc)
                cached = self._symbols.get(symbol)
        if cached is None:
            raise ConfigError(f"{symbol}: not listed by {self.transport.rest_url}"
                              f"{self.paths.exchange_info}")
        entry = cached[0]
        if entry.status != "TRADING":
            raise ConfigError(f"{symbol}: status {entry.status} on "
                              f"{self.transport.rest_url}, not TRADING")
        return entry.filters

    async def _refresh(self, symbol: str) -> None:
        where = f"GET {self.paths.exchange_info}"
        params: Params = {"symbol": symbol} if self._market == "spot" else {}
        try:
            data = await self.transport.call("GET", self.paths.exchange_info, params)
        except BinanceApiError as exc:
            if exc.code == -1121:
                raise ConfigError(f"{symbol}: not traded on {self.transport.rest_url} "
                                  f"({exc.code} {exc.msg})") from None
            raise
        if isinstance(data, dict):
            self.transport.tracker.set_limits(parse_rate_limits(data.get("rateLimits")))
        now = time.monotonic()
        for name, entry in parse_symbols(data, where).items():
            self._symbols[name] = (entry, now)

    # ---- orders

    async def place(self, order: OrderRequest) -> OrderState:
        """Submit ``order`` (module docstring)."""
        params = self._order_params(order)
        try:
            data = await self.transport.call("POST", self.paths.order, params, signed=True,
                                             unsafe=True)
            return parse_order(data, self._market, f"POST {self.paths.order}")
        except BinanceApiError as exc:
            if exc.code in REFUSAL_CODES:
                log.info("order %s %s refused: %s %s", order.client_order_id, order.symbol,
                         exc.code, exc.msg)
                return OrderState(order.client_order_id, None, order.symbol, order.side,
                                  "rejected", order.qty, 0.0, None,
                                  reason=f"{exc.code} {exc.msg}")
            raise
        except MalformedReplyError as exc:
            raise OrderFateUnknownError(f"{exc}; the order was accepted (HTTP 2xx) but its "
                                        "state could not be read") from None

    def _order_params(self, order: OrderRequest) -> Params:
        cid = order.client_order_id
        if not CLIENT_ORDER_ID.match(cid):
            raise ConfigError(f"client order id {cid!r} breaks Binance's rule "
                              f"{CLIENT_ORDER_ID.pattern} (at most 36 of A-Z a-z 0-9 . : / _ -)")
        if not (math.isfinite(order.qty) and order.qty > 0):
            raise ConfigError(f"order {cid}: quantity {order.qty} must be finite and > 0")
        if order.reduce_only and self._market == "spot":
            raise ConfigError(f"order {cid}: reduce_only exists on futures only")
        params: dict[str, str | int | float | bool] = {
            "symbol": order.symbol, "side": order.side.upper(), "type": order.kind.upper(),
            "quantity": _plain(order.qty)}
        price = order.checked_limit_price()
        if price is not None:
            params["timeInForce"] = "IOC"
            params["price"] = _plain(price)
        if order.reduce_only:
            params["reduceOnly"] = True
        params["newClientOrderId"] = cid
        # spot FULL lists the fills with their commissions (the journal books them
        # exactly even when the user stream is down); futures have no FULL
        params["newOrderRespType"] = "FULL" if self._market == "spot" else "RESULT"
        return params

    async def query(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order's state; None when the exchange has no such order (-2013)."""
        try:
            data = await self.transport.call(
                "GET", self.paths.order,
                {"symbol": symbol, "origClientOrderId": client_order_id}, signed=True)
        except BinanceApiError as exc:
            if exc.code == ORDER_DOES_NOT_EXIST:
                return None
            raise
        return parse_order(data, self._market, f"GET {self.paths.order}")

    async def cancel(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order; an order already final (-2011) is queried and returned
        as it ended; ``UnknownOrderError`` if the exchange never had it."""
        try:
            data = await self.transport.call(
                "DELETE", self.paths.order,
                {"symbol": symbol, "origClientOrderId": client_order_id}, signed=True)
        except BinanceApiError as exc:
            if exc.code != UNKNOWN_ORDER_SENT:
                raise
            state = await self.query(symbol, client_order_id)
            if state is None:
                raise UnknownOrderError(exc.endpoint, exc.status, exc.code,
                                        f"{exc.msg} (no order {client_order_id!r} on "
                                        f"{symbol})") from None
            return state
        return parse_order(data, self._market, f"DELETE {self.paths.order}")

    async def open_orders(self, symbol: str) -> list[OrderState]:
        """Orders on ``symbol`` that can still fill."""
        data = await self.transport.call("GET", self.paths.open_orders, {"symbol": symbol},
                                         signed=True)
        return parse_orders(data, self._market, f"GET {self.paths.open_orders}")

    # ---- account

    async def price(self, symbol: str) -> float:
        """The exchange's current price (spot: last trade; futures: mark price)."""
        data = await self.transport.call("GET", self.paths.price, {"symbol": symbol})
        return parse_price(data, self.paths.price_field, symbol, f"GET {self.paths.price}")

    async def prices(self, symbols: tuple[str, ...]) -> dict[str, float]:
        """Current prices of ``symbols``: one request per symbol for one or two, else one
        request for every symbol (weight 4 on spot instead of 2 per symbol)."""
        if len(symbols) <= 2:
            values = await asyncio.gather(*(self.price(s) for s in symbols))
            return dict(zip(symbols, values, strict=True))
        where = f"GET {self.paths.price}"
        data = await self.transport.call("GET", self.paths.price, {})
        if not isinstance(data, list):
            raise MalformedReplyError(f"{where}: expected a JSON array of prices")
        rows = {row.get("symbol"): row for row in data if isinstance(row, dict)}
        missing = [s for s in symbols if s not in rows]
        if missing:
            raise MalformedReplyError(f"{where}: no price for {missing}")
        return {s: parse_price(rows[s], self.paths.price_field, s, where) for s in symbols}

    async def account(self, symbols: tuple[str, ...], *,
                      open_orders_for: tuple[str, ...] | None = None) -> AccountSnapshot:
        """Balances, positions, prices and open orders for ``symbols`` (open orders only
        for ``open_orders_for`` when given: 6 weight per symbol); equity as
        ``AccountSnapshot`` defines it (in the symbols' common quote asset on spot)."""
        await self._refresh_stale(symbols)
        filters = [await self.filters(s) for s in symbols]
        where = f"GET {self.paths.account}"
        wanted = symbols if open_orders_for is None else open_orders_for
        data, price_map, orders = await asyncio.gather(
            self.transport.call("GET", self.paths.account, signed=True),
            self.prices(symbols),
            asyncio.gather(*(self.open_orders(s) for s in wanted)))
        open_orders = tuple(o for group in orders for o in group)
        at_ms = self.transport.clock.peek_ms()
        if self._market == "futures":
            fut = parse_futures_account(data, where)
            return AccountSnapshot(at_ms, fut.balances,
                                   {s: fut.positions.get(s, 0.0) for s in symbols},
                                   price_map, fut.wallet + fut.unrealized, open_orders)
        balances = parse_spot_balances(data, where)
        quotes = {f.quote_asset for f in filters}
        if len(quotes) > 1:
            raise ConfigError(f"spot account over {symbols}: quote assets {sorted(quotes)} "
                              "differ, so there is no single equity currency")
        equity = balances.get(quotes.pop(), 0.0) if quotes else 0.0
        valued: set[str] = set()
        for f in filters:
            if f.base_asset not in valued:  # two symbols on one base asset count it once
                valued.add(f.base_asset)
                equity += balances.get(f.base_asset, 0.0) * price_map[f.symbol]
        return AccountSnapshot(at_ms, balances,
                               {f.symbol: balances.get(f.base_asset, 0.0) for f in filters},
                               price_map, equity, open_orders)

    # ---- stream and lifetime

    def user_stream(self, *, initial_backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                    close_key: bool = False) -> BinanceUserStream:
        """The account's order-update stream (``binance_user_stream.py``), reconnecting
        after a drop with back-off doubling from ``initial_backoff_s`` to
        ``max_backoff_s``. The listen key is left to expire by default: the live trader
        runs one stream per symbol on one account, and every stream of an account gets
        the same key, so closing it would cut the others off (``close_key=True`` for a
        stream alone on its account)."""
        return BinanceUserStream(self.transport, self._market, self.paths.listen_key,
                                 self.ws_url, keepalive_s=self.keepalive_s,
                                 initial_backoff_s=initial_backoff_s,
                                 max_backoff_s=max_backoff_s, close_key=close_key)

    async def close(self) -> None:
        """Close the REST connections."""
        self.transport.close()


def _plain(x: float) -> str:
    """A quantity or price as a plain decimal, binary noise (``0.30000000000000004``)
    removed at 12 significant digits."""
    return decimal_text(float(f"{x:.12g}"))
