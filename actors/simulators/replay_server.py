"""A replay feed: historical bars served as Binance spot streams over a real websocket,
with a matching REST klines endpoint, and faults injected on request.

The server keeps one virtual clock for every connection: ``speed`` virtual milliseconds per
real millisecond from the moment it starts (or from the first subscription with
``start_on_connect``). A bar is streamed once its close time has passed on that clock: an
in-progress kline (``"x": false``, the bar so far) at the bar's middle, a ``bookTicker``
around its close, optionally its four trades (``bar_script.py``), then the closed kline
(``"x": true``) with ``E`` = its close time. A client that connects late, or loses its
connection, misses the bars closed meanwhile, exactly like on a real exchange, and finds
them over REST: ``GET /api/v3/klines`` answers with Binance's ``startTime``, ``endTime``,
``limit`` semantics and, like Binance, includes the kline still in progress when the
range reaches it (partial high, low, close and volume per the virtual clock, close time in
the future); ``GET /api/v3/time`` gives the clock.

Endpoints: ``ws://HOST:PORT/stream`` (send ``SUBSCRIBE``), ``/stream?streams=a/b`` and
``/ws/<stream>``; ``http://HOST:PORT/api/v3/klines``. The server streams the interval of
its tables; ``replay_tables`` builds coarser ones (1h from bundled 5m files, for a policy
trained on 1h bars) with the same causal resampling training uses. ``Faults`` schedules disconnects,
closes (1000 and 1001), silences, duplicates, out-of-order and malformed frames, skipped
bars (gaps), server shutdown notices, refused subscriptions and failing REST calls, keyed
by bar index. ``client_close_codes`` counts the close codes of the closing handshakes
that clients started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Any

from raytrade.actors.simulators.bar_script import bar_in_progress, bar_trades
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import ms_to_interval
from raytrade.envs.resample import align, to_interval
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Faults:
    """Faults keyed by the index (into the replayed bars) of the bar being streamed."""

    disconnect_at: frozenset[int] = frozenset()
    """Close the connection abruptly (no close frame: the client sees 1006) before it."""
    close_at: frozenset[int] = frozenset()
    """Close with code 1001 (going away) before it."""
    normal_close_at: frozenset[int] = frozenset()
    """Close with code 1000 (normal closure) before it."""
    silence_at: Mapping[int, float] = field(default_factory=dict)
    """Stop sending for this many real seconds (TCP stays open) before it."""
    duplicate_at: frozenset[int] = frozenset()
    """Send its closed kline twice."""
    out_of_order_at: frozenset[int] = frozenset()
    """After it, send the previous bar's closed kline again (an older event)."""
    malformed_at: frozenset[int] = frozenset()
    """Send broken frames before it (truncated JSON, trailing comma, binary garbage,
    price "abc", NaN)."""
    skip_at: frozenset[int] = frozenset()
    """Never stream it (a gap; REST still has it)."""
    shutdown_at: frozenset[int] = frozenset()
    """Send ``serverShutdown`` before it, then close 1000 a moment later."""
    refuse_subscriptions: int = 0
    """Answer the first N SUBSCRIBE requests with an error."""
    rest_failures: int = 0
    """Answer the first N REST kline requests with 503."""
    rest_down: tuple[int, int] | None = None
    """A REST outage: kline requests get 503 while the clock is in bars ``[a, b)``."""

    @classmethod
    def from_json(cls, text: str) -> Faults:
        """Faults from JSON (the CLI's ``--faults``): lists of bar indices, ``silence_at``
        as ``{"index": seconds}``, counts as integers. Unknown keys are an error.

        Example: ``{"skip_at": [5010, 5011], "rest_failures": 2, "silence_at": {"5020": 1.5}}``
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--faults is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError("--faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown fault(s) {unknown}; known: {sorted(known)}")
        kw: dict[str, Any] = {}
        try:
            for name, value in raw.items():
                if name == "silence_at":
                    kw[name] = {int(k): float(v) for k, v in dict(value).items()}
                elif name in ("refuse_subscriptions", "rest_failures"):
                    kw[name] = int(value)
                elif name == "rest_down":
                    a, b = (int(x) for x in value)
                    kw[name] = (a, b)
                else:
                    kw[name] = frozenset(int(i) for i in value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--faults: bad value in {raw!r}: {exc}") from exc
        return cls(**kw)


def kline_message(symbol: str, interval: str, interval_ms: int, bar: Bar, closed: bool,
                  event_ms: int, first_trade: int) -> dict[str, Any]:
    """Binance's kline event for ``bar`` (final when ``closed``, else the bar so far)."""
    return {"e": "kline", "E": event_ms, "s": symbol, "k": {
        "t": bar.ts, "T": bar.ts + interval_ms - 1, "s": symbol, "i": interval,
        "f": first_trade, "L": first_trade + 3, "o": repr(bar.open), "c": repr(bar.close),
        "h": repr(bar.high), "l": repr(bar.low), "v": repr(bar.volume), "n": 4, "x": closed,
        "q": "0", "V": "0", "Q": "0", "B": "0"}}


