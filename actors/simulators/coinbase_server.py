"""A Coinbase Exchange protocol server on loopback (tests of the ``coinbase`` venue): the
websocket feed (``subscribe`` -> ``subscriptions``, then ``match`` and ``ticker``
messages) and REST ``GET /products/<id>/candles``, over historical bars.

Bar ``i`` is streamed as the four trades that rebuild it exactly (``bar_script.py``) and
a ticker around its close, one bar every ``bar_s`` real seconds from ``start``. REST serves
the bars already streamed, in Coinbase's shape: newest first, at most 300, and without the
``missing`` bar indices (intervals with no trades, which Coinbase leaves out). A request
it cannot answer gets a 400 with Coinbase's ``{"message": ...}`` body.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from raytrade.actors.simulators.bar_script import bar_trades
from raytrade.envs.bars import BarTable
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


def _iso_ms(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=ms % 1000 * 1000)
    return dt.isoformat().replace("+00:00", "Z")


class CoinbaseServer:
    """Serve ``tables`` (product id -> bars, same times) from bar ``start``."""

    def __init__(self, tables: dict[str, BarTable], *, start: int, bar_s: float,
                 missing: frozenset[int] = frozenset()) -> None:
        self.tables = tables
        self.start = start
        self.bar_s = bar_s
        self.missing = missing
        first = next(iter(tables.values()))
        self.ts = first.ts
        self.interval_ms = first.interval_ms
        self.streamed = start  # bars [0, streamed) are closed and served over REST
        self.server: Server | None = None
        self.port = 0
        self.requests = 0
        self.done = asyncio.Event()

    async def __aenter__(self) -> CoinbaseServer:
        self.server = await serve(self._handler, "127.0.0.1", 0,
                                  process_request=self._rest)
        self.port = int(next(iter(self.server.sockets)).getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        """The websocket URL."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base URL."""
        return f"http://127.0.0.1:{self.port}"

    def candles(self, product: str, params: dict[str, str]) -> list[list[float]]:
        """Coinbase's candles reply for ``product``; ``ValueError`` naming the bad
        parameter."""
        if product not in self.tables:
            raise ValueError(f"NotFound: product {product}")
        try:
            start = int(datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
                        .timestamp() * 1000)
            end = int(datetime.fromisoformat(params["end"].replace("Z", "+00:00"))
                      .timestamp() * 1000)
            granularity = int(params["granularity"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"start, end and granularity are required: {exc}") from None
        if granularity * 1000 != self.interval_ms:
            raise ValueError(f"granularity {granularity}: this server serves "
                             f"{self.interval_ms // 1000} s candles")
        t = self.tables[product]
        rows = [[int(t.ts[i]) // 1000, float(t.low[i]), float(t.high[i]), float(t.open[i]),
                 float(t.close[i]), float(t.volume[i])]
                for i in range(self.streamed)
                if start <= t.ts[i] <= end and i not in self.missing]
        return rows[::-1][:300]

    def _rest(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "products" or parts[3] != "candles":
            return None
        self.requests += 1
        try:
            body: Any = self.candles(parts[2], dict(urllib.parse.parse_qsl(query)))
            status = HTTPStatus.OK
        except ValueError as exc:
            body, status = {"message": str(exc)}, HTTPStatus.BAD_REQUEST
        return conn.respond(status, json.dumps(body))

    async def _handler(self, conn: ServerConnection) -> None:
        msg = json.loads(await conn.recv())
        if not isinstance(msg, dict) or msg.get("type") != "subscribe":
            await conn.send(json.dumps({"type": "error", "message": "Failed to subscribe",
                                        "reason": "expected a subscribe message"}))
            return
        products = [p for p in msg.get("product_ids", []) if p in self.tables]
        channels = list(msg.get("channels", []))
        await conn.send(json.dumps({"type": "subscriptions", "channels": [
            {"name": c, "product_ids": products} for c in channels]}))
        seq = dict.fromkeys(products, 1000)
        i = self.streamed
        while i < len(self.ts):
            for product in products:
                t = self.tables[product]
                for trade in bar_trades(t, i):
                    seq[product] += 1
                    await conn.send(json.dumps({
                        "type": "match", "trade_id": trade.trade_id,
                        "sequence": seq[product], "product_id": product,
                        "price": repr(trade.price), "size": repr(trade.qty), "side": "buy",
                        "time": _iso_ms(trade.ts)}))
                if "ticker" in channels:
                    c = float(t.close[i])
                    await conn.send(json.dumps(self._ticker(product, c, seq[product])))
            self.streamed = i  # bars before i are over once bar i trades
            i += 1
            await asyncio.sleep(self.bar_s)
        self.done.set()
        await conn.wait_closed()

    @staticmethod
    def _ticker(product: str, close: float, seq: int) -> dict[str, Any]:
        return {"type": "ticker", "sequence": seq, "product_id": product,
                "price": repr(close), "best_bid": repr(close * (1 - 1e-4)),
                "best_bid_size": "1.0", "best_ask": repr(close * (1 + 1e-4)),
                "best_ask_size": "1.0"}
