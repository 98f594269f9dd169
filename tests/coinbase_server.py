"""A Coinbase Exchange protocol server on loopback for tests: the websocket feed
(``subscribe`` -> ``subscriptions``, then ``match`` and ``ticker`` messages) and REST
``GET /products/<id>/candles``, over historical bars.

Bar ``i`` is streamed as the four trades that rebuild it exactly (``trade_messages``) and
a ticker around its close, one bar every ``bar_s`` real seconds from ``start``. REST serves
the bars already streamed, in Coinbase's shape: newest first, at most 300, and without the
``missing`` bar indices (intervals with no trades, which Coinbase leaves out).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from raytrade.actors.replay_server import trade_messages
from raytrade.envs.bars import BarTable
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


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
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _rest(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if not path.startswith("/products/"):
            return None
        self.requests += 1
        product = path.split("/")[2]
        params = dict(urllib.parse.parse_qsl(query))
        start = int(datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
                    .timestamp() * 1000)
        end = int(datetime.fromisoformat(params["end"].replace("Z", "+00:00"))
                  .timestamp() * 1000)
        assert int(params["granularity"]) * 1000 == self.interval_ms
        t = self.tables[product]
        rows = [[int(t.ts[i]) // 1000, float(t.low[i]), float(t.high[i]), float(t.open[i]),
                 float(t.close[i]), float(t.volume[i])]
                for i in range(self.streamed)
                if start <= t.ts[i] <= end and i not in self.missing]
        rows = rows[::-1][:300]
        response = conn.respond(HTTPStatus.OK, json.dumps(rows))
        return response

    async def _handler(self, conn: ServerConnection) -> None:
        msg = json.loads(await conn.recv())
        assert msg["type"] == "subscribe"
        products = [p for p in msg["product_ids"] if p in self.tables]
        await conn.send(json.dumps({"type": "subscriptions", "channels": [
            {"name": c, "product_ids": products} for c in msg["channels"]]}))
        seq = dict.fromkeys(products, 1000)
        i = self.streamed
        while i < len(self.ts):
            for product in products:
                t = self.tables[product]
                for trade in trade_messages(product, t, i, self.interval_ms):
                    seq[product] += 1
                    await conn.send(json.dumps({
                        "type": "match", "trade_id": trade["t"], "sequence": seq[product],
                        "product_id": product, "price": trade["p"], "size": trade["q"],
                        "side": "buy", "time": _iso_ms(trade["T"])}))
                if "ticker" in msg["channels"]:
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