def trade_messages(symbol: str, table: BarTable, i: int) -> list[dict[str, Any]]:
    """Binance trade events for the trades that rebuild bar ``i`` (``bar_trades``)."""
    return [{"e": "trade", "E": t.ts, "s": symbol, "t": t.trade_id, "p": repr(t.price),
             "q": repr(t.qty), "T": t.ts, "m": False, "M": True}
            for t in bar_trades(table, i)]


def book_message(symbol: str, table: BarTable, i: int, half_spread: float) -> dict[str, Any]:
    """A ``bookTicker`` around bar ``i``'s close with the given half spread (fraction)."""
    c = float(table.close[i])
    return {"u": i + 1, "s": symbol, "b": repr(c * (1 - half_spread)), "B": "1.0",
            "a": repr(c * (1 + half_spread)), "A": "1.0"}


MALFORMED: tuple[str | bytes, ...] = (
    '{"e":"kline","E":1,"s":"BTC',                     # truncated
    '{"e":"trade","s":"BTCUSDT",}',                     # trailing comma
    b"\x00\xff\xfe garbage",                            # binary garbage
    '{"e":"kline","E":1,"s":"X","k":{"t":0,"T":299999,"s":"X","i":"5m","o":"abc",'
    '"c":"1","h":"1","l":"1","v":"1","x":true}}',       # price "abc"
    '{"e":"trade","E":1,"s":"X","t":1,"p":NaN,"q":"1","T":1}',  # NaN
)


def replay_tables(tables: Sequence[BarTable], interval: str | None = None) -> list[BarTable]:
    """The tables a replay serves: each at ``interval`` (None: as they are), built from finer
    bars by ``resample.to_interval`` (complete epoch-aligned buckets only, exactly the bars
    training resamples), then aligned on one clock.

    Raises:
        DataError: a table coarser than ``interval``, or whose interval does not divide it.
    """
    return align([t if interval is None else to_interval(t, interval) for t in tables])


