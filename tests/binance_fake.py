"""A small scripted Binance for the client's tests: a real HTTP/1.1 keep-alive server
(stdlib ``http.server`` in a thread) and a real ``websockets`` user-stream server, both on
loopback, answering canned Binance replies.

It is not the loopback exchange (``raytrade exchange sim``, which matches orders): each
test scripts the replies it needs (``on``), and the server checks what Binance checks on
every signed request (the API key header and the HMAC signature over the raw query
string), records every request (with the client's port, so connection reuse is visible)
and hands out listen keys the websocket side accepts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve


@dataclass(frozen=True)
class Canned:
    """One scripted reply."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    close_after: bool = False
    """Close the connection after replying, without a ``Connection: close`` header (as a
    server does to an idle keep-alive connection)."""


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    client_port: int


class FakeBinance:
    """The scripted REST server (module docstring); ``url`` is its base URL."""

    def __init__(self, api_key: str, api_secret: str, *, skew_ms: int = 0) -> None:
        self.api_key, self.api_secret, self.skew_ms = api_key, api_secret, skew_ms
        self.script: dict[tuple[str, str], list[Canned]] = defaultdict(list)
        self.requests: list[Seen] = []
        self.listen_keys: set[str] = set()
        """Active listen keys (one at most: one account)."""
        self.keys_issued: list[str] = []
        """The key each ``POST`` listen-key request returned."""
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                fake.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, method: str, path: str, *replies: Canned) -> None:
        """Answer the next requests to ``method path`` with ``replies``, in order."""
        with self.lock:
            self.script[(method, path)].extend(replies)

    def seen(self, method: str, path: str) -> list[Seen]:
        """The requests to ``method path`` so far."""
        with self.lock:
            return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length).decode() if length else ""
        total = split.query + body
        params = dict(urllib.parse.parse_qsl(total))
        key = h.headers.get("X-MBX-APIKEY")
        with self.lock:
            self.requests.append(Seen(h.command, split.path, params, key,
                                      h.client_address[1]))
            queue = self.script.get((h.command, split.path))
            canned = queue.pop(0) if queue else None
        if "signature" in params:
            payload = total.split("&signature=")[0]
            good = hmac.new(self.api_secret.encode(), payload.encode(),
                            hashlib.sha256).hexdigest()
            if key != self.api_key:
                canned = Canned(401, {"code": -2015, "msg": "Invalid API-key, IP, or "
                                      "permissions for action."})
            elif params["signature"] != good:
                canned = Canned(400, {"code": -1022, "msg": "Signature for this request "
                                      "is not valid."})
        if canned is None:
            canned = self.default(h.command, split.path, params, key)
        if canned.delay_s:
            time.sleep(canned.delay_s)
        raw = canned.body if isinstance(canned.body, bytes) else json.dumps(canned.body).encode()
        try:
            h.send_response(canned.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(raw)))
            h.send_header("X-MBX-USED-WEIGHT-1M", str(len(self.requests)))
            for k, v in canned.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(raw)
            h.close_connection = h.close_connection or canned.close_after
        except OSError:
            pass  # the client gave up (timeout tests)

    def default(self, method: str, path: str, params: dict[str, str], key: str | None
                ) -> Canned:
        if path.endswith("/time"):
            return Canned(200, {"serverTime": self.now_ms()})
        if path in ("/api/v3/userDataStream", "/fapi/v1/listenKey"):
            if key != self.api_key:
                return Canned(401, {"code": -2015, "msg": "Invalid API-key."})
            if method == "POST":  # as Binance: the active key if there is one
                with self.lock:
                    if not self.listen_keys:
                        self.listen_keys.add(secrets.token_hex(30))
                    self.keys_issued.append(next(iter(self.listen_keys)))
                    return Canned(200, {"listenKey": self.keys_issued[-1]})
            if method == "PUT":
                known = params.get("listenKey") in self.listen_keys or \
                    (path == "/fapi/v1/listenKey" and self.listen_keys)
                return Canned(200, {}) if known else Canned(
                    400, {"code": -1125, "msg": "This listenKey does not exist."})
            with self.lock:
                self.listen_keys.discard(params.get("listenKey", ""))
            return Canned(200, {})
        return Canned(400, {"code": -1, "msg": f"not scripted: {method} {path}"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeUserStream:
    """The user-stream websocket: accepts ``/ws/<key>`` for keys ``rest`` handed out."""

    def __init__(self, rest: FakeBinance) -> None:
        self.rest = rest
        self.sockets: dict[str, ServerConnection] = {}
        self.server: Server | None = None
        self.url = ""
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", 0)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def _handler(self, ws: ServerConnection) -> None:
        key = (ws.request.path if ws.request else "").removeprefix("/ws/")
        if key not in self.rest.listen_keys:
            await ws.close(4000, "unknown listen key")
            return
        self.sockets[key] = ws
        self.connected.set()
        try:
            await ws.wait_closed()
        finally:
            self.sockets.pop(key, None)

    async def send_all(self, event: dict[str, Any] | str) -> None:
        frame = event if isinstance(event, str) else json.dumps(event)
        for ws in list(self.sockets.values()):
            await ws.send(frame)

    def drop_all(self) -> None:
        """Close every socket abruptly: no close frame."""
        for ws in list(self.sockets.values()):
            ws.transport.abort()

    async def expire_all(self) -> None:
        """Binance's expiry: ``listenKeyExpired``, the key forgotten, the socket closed."""
        for key, ws in list(self.sockets.items()):
            await ws.send(json.dumps({"e": "listenKeyExpired", "E": self.rest.now_ms(),
                                      "listenKey": key}))
            with self.rest.lock:
                self.rest.listen_keys.discard(key)
            await ws.close()

    async def wait_connected(self, timeout_s: float = 5.0) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout_s)
        self.connected.clear()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
