"""What every request to the loopback exchange passes before an endpoint sees it, as on
Binance: the IP ban (418), the request weight per fixed one-minute window and market
(``X-MBX-USED-WEIGHT-1M``, 429 over the limit), the order counts per account
(``X-MBX-ORDER-COUNT-10S``/``-1D`` on spot, ``-1M`` on futures; 429 -1015 over the limit),
the API key (401 -2015), the HMAC-SHA256 signature over the query string followed by the
form body (-1022) and ``timestamp``/``recvWindow`` against the server time (-1021); and
the answers of the faults that refuse an order (``exchange_faults.BEFORE_PLACING``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import urllib.parse
from dataclasses import dataclass

from raytrade.actors.simulators.exchange_book import ExchangeError, Market
from raytrade.actors.simulators.exchange_faults import BEFORE_PLACING, Fault
from starlette.responses import JSONResponse, Response

_SPOT_WEIGHTS = {"time": 1, "exchangeInfo": 20, "ticker": 2, "order": 4, "newOrder": 1,
                 "cancel": 1, "openOrders": 6, "account": 20, "listenKey": 2}
_FUTURES_WEIGHTS = {"time": 1, "exchangeInfo": 1, "ticker": 1, "premiumIndex": 1,
                    "order": 1, "newOrder": 0, "cancel": 1, "openOrders": 1, "account": 5,
                    "positionRisk": 5, "listenKey": 1}
_ALL_SYMBOLS_WEIGHTS = {"spot": {"openOrders": 80, "ticker": 4},
                        "futures": {"openOrders": 40, "ticker": 2, "positionRisk": 5}}


@dataclass(frozen=True)
class Limits:
    """Rate limits the exchange enforces (Binance's defaults)."""

    spot_weight_1m: int = 6000
    futures_weight_1m: int = 2400
    spot_orders_10s: int = 100
    futures_orders_1m: int = 1200


def error_response(code: int, msg: str, status: int = 400) -> JSONResponse:
    """Binance's error JSON."""
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    """``response`` with ``headers`` added."""
    for k, v in headers.items():
        response.headers[k] = v
    return response


def mandatory(name: str) -> ExchangeError:
    """-1102 for a missing parameter."""
    return ExchangeError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                         "or malformed.")


