"""Delta Exchange's private websocket: order updates as they happen
(``execution.UserStream``).

Protocol: Delta's API documentation, "Websocket Feed: Authenticating a connection" and
"Private Channels: Orders" (https://docs.delta.exchange). On every (re)connect:

1. ``{"type": "key-auth", "payload": {"api-key", "signature", "timestamp"}}``, the
   signature over ``GET`` + timestamp + ``/live`` (``delta_auth.ws_auth_payload``; the
   timestamp is the server's time by the REST transport's offset). The answer is
   ``{"type": "key-auth", "success": true|false, "status": ...}``: ``api_key_not_found``
   and ``invalid_signature`` are a ``VenueAuthError`` (the stream ends: nothing will work
   until a person fixes the keys); any other refusal (``request_expired``) is retried after
   the back-off;
2. ``{"type": "enable_heartbeat"}`` (the server then sends ``{"type": "heartbeat"}`` every
   30 s; no frame for ``idle_timeout_s``, 35 s by default, means a dead connection) and a
   subscription to the ``orders`` channel for the execution's symbols, answered by a
   ``subscriptions`` message (a channel refused carries ``error``: a failure, retried);
3. ``orders`` messages: a ``snapshot`` of the open orders, then ``create``, ``update`` and
   ``delete`` updates, each the order's whole state (``delta_replies.order_report``).

Any drop (a close frame, a cut connection, a missing heartbeat) reconnects after a back-off
doubling from ``initial_backoff_s`` to ``max_backoff_s``. Updates sent while the stream is
down are lost with it: ``on_state(False, why)`` tells the caller to fall back to REST
queries until ``on_state(True, ...)``. A malformed frame is logged, counted and dropped; it
never stops the stream. Fills (``v2/user_trades``) are not subscribed: they carry no
commission and the ``orders`` channel already states each order's cumulative fill.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import websockets
from raytrade.actors.venues.delta_auth import ws_auth_payload
from raytrade.actors.venues.delta_replies import Product, order_report
from raytrade.actors.venues.delta_signed import SignedTransport
from raytrade.actors.venues.execution import ExecutionReport, VenueAuthError
from raytrade.actors.venues.reconnect import Reconnector
from raytrade.actors.venues.replies import MalformedReplyError
from raytrade.envs.errors import OperationalError, TemporaryError
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger(__name__)

AUTH_REFUSALS = frozenset({"api_key_not_found", "invalid_signature"})
"""``key-auth`` statuses that no retry can fix."""


class _Down(Exception):  # noqa: N818 - internal control flow, never escapes
    """The connection failed in a way a reconnect may fix."""


class DeltaUserStream:
    """One account's order stream (module docstring). ``run`` until cancelled."""

    def __init__(self, ws_url: str, transport: SignedTransport,
                 product_of: Callable[[str], Product | None], symbols: tuple[str, ...],
                 cid_of: Callable[[str], str], *, initial_backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, open_timeout_s: float = 10.0,
                 reply_timeout_s: float = 10.0, idle_timeout_s: float = 35.0) -> None:
        self.ws_url = ws_url
        self.transport = transport
        self.product_of = product_of
        self.symbols = symbols
        self.cid_of = cid_of
        self._link = Reconnector("Delta order stream", initial_backoff_s, max_backoff_s)
        self.open_timeout_s = open_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.counts = {"connects": 0, "reports": 0, "malformed": 0, "ignored": 0,
                       "drops": 0}

    async def run(self, on_report: Callable[[ExecutionReport], None],
                  on_state: Callable[[bool, str], None]) -> None:
        """Keep the stream up until cancelled; ``VenueAuthError`` (bad keys) ends it."""
        self._link.reset()
        while True:
            connects = self.counts["connects"]
            try:
                await self._session(on_report, on_state)
                why = "the server closed the stream"
            except VenueAuthError:
                self._link.tell(on_state, False, "Delta refused the API key")
                raise
            except (_Down, OSError, TimeoutError, websockets.WebSocketException,
                    TemporaryError, OperationalError) as exc:
                why = f"{exc.__class__.__name__}: {exc}"
            self.counts["drops"] += 1
            await self._link.wait_after_drop(on_state, why,
                                             was_up=self.counts["connects"] > connects)

    async def _session(self, on_report: Callable[[ExecutionReport], None],
                       on_state: Callable[[bool, str], None]) -> None:
        """One connection: authenticate, subscribe, read until it ends."""
        async with connect(self.ws_url, open_timeout=self.open_timeout_s, max_size=2**22,
                           proxy=None) as ws:
            await ws.send(json.dumps({"type": "key-auth", "payload": ws_auth_payload(
                self.transport.keys, self.transport.now_s())}))
            await self._authenticated(ws)
            channels = [{"name": "orders", "symbols": list(self.symbols) or ["all"]}]
            await ws.send(json.dumps({"type": "enable_heartbeat"}))
            await ws.send(json.dumps({"type": "subscribe", "payload": {"channels": channels}}))
            await self._subscribed(ws, on_report)
            self.counts["connects"] += 1
            self._link.tell(on_state, True, "connected")
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), self.idle_timeout_s)
                except TimeoutError:
                    raise _Down(f"no frame for {self.idle_timeout_s} s (heartbeat "
                                "missing)") from None
                self._handle(raw, on_report)

    async def _reply(self, ws: ClientConnection, kind: str,
                     on_report: Callable[[ExecutionReport], None] | None = None
                     ) -> dict[str, Any]:
        """The next frame of type ``kind`` (others are handled or dropped meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reply_timeout_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise _Down(f"no {kind} reply within {self.reply_timeout_s} s")
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                continue
            try:
                msg = _json(raw)
            except MalformedReplyError as exc:
                self.counts["malformed"] += 1
                log.warning("Delta order stream: dropped a malformed frame: %s", exc)
                continue
            if isinstance(msg, dict) and msg.get("type") == kind:
                return msg
            if on_report is not None:
                self._handle(raw, on_report)

    async def _authenticated(self, ws: ClientConnection) -> None:
        msg = await self._reply(ws, "key-auth")
        if msg.get("success") is True:
            return
        status = str(msg.get("status", ""))
        detail = f"key-auth refused: {status} {msg.get('message', '')}".strip()
        if status in AUTH_REFUSALS:
            raise VenueAuthError(f"Delta private websocket: {detail} (check the API key and "
                                 "secret and that they belong to this environment)")
        raise _Down(detail)

    async def _subscribed(self, ws: ClientConnection,
                          on_report: Callable[[ExecutionReport], None]) -> None:
        msg = await self._reply(ws, "subscriptions", on_report)
        channels = msg.get("channels")
        refused = [f"{c.get('name')}: {c.get('error')}" for c in
                   (channels if isinstance(channels, list) else [])
                   if isinstance(c, dict) and c.get("error")]
        if refused or not isinstance(channels, list):
            raise _Down(f"subscription refused: {'; '.join(refused) or msg}")

    def _handle(self, raw: str | bytes, on_report: Callable[[ExecutionReport], None]) -> None:
        try:
            reports = self.parse(raw)
        except MalformedReplyError as exc:
            self.counts["malformed"] += 1
            log.warning("Delta order stream: dropped a malformed frame: %s", exc)
            return
        for report in reports:
            self.counts["reports"] += 1
            on_report(report)

    def parse(self, raw: str | bytes) -> list[ExecutionReport]:
        """The order updates of one frame (none for heartbeats and other channels);
        ``MalformedReplyError`` naming the field otherwise."""
        msg = _json(raw)
        if not isinstance(msg, dict):
            raise MalformedReplyError("order stream frame is not a JSON object")
        if msg.get("type") != "orders":
            self.counts["ignored"] += 1
            return []
        symbol = msg.get("symbol")
        product = self.product_of(symbol) if isinstance(symbol, str) else None
        if product is None:
            self.counts["ignored"] += 1  # a product this execution does not trade
            return []
        where = f"orders {msg.get('action')}"
        if msg.get("action") == "snapshot":
            rows = msg.get("result")
            if not isinstance(rows, list):
                raise MalformedReplyError(f"{where}: field 'result' is not an array")
            return [order_report(r, product, self.cid_of, f"{where} result[{i}]")
                    for i, r in enumerate(rows) if isinstance(r, dict)]
        return [order_report(msg, product, self.cid_of, where)]


def _json(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedReplyError(f"order stream frame is not JSON: {raw[:120]!r}") from None