class ReplayServer:
    """Serve ``tables`` (one per symbol, same interval) from bar ``start`` on."""

    def __init__(self, tables: Sequence[BarTable], *, speed: float = 1.0, start: int = 0,
                 stop: int | None = None, faults: Faults | None = None,
                 half_spread: float = 1e-4, start_on_connect: bool = False,
                 host: str = "127.0.0.1", port: int = 0,
                 ping_interval_s: float | None = 20.0) -> None:
        if not tables:
            raise ConfigError("replay needs at least one table of bars")
        if len({t.interval_ms for t in tables}) != 1:
            raise ConfigError("replayed tables must share one interval")
        if not speed > 0:
            raise ConfigError("speed must be > 0 (virtual ms per real ms)")
        self.tables = {t.symbol.upper(): t for t in tables}
        if "" in self.tables:
            raise ConfigError("every replayed table needs a symbol: name files like "
                              "BTCUSDT_5m.csv or BTCUSDT-5m-2025-04.csv")
        first = next(iter(self.tables.values()))
        self.interval_ms = first.interval_ms
        self.interval = ms_to_interval(self.interval_ms)
        self.ts = first.ts
        for sym, t in self.tables.items():
            if len(t) != len(first) or (t.ts != first.ts).any():
                raise ConfigError(f"{sym}: replayed tables must cover the same bars "
                                  "(align them first)")
        self.start = start
        self.stop = len(first) if stop is None else min(stop, len(first))
        if not 0 <= start < self.stop:
            raise ConfigError(f"start {start} outside the {len(first)} bars")
        self.speed = speed
        self.faults = faults or Faults()
        self.half_spread = half_spread
        self.start_on_connect = start_on_connect
        self.host, self.port = host, port
        self.ping_interval_s = ping_interval_s
        self._t0: float | None = None
        self._subscriptions_refused = 0
        self._rest_failed = 0
        self._server: Server | None = None
        self._fired: set[tuple[str, int]] = set()
        self._frames: dict[tuple[int, int, bool, bool], list[tuple[str, str]]] = {}
        self.stats = {"connections": 0, "frames": 0, "rest_requests": 0}
        self.client_close_codes: Counter[int] = Counter()
        """How many closing handshakes clients started, by close code."""
        self.done = asyncio.Event()

    # ---- the virtual clock
    def now_ms(self) -> int:
        """Virtual time: the open of bar ``start`` plus elapsed real time times speed."""
        base = int(self.ts[self.start])
        if self._t0 is None:
            return base
        return base + int((time.monotonic() - self._t0) * 1000.0 * self.speed)

    def closed_until(self, now: int | None = None) -> int:
        """Index one past the last bar closed by the virtual clock (capped at ``stop``),
        now or at virtual time ``now``."""
        now = self.now_ms() if now is None else now
        # bars are regular: index arithmetic instead of a search
        k = self.start + max(0, (now - int(self.ts[self.start])) // self.interval_ms)
        return min(int(k), self.stop)

    def last_closed_close(self, symbol: str) -> float | None:
        """The close of ``symbol``'s last bar closed on the virtual clock (what a client of
        this feed has seen last), or None before the first close or for a symbol not
        served. Read by the loopback exchange's ``ReplayPrices``."""
        table = self.tables.get(symbol.upper())
        k = self.closed_until()
        return None if table is None or k == 0 else float(table.close[k - 1])

    def _start_clock(self) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()

    # ---- lifecycle
    async def __aenter__(self) -> ReplayServer:
        self._server = await serve(self._handler, self.host, self.port,
                                   process_request=self._process_request,
                                   ping_interval=self.ping_interval_s, ping_timeout=5,
                                   max_size=2**20)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        if not self.start_on_connect:
            self._start_clock()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def ws_url(self) -> str:
        """The websocket base URL (clients append ``/stream``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base URL."""
        return f"http://{self.host}:{self.port}"

    # ---- REST
    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path.startswith("/ws") or path.startswith("/stream"):
            return None
        self.stats["rest_requests"] += 1
        params = dict(urllib.parse.parse_qsl(query))
        if path == "/api/v3/time":
            return _json_response(conn, HTTPStatus.OK, {"serverTime": self.now_ms()})
        if path != "/api/v3/klines":
            return _json_response(conn, HTTPStatus.NOT_FOUND, {"code": -1, "msg": "not found"})
        down = self.faults.rest_down
        if self._rest_failed < self.faults.rest_failures or \
                (down is not None and down[0] <= self.closed_until() < down[1]):
            self._rest_failed += 1
            return _json_response(conn, HTTPStatus.SERVICE_UNAVAILABLE,
                                  {"code": -1003, "msg": "injected failure"})
        try:
            return _json_response(conn, HTTPStatus.OK, self.klines(params))
        except (KeyError, ValueError) as exc:
            return _json_response(conn, HTTPStatus.BAD_REQUEST, {"code": -1100,
                                                                 "msg": str(exc)})

    def klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        """Binance ``/api/v3/klines`` over the bars opened by the virtual clock: closed
        bars final, the one in progress as it stands (module docstring)."""
        symbol = params["symbol"].upper()
        if symbol not in self.tables:
            raise ValueError(f"Invalid symbol {symbol}")
        if params.get("interval", self.interval) != self.interval:
            raise ValueError(f"this replay serves {self.interval} only")
        limit = min(int(params.get("limit", 500)), 1000)
        table = self.tables[symbol]
        now = self.now_ms()
        closed = self.closed_until(now)
        hi = closed + 1 if closed < self.stop else closed  # the bar in progress
        lo = 0
        if "endTime" in params:
            hi = min(hi, int((int(params["endTime"]) - int(table.ts[0])) //
                             self.interval_ms) + 1)
        if "startTime" in params:
            lo = max(0, -(-(int(params["startTime"]) - int(table.ts[0])) // self.interval_ms))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - limit)
        rows = []
        for i in range(lo, max(lo, hi)):
            bar = table.bar(i) if i < closed else bar_in_progress(table, i, now)
            rows.append([bar.ts, repr(bar.open), repr(bar.high), repr(bar.low),
                         repr(bar.close), repr(bar.volume), bar.ts + self.interval_ms - 1,
                         "0", 4, "0", "0", "0"])
        return rows

    # ---- websocket
    async def _handler(self, conn: ServerConnection) -> None:
        self.stats["connections"] += 1
        assert conn.request is not None
        path, _, query = conn.request.path.partition("?")
        streams: set[str] = set()
        combined = path.startswith("/stream")
        if path.startswith("/ws/"):
            streams.add(path[4:])
        for name in dict(urllib.parse.parse_qsl(query)).get("streams", "").split("/"):
            if name:
                streams.add(name)
        subscribed = asyncio.Event()
        if streams:
            self._start_clock()
            subscribed.set()
        reader = asyncio.create_task(self._read_requests(conn, streams, subscribed))
        waiter = asyncio.create_task(subscribed.wait())
        try:
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if subscribed.is_set():  # else the client left before subscribing
                await self._stream(conn, streams, combined)
        except ConnectionClosed:
            pass
        finally:
            waiter.cancel()
            reader.cancel()
            await conn.wait_closed()
            rcvd = conn.protocol.close_rcvd
            if conn.protocol.close_rcvd_then_sent and rcvd is not None:  # the client's close
                self.client_close_codes[rcvd.code] += 1

    async def _read_requests(self, conn: ServerConnection, streams: set[str],
                             subscribed: asyncio.Event) -> None:
        try:
            async for raw in conn:
                try:
                    req = json.loads(raw)
                    rid = req["id"]
                    method = req["method"]
                    params = list(req.get("params", []))
                except (ValueError, KeyError, TypeError):
                    await conn.send(json.dumps({"code": 3, "msg": "Invalid JSON"}))
                    continue
                if method != "SUBSCRIBE":
                    await conn.send(json.dumps({"result": None, "id": rid}))
                    continue
                bad = [s for s in params if s.split("@")[0].upper() not in self.tables]
                if self._subscriptions_refused < self.faults.refuse_subscriptions or bad:
                    self._subscriptions_refused += 1
                    await conn.send(json.dumps({"code": 2, "msg": f"Invalid request: "
                                                f"cannot subscribe to {bad or params}",
                                                "id": rid}))
                    continue
                streams.update(params)
                await conn.send(json.dumps({"result": None, "id": rid}))
                self._start_clock()
                subscribed.set()
        except ConnectionClosed:
            pass

    def _once(self, kind: str, i: int, planned: frozenset[int] | Mapping[int, float]) -> bool:
        """True the first time fault ``kind`` is due at bar ``i`` (faults fire once)."""
        if i in planned and (kind, i) not in self._fired:
            self._fired.add((kind, i))
            return True
        return False

    async def _stream(self, conn: ServerConnection, streams: set[str], combined: bool) -> None:
        f = self.faults
        i = max(self.start, self.closed_until())
        while i < self.stop:
            close_ms = int(self.ts[i]) + self.interval_ms
            # one timer per bar close, not a poll: 20 connections polling every 50 ms
            # cost the server more CPU than the frames it sends
            while (wait_ms := close_ms - self.now_ms()) > 0:
                await asyncio.sleep(max(0.0005, wait_ms / self.speed / 1000.0))
            if self._once("disconnect", i, f.disconnect_at):
                conn.transport.abort()
                return
            if self._once("close", i, f.close_at):
                await conn.close(1001, "going away")
                return
            if self._once("normal_close", i, f.normal_close_at):
                await conn.close(1000, "normal closure")
                return
            if self._once("shutdown", i, f.shutdown_at):
                await self._send(conn, combined, "", {"e": "serverShutdown", "E": close_ms})
                await asyncio.sleep(0.05)
                await conn.close(1000, "shutdown")
                return
            if self._once("silence", i, f.silence_at):
                await asyncio.sleep(float(f.silence_at[i]))
                i = max(i, self.closed_until())  # what closed meanwhile is lost
                continue
            if self._once("malformed", i, f.malformed_at):
                for frame in MALFORMED:
                    await conn.send(frame)
            if not self._once("skip", i, f.skip_at):
                await self._send_bar(conn, streams, combined, i, close_ms)
            if self._once("duplicate", i, f.duplicate_at):
                await self._send_bar(conn, streams, combined, i, close_ms, closed_only=True)
            if self._once("out_of_order", i, f.out_of_order_at) and i > 0:
                await self._send_bar(conn, streams, combined, i - 1, close_ms, closed_only=True)
            i += 1
        self.done.set()
        await conn.wait_closed()

    async def _send_bar(self, conn: ServerConnection, streams: set[str], combined: bool, i: int,
                        event_ms: int, closed_only: bool = False) -> None:
        for stream, text in self._bar_frames(i, event_ms, closed_only, combined):
            if stream in streams:
                await conn.send(text)
                self.stats["frames"] += 1

    def _bar_frames(self, i: int, event_ms: int, closed_only: bool, combined: bool
                    ) -> list[tuple[str, str]]:
        """Bar ``i``'s frames for every symbol, in the order a subscriber receives them
        (per symbol: the kline in progress, the trades, the book ticker, the closed
        kline; ``closed_only``: the closed klines alone), each as ``(stream, JSON text)``.
        The text depends only on the arguments, so it is encoded once per bar close and
        the same string goes to every connection subscribed to the stream: encoding per
        connection made the server's work per close grow with subscribers times
        symbols."""
        key = (i, event_ms, closed_only, combined)
        cached = self._frames.get(key)
        if cached is not None:
            return cached
        frames: list[tuple[str, dict[str, Any]]] = []
        for sym, table in self.tables.items():
            s = sym.lower()
            kname = f"{s}@kline_{self.interval}"
            if not closed_only:
                middle = event_ms - self.interval_ms // 2
                frames.append((kname, kline_message(
                    sym, self.interval, self.interval_ms, bar_in_progress(table, i, middle),
                    False, middle, i * 4)))
                frames.extend((f"{s}@trade", msg) for msg in trade_messages(sym, table, i))
                frames.append((f"{s}@bookTicker", book_message(sym, table, i,
                                                               self.half_spread)))
            frames.append((kname, kline_message(sym, self.interval, self.interval_ms,
                                                table.bar(i), True, event_ms, i * 4)))
        encoded = [(stream, _frame_text(combined, stream, data)) for stream, data in frames]
        if len(self._frames) >= 16:  # connections stream the same few bars at a time
            self._frames.clear()
        self._frames[key] = encoded
        return encoded

    async def _send(self, conn: ServerConnection, combined: bool, stream: str,
                    data: dict[str, Any]) -> None:
        await conn.send(_frame_text(combined, stream, data))
        self.stats["frames"] += 1


def _frame_text(combined: bool, stream: str, data: dict[str, Any]) -> str:
    """A stream event as sent: wrapped as ``{"stream", "data"}`` on a combined stream."""
    return json.dumps({"stream": stream, "data": data} if combined and stream else data)


def _json_response(conn: ServerConnection, status: HTTPStatus, body: Any) -> Response:
    response = conn.respond(status, json.dumps(body))
    headers = Headers(response.headers)
    del headers["Content-Type"]
    headers["Content-Type"] = "application/json"
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = "0"
    response.headers = headers
    return response
