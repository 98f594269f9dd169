"""The loopback exchange's user data streams: listen keys (created, kept alive, deleted,
expired after a configurable time without keepalive) and the websocket connections that
follow them, to which order and account events are pushed.

A listen key belongs to one account and one market (spot or futures), like on Binance:
``POST`` returns the account's live key for that market if it has one (extending it),
else a new 60-character key. When a key expires (or the ``expire_listen_key`` fault
fires) every connection on it receives ``listenKeyExpired`` and is closed; the key is
forgotten, so a keepalive answers -1125 and the client must create a new one. ``drop_all``
cuts every connection without a close frame (the ``drop_user_stream`` fault). Events
published while no connection follows a key are lost, as on Binance.

Used from the exchange's event loop only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from dataclasses import dataclass, replace
from typing import Any

from raytrade.actors.simulators.exchange_book import Market
from raytrade.actors.simulators.loopback_server import QueuedSocket
from starlette.websockets import WebSocket, WebSocketDisconnect


@dataclass(frozen=True)
class ListenKey:
    """One listen key: its account (API key), market and expiry (``time.monotonic``)."""

    key: str
    account: str
    market: Market
    expires_at: float


class _Connection(QueuedSocket):
    """One websocket following a listen key (``QueuedSocket``: its frames to send)."""


class UserStreams:
    """Listen keys and their connections (module docstring)."""

    def __init__(self, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"listen key ttl must be > 0 s, got {ttl_s}")
        self.ttl_s = ttl_s
        self.keys: dict[str, ListenKey] = {}
        self._conns: dict[str, set[_Connection]] = {}
        self.expired = 0
        self.dropped = 0

    # ---- keys
    def create(self, account: str, market: Market) -> str:
        """The account's live key for ``market`` (extended), or a new one."""
        for lk in self.keys.values():
            if lk.account == account and lk.market == market:
                self.keys[lk.key] = replace(lk, expires_at=time.monotonic() + self.ttl_s)
                return lk.key
        alphabet = string.ascii_letters + string.digits
        key = "".join(secrets.choice(alphabet) for _ in range(60))
        self.keys[key] = ListenKey(key, account, market, time.monotonic() + self.ttl_s)
        return key

    def find(self, account: str, market: Market, key: str | None) -> ListenKey | None:
        """The account's key ``key`` (its only key for ``market`` if None), if alive."""
        for lk in self.keys.values():
            if lk.account == account and lk.market == market and key in (None, lk.key):
                return lk
        return None

    def keepalive(self, lk: ListenKey) -> None:
        """Extend ``lk`` by the ttl."""
        self.keys[lk.key] = replace(lk, expires_at=time.monotonic() + self.ttl_s)

    def delete(self, lk: ListenKey) -> None:
        """Forget ``lk`` and close its connections."""
        self.keys.pop(lk.key, None)
        for conn in self._conns.pop(lk.key, set()):
            conn.queue.put_nowait(None)

    def expire(self, key: str, now_ms: int) -> None:
        """Send ``listenKeyExpired`` on ``key``'s connections, close them, forget it."""
        self.keys.pop(key, None)
        self.expired += 1
        frame = json.dumps({"e": "listenKeyExpired", "E": now_ms, "listenKey": key})
        for conn in self._conns.pop(key, set()):
            conn.queue.put_nowait(frame)
            conn.queue.put_nowait(None)

    def expire_due(self, now_ms: int) -> None:
        """Expire every key past its time."""
        now = time.monotonic()
        for key in [k for k, lk in self.keys.items() if lk.expires_at <= now]:
            self.expire(key, now_ms)

    def expire_all(self, now_ms: int) -> None:
        """Expire every key now."""
        for key in list(self.keys):
            self.expire(key, now_ms)

    async def drop_all(self, flush_timeout_s: float = 1.0) -> None:
        """Cut every connection (no close frame) once the frames already queued on it
        have gone out (at most ``flush_timeout_s``); keys stay valid, and events published
        from now on reach only later connections."""
        conns = [c for cs in self._conns.values() for c in cs]
        self._conns.clear()
        deadline = time.monotonic() + flush_timeout_s
        while not all(c.flushed() for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        for conn in conns:
            conn.abort()
            self.dropped += 1

    # ---- events
    def publish(self, account: str, market: Market, events: list[dict[str, Any]]) -> None:
        """Queue ``events`` on every connection following one of the account's keys for
        ``market``."""
        frames = [json.dumps(e) for e in events]
        for lk in self.keys.values():
            if lk.account == account and lk.market == market:
                for conn in self._conns.get(lk.key, ()):
                    for frame in frames:
                        conn.queue.put_nowait(frame)

    def describe(self) -> list[dict[str, Any]]:
        """Live keys, for ``/sim/state`` (account, market, seconds left, connections)."""
        now = time.monotonic()
        return [{"listenKey": lk.key, "account": lk.account, "market": lk.market,
                 "expires_in_s": round(lk.expires_at - now, 3),
                 "connections": len(self._conns.get(lk.key, ()))}
                for lk in self.keys.values()]

    # ---- the websocket endpoint
    async def serve(self, ws: WebSocket) -> None:
        """Follow ``/ws/<listenKey>`` until the client leaves or the key ends; an unknown
        key is refused at the handshake (HTTP 403)."""
        key = str(ws.path_params["listen_key"])
        if key not in self.keys:
            await ws.close(code=1008)
            return
        await ws.accept()
        conn = _Connection(ws)
        self._conns.setdefault(key, set()).add(conn)
        try:
            await conn.serve(self._receive(ws))
        finally:
            self._conns.get(key, set()).discard(conn)

    @staticmethod
    async def _receive(ws: WebSocket) -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
