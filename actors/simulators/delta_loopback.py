"""The loopback Delta exchange's test controls (no signature; not Delta's API), mixed into
``delta_exchange.DeltaExchangeSim`` as ``/sim/...`` endpoints and the matching Python calls:

- ``GET /sim/state``: wallets, positions and orders per account, the sockets, request
  counts, faults fired and pending, the server and market clocks (µs);
- ``POST /sim/faults`` ``{"faults": [...]}``: schedule faults (``exchange_faults`` JSON);
- ``POST /sim/adjust`` ``{"symbol": "BTCUSD", "position_delta": 3}`` (contracts, at the
  mark, no order, no fee) or ``{"balance_delta": "-100"}`` (USD), with ``"key"`` when
  there are several accounts: a change behind the trader's back, announced on the private
  socket (``positions``) as Delta would announce a trade made elsewhere;
- ``POST /sim/drop`` ``{"socket": "public"|"private", "close_code": 1000|1001|null}``: end
  every connection of a socket, with that close frame or (null) none at all.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from raytrade.actors.simulators import delta_wire as wire
from raytrade.actors.simulators.delta_auth import DeltaError
from raytrade.actors.simulators.delta_book import DeltaBook
from raytrade.actors.simulators.delta_sockets import DeltaSockets
from raytrade.actors.simulators.exchange_accounts import parse_decimal
from raytrade.actors.simulators.exchange_faults import FaultSchedule, parse_faults
from raytrade.envs.errors import ConfigError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class DeltaLoopback:
    """``/sim/...`` and their Python twins (module docstring)."""

    book: DeltaBook
    sockets: DeltaSockets
    faults: FaultSchedule
    requests: Counter[str]
    order_requests: int
    banned_until_ms: int
    _now_us: Callable[[], int]
    market_now_ms: Callable[[], int]

    def _state(self) -> dict[str, Any]:
        accounts = {}
        for key in self.book.accounts:
            wallet = wire.wallet(self.book, key)["result"][0]
            accounts[key] = {
                "balance": wallet["balance"], "available_balance": wallet["available_balance"],
                "positions": {p.symbol: wire.position_row(self.book, key, p)
                              for p in self.book.products.values()},
                "orders": [wire.order(self.book, o) for o in self.book.orders.values()
                           if o.account == key]}
        return {"server_time": self._now_us(), "market_time": self.market_now_ms() * 1000,
                "accounts": accounts, "sockets": self.sockets.describe(),
                "requests": dict(sorted(self.requests.items())),
                "order_requests": self.order_requests,
                "faults_fired": dict(self.faults.fired),
                "faults_pending": [f.to_json() for f in self.faults.pending],
                "banned_until_ms": self.banned_until_ms}

    def _account_for(self, key: object) -> str:
        if key is None:
            if len(self.book.accounts) != 1:
                raise ConfigError("several accounts: say which one ('key')")
            return next(iter(self.book.accounts))
        if not isinstance(key, str) or key not in self.book.accounts:
            raise ConfigError(f"no account with key {key!r}")
        return key

    def _adjust(self, raw: dict[str, Any]) -> dict[str, Any]:
        key = self._account_for(raw.get("key"))
        fields = set(raw) - {"key"}
        if fields == {"balance_delta"}:
            delta = parse_decimal(raw["balance_delta"], "'balance_delta'")
            return {"balance": wire.dstr(self.book.adjust_balance(key, delta))}
        if fields == {"symbol", "position_delta"}:
            contracts = raw["position_delta"]
            if isinstance(contracts, bool) or not isinstance(contracts, int) or not contracts:
                raise ConfigError("'position_delta' must be a non-zero whole number of "
                                  "contracts")
            try:
                product = self.book.product(str(raw["symbol"]))
                before = self.book.accounts[key].positions[product.id].size
                size = self.book.adjust_position(key, product, contracts)
            except DeltaError as exc:
                raise ConfigError(f"cannot adjust {raw['symbol']!r}: {exc}") from None
            action = "create" if before == 0 else "delete" if size == 0 else "update"
            self.sockets.publish_private(key, "positions", product.symbol,
                                         wire.position_message(self.book, key, product,
                                                               action))
            return {"symbol": product.symbol, "size": size}
        raise ConfigError("expected {\"symbol\", \"position_delta\"} or {\"balance_delta\"} "
                          "(and optionally \"key\")")

    async def _drop(self, raw: dict[str, Any]) -> dict[str, Any]:
        kind, code = raw.get("socket"), raw.get("close_code")
        if kind not in ("public", "private") or set(raw) - {"socket", "close_code"}:
            raise ConfigError("expected {\"socket\": \"public\"|\"private\", "
                              "\"close_code\": N|null}")
        if code is None:
            return {"cut": await self.sockets.cut(kind)}
        if isinstance(code, bool) or not isinstance(code, int) or not 1000 <= code <= 4999:
            raise ConfigError(f"'close_code' must be a websocket close code, got {code!r}")
        return {"closed": self.sockets.close_all(kind, code)}

    # ---- the endpoints
    async def _sim_state(self, request: Request) -> Response:
        self.requests["GET /sim/state"] += 1
        return JSONResponse(self._state())

    async def _sim_post(self, request: Request) -> Response:
        name = request.url.path
        self.requests[f"POST {name}"] += 1
        try:
            raw = json.loads(await request.body())
            if name == "/sim/faults":
                faults = parse_faults(raw, "POST /sim/faults")
                self.faults.add(faults)
                return JSONResponse({"scheduled": len(faults), "pending": [
                    f.to_json() for f in self.faults.pending]})
            if not isinstance(raw, dict):
                raise ConfigError("expected a JSON object")
            if name == "/sim/adjust":
                return JSONResponse(self._adjust(raw))
            return JSONResponse(await self._drop(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"POST {name}: not JSON: {exc}"}, status_code=400)
        except ConfigError as exc:
            return JSONResponse({"error": f"POST {name}: {exc}"}, status_code=400)

