"""The loopback Delta exchange's two websockets: the public one (``candlestick_<res>`` and
``ticker``, as on ``wss://public-socket.india.delta.exchange``) and the private one
(``key-auth``, then ``orders``, ``positions`` and ``v2/user_trades``, as on
``wss://socket.india.delta.exchange``).

Delta's socket protocol (docs.delta.exchange, "Websocket Feed", "Subscribing to Channels",
"Authenticating", "Detecting Connection Drops"): the client sends
``{"type": "subscribe", "payload": {"channels": [{"name": ..., "symbols": [...]}]}}`` and
the server answers ``{"type": "subscriptions", "channels": [...]}`` listing every channel
the connection follows, a refused one with ``"error"`` instead of ``"symbols"`` (a private
channel before authentication: ``"subscription forbidden on <name>. Unauthorized user"``);
``unsubscribe`` has the same shape (no symbols: the whole channel). Private channels send
a snapshot on subscription for each named symbol (none for ``"all"``). ``enable_heartbeat``
makes the server send ``{"type": "heartbeat"}`` every 30 s; ``{"type": "ping"}`` is
answered ``{"type": "pong"}``; a connection silent for 60 s after connecting is closed.
``key-auth`` is checked by ``delta_auth.check_key_auth``; ``unauth`` drops it.

Faults: ``cut`` ends every connection of a socket without a close frame (the
``drop_user_stream`` fault on the private one: clients see 1006), ``close_all`` closes
them with a close frame (``expire_listen_key``: 1001, a server-side disconnect). Events published
while a connection is gone are lost, as on Delta. Used from the exchange's event loop only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal

from raytrade.actors.simulators.delta_auth import check_key_auth
from raytrade.actors.simulators.loopback_server import QueuedSocket
from starlette.websockets import WebSocket, WebSocketDisconnect

Kind = Literal["public", "private"]
RESOLUTIONS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w")
PUBLIC_CHANNELS = frozenset({"ticker", *(f"candlestick_{r}" for r in RESOLUTIONS)})
PRIVATE_CHANNELS = frozenset({"orders", "positions", "v2/user_trades"})
Snapshot = Callable[[str, str, str], dict[str, Any] | None]
"""(account, channel, symbol) -> the snapshot message, or None (the channel has none)."""


class SocketConn(QueuedSocket):
    """One client connection: its frames to send (None: close with ``close_code``), its
    subscriptions (channel -> symbols) and, on the private socket, its account."""

    def __init__(self, ws: WebSocket, kind: Kind) -> None:
        super().__init__(ws)
        self.kind = kind
        self.subs: dict[str, set[str]] = {}
        self.account: str | None = None
        self.heartbeat: asyncio.Task[None] | None = None

    def follows(self, channel: str, symbol: str) -> bool:
        """Whether the connection subscribed ``channel`` for ``symbol`` (or ``all``)."""
        symbols = self.subs.get(channel)
        return symbols is not None and (symbol in symbols or "all" in symbols)

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` (JSON) for sending."""
        self.queue.put_nowait(json.dumps(message))