def strip_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` (a query string or form body, as sent) without its ``signature=``
    parameter, and the signature."""
    sig = None
    kept = []
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            sig = urllib.parse.unquote(part[len("signature="):])
        else:
            kept.append(part)
    return "&".join(kept), sig


def verify_signature(secret: str, query: str, body: str) -> None:
    """Binance's rule: hex HMAC-SHA256(secret, query string + body), the ``signature``
    parameter itself left out, may sit in either part."""
    q, sig_q = strip_signature(query)
    b, sig_b = strip_signature(body)
    sig = sig_q if sig_q is not None else sig_b
    if not sig:
        raise mandatory("signature")
    expected = hmac.new(secret.encode(), (q + b).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig.lower()):
        raise ExchangeError(-1022, "Signature for this request is not valid.")


def check_timestamp(params: dict[str, str], now_ms: int) -> None:
    """Refuse (-1021) a ``timestamp`` at or beyond server time + 1 s, or older than
    ``recvWindow`` (default 5000 ms, at most 60000)."""
    try:
        ts = int(params["timestamp"])
    except (KeyError, ValueError) as exc:
        raise mandatory("timestamp") from exc
    try:
        window = int(params.get("recvWindow", "5000"))
    except ValueError as exc:
        raise mandatory("recvWindow") from exc
    if window > 60_000 or window <= 0:
        raise ExchangeError(-1131, "recvWindow must be less than 60000")
    if ts >= now_ms + 1000 or now_ms - ts > window:
        raise ExchangeError(-1021, "Timestamp for this request is outside of the recvWindow.")


class RequestGate:
    """Request weights, order counts and the ban (module docstring). Used from the
    exchange's event loop only."""

    def __init__(self, limits: Limits, host: str) -> None:
        self.limits = limits
        self.host = host
        self.banned_until_ms = 0
        self._weights: dict[Market, tuple[int, int]] = {}
        """market -> (minute number, weight used in it)."""
        self._order_counts: dict[tuple[str, Market, int], tuple[int, int]] = {}
        """(account, market, window length ms) -> (window number, orders in it)."""

    def weigh(self, market: Market, name: str, params: dict[str, str], now_ms: int) -> int:
        """Add endpoint ``name``'s weight to this minute's; the weight used so far."""
        w = (_SPOT_WEIGHTS if market == "spot" else _FUTURES_WEIGHTS).get(name, 1)
        if "symbol" not in params:
            w = _ALL_SYMBOLS_WEIGHTS[market].get(name, w)
        window = now_ms // 60_000
        prev_window, used = self._weights.get(market, (window, 0))
        used = (used if prev_window == window else 0) + w
        self._weights[market] = (window, used)
        return used

    def weight_limit(self, market: Market) -> int:
        """The market's weight per minute."""
        return self.limits.spot_weight_1m if market == "spot" else \
            self.limits.futures_weight_1m

    def count_order(self, account: str, market: Market, now_ms: int) -> dict[str, str]:
        """Count one new order; the order-count headers."""
        spans = {"10S": 10_000, "1D": 86_400_000} if market == "spot" else {"1M": 60_000}
        headers = {}
        for label, span in spans.items():
            slot = (account, market, span)
            window, n = self._order_counts.get(slot, (now_ms // span, 0))
            n = (n if window == now_ms // span else 0) + 1
            self._order_counts[slot] = (now_ms // span, n)
            headers[f"X-MBX-ORDER-COUNT-{label}"] = str(n)
        return headers

    def orders_over_limit(self, headers: dict[str, str], market: Market) -> Response | None:
        """429 -1015 if the counts in ``headers`` pass the market's order limit."""
        if market == "spot" and int(headers["X-MBX-ORDER-COUNT-10S"]) > \
                self.limits.spot_orders_10s:
            msg = f"{self.limits.spot_orders_10s} orders per 10 SECOND."
        elif market == "futures" and int(headers["X-MBX-ORDER-COUNT-1M"]) > \
                self.limits.futures_orders_1m:
            msg = f"{self.limits.futures_orders_1m} orders per MINUTE."
        else:
            return None
        return with_headers(error_response(-1015, f"Too many new orders; current limit is "
                                           f"{msg}", 429), headers)

    def too_many(self, headers: dict[str, str], limit: int, retry_after_s: float) -> Response:
        """429 -1003 with ``Retry-After`` (whole seconds, at least 1)."""
        resp = error_response(-1003, f"Too many requests; current limit of IP({self.host}) "
                              f"is {limit} requests per minute. Please use the websocket "
                              "for live updates to avoid polling the API.", 429)
        return with_headers(resp, {**headers,
                                   "Retry-After": str(max(1, math.ceil(retry_after_s)))})

    def banned(self, now_ms: int) -> Response | None:
        """418 while the ban lasts."""
        if self.banned_until_ms <= now_ms:
            return None
        resp = error_response(-1003, f"Way too many requests; IP({self.host}) banned until "
                              f"{self.banned_until_ms}. Please use the websocket for live "
                              "updates to avoid bans.", 418)
        wait = max(1, math.ceil((self.banned_until_ms - now_ms) / 1000))
        return with_headers(resp, {"Retry-After": str(wait)})

    def refusal(self, faults: tuple[Fault, ...], market: Market, now_ms: int
                ) -> Response | None:
        """The answer of the first fault that refuses the order, if any (a ``ban`` starts
        the ban)."""
        for f in faults:
            if f.kind not in BEFORE_PLACING:
                continue
            if f.kind == "rate_limit":
                return self.too_many({}, self.weight_limit(market), f.retry_after_s)
            if f.kind == "ban":
                self.banned_until_ms = now_ms + int(f.retry_after_s * 1000)
                return self.banned(now_ms)
            if f.kind == "error_5xx_before":
                return error_response(-1008, "Server is currently overloaded with other "
                                      "requests. Please try again in a few minutes.", 503)
            if f.kind == "timestamp":
                return error_response(-1021, "Timestamp for this request is outside of the "
                                      "recvWindow.")
            if f.kind == "insufficient_balance":
                return (error_response(-2010, "Account has insufficient balance for "
                                       "requested action.") if market == "spot" else
                        error_response(-2019, "Margin is insufficient."))
            if f.kind == "filter_lot_size":
                return (error_response(-1013, "Filter failure: LOT_SIZE") if market == "spot"
                        else error_response(-1111, "Precision is over the maximum defined "
                                            "for this asset."))
        return None