class DeltaSockets:
    """Both sockets' connections (module docstring).

    Args:
        secret_of: API key -> secret (None: unknown key), for ``key-auth``.
        now_s: the server clock (Unix seconds), for ``key-auth``'s window.
        snapshot: the private channels' snapshots.
        on_public_subscribe: called at each public subscription (starts a replay clock).
        heartbeat_s, idle_timeout_s: Delta's 30 s and 60 s (shorter in tests).
    """

    def __init__(self, secret_of: Callable[[str], str | None], now_s: Callable[[], float],
                 snapshot: Snapshot, on_public_subscribe: Callable[[], None] = lambda: None,
                 heartbeat_s: float = 30.0, idle_timeout_s: float = 60.0) -> None:
        self.secret_of = secret_of
        self.now_s = now_s
        self.snapshot = snapshot
        self.on_public_subscribe = on_public_subscribe
        self.heartbeat_s = heartbeat_s
        self.idle_timeout_s = idle_timeout_s
        self.conns: set[SocketConn] = set()
        self.dropped = 0
        self.closed = 0
        self.auth_failures = 0

    # ---- publishing
    def publish_public(self, channel: str, symbol: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every public connection following ``channel``/``symbol``."""
        frame = json.dumps(message)
        for c in self.conns:
            if c.kind == "public" and c.follows(channel, symbol):
                c.queue.put_nowait(frame)

    def publish_private(self, account: str, channel: str, symbol: str,
                        message: dict[str, Any]) -> None:
        """Send ``message`` to the account's private connections following
        ``channel``/``symbol``."""
        frame = json.dumps(message)
        for c in self.conns:
            if c.kind == "private" and c.account == account and c.follows(channel, symbol):
                c.queue.put_nowait(frame)

    def private_count(self) -> int:
        """Private connections open now."""
        return sum(1 for c in self.conns if c.kind == "private")

    async def cut(self, kind: Kind, flush_timeout_s: float = 1.0) -> int:
        """Cut every ``kind`` connection without a close frame, once its queued frames
        went out; how many."""
        conns = [c for c in self.conns if c.kind == kind]
        for c in conns:
            self.conns.discard(c)
        deadline = time.monotonic() + flush_timeout_s
        while not all(c.flushed() for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        for c in conns:
            c.abort()
            self.dropped += 1
        return len(conns)

    def close_all(self, kind: Kind, code: int = 1001) -> int:
        """Close every ``kind`` connection with ``code`` (queued frames go out first);
        how many."""
        conns = [c for c in self.conns if c.kind == kind]
        for c in conns:
            self.conns.discard(c)
            c.close_code = code
            c.queue.put_nowait(None)
            self.closed += 1
        return len(conns)

    # ---- serving
    async def serve_public(self, ws: WebSocket) -> None:
        """Serve one public-socket client until it leaves."""
        await self._serve(ws, "public")

    async def serve_private(self, ws: WebSocket) -> None:
        """Serve one private-socket client until it leaves (or a fault cuts it)."""
        await self._serve(ws, "private")

    async def _serve(self, ws: WebSocket, kind: Kind) -> None:
        await ws.accept()
        conn = SocketConn(ws, kind)
        self.conns.add(conn)
        try:
            await conn.serve(self._receive(conn))
        finally:
            if conn.heartbeat is not None:
                conn.heartbeat.cancel()
            self.conns.discard(conn)

    async def _receive(self, conn: SocketConn) -> None:
        first = True
        try:
            while True:
                if first:
                    try:
                        msg = await asyncio.wait_for(conn.ws.receive(), self.idle_timeout_s)
                    except TimeoutError:
                        conn.queue.put_nowait(None)  # no activity: Delta disconnects
                        await asyncio.sleep(1.0)
                        return
                    first = False
                else:
                    msg = await conn.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                text = msg.get("text")
                if text is None:
                    continue
                try:
                    req = json.loads(text)
                except ValueError:
                    continue
                if isinstance(req, dict):
                    self._handle(conn, req)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    def _handle(self, conn: SocketConn, req: dict[str, Any]) -> None:
        typ = req.get("type")
        payload = req.get("payload")
        if typ == "ping":
            conn.send({"type": "pong"})
        elif typ == "enable_heartbeat":
            if conn.heartbeat is None:
                conn.heartbeat = asyncio.get_running_loop().create_task(self._beat(conn))
        elif typ == "disable_heartbeat":
            if conn.heartbeat is not None:
                conn.heartbeat.cancel()
                conn.heartbeat = None
        elif typ == "key-auth" and conn.kind == "private":
            account, reply = check_key_auth(payload, self.secret_of, self.now_s())
            if account is None:
                self.auth_failures += 1
            conn.account = account if account is not None else conn.account
            conn.send(reply)
        elif typ == "unauth" and conn.kind == "private":
            conn.account = None
            for name in PRIVATE_CHANNELS:
                conn.subs.pop(name, None)
        elif typ in ("subscribe", "unsubscribe"):
            channels = payload.get("channels") if isinstance(payload, dict) else None
            if isinstance(channels, list):
                if typ == "subscribe":
                    self._subscribe(conn, channels)
                else:
                    self._unsubscribe(conn, channels)

    async def _beat(self, conn: SocketConn) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            conn.send({"type": "heartbeat"})

    def _subscribe(self, conn: SocketConn, channels: list[object]) -> None:
        allowed = PUBLIC_CHANNELS if conn.kind == "public" else PRIVATE_CHANNELS
        refused: list[dict[str, Any]] = []
        added: list[tuple[str, list[str]]] = []
        for ch in channels:
            name = ch.get("name") if isinstance(ch, dict) else None
            raw = ch.get("symbols", []) if isinstance(ch, dict) else []
            symbols = [str(s) for s in raw] if isinstance(raw, list) else []
            if not isinstance(name, str) or name not in allowed:
                refused.append({"name": name, "error": f"invalid channel name {name}"})
            elif conn.kind == "private" and conn.account is None:
                refused.append({"name": name, "error": f"subscription forbidden on {name}. "
                                                       "Unauthorized user"})
            else:
                conn.subs.setdefault(name, set()).update(symbols)
                added.append((name, symbols))
        listed = [{"name": n, "symbols": sorted(s)} for n, s in sorted(conn.subs.items())]
        conn.send({"type": "subscriptions", "channels": listed + refused})
        if conn.kind == "public" and added:
            self.on_public_subscribe()
        if conn.kind == "private" and conn.account is not None:
            for name, symbols in added:
                for sym in symbols:
                    snap = None if sym == "all" else self.snapshot(conn.account, name, sym)
                    if snap is not None:
                        conn.send(snap)

    @staticmethod
    def _unsubscribe(conn: SocketConn, channels: list[object]) -> None:
        for ch in channels:
            if not isinstance(ch, dict) or not isinstance(ch.get("name"), str):
                continue
            raw = ch.get("symbols")
            if not isinstance(raw, list):
                conn.subs.pop(ch["name"], None)
            elif ch["name"] in conn.subs:
                conn.subs[ch["name"]] -= {str(s) for s in raw}

    def describe(self) -> dict[str, Any]:
        """For ``/sim/state``: connections by kind, drops, closes, failed auths."""
        return {"public": sum(1 for c in self.conns if c.kind == "public"),
                "private": self.private_count(),
                "private_authenticated": sum(1 for c in self.conns if c.kind == "private"
                                             and c.account is not None),
                "dropped": self.dropped, "closed": self.closed,
                "auth_failures": self.auth_failures}
