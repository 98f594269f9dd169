"""Binance's user data stream: order updates over a websocket (``execution.UserStream``).

The listen-key protocol, for spot (``/api/v3/userDataStream``) and USD-M futures
(``/fapi/v1/listenKey``): ``POST`` returns the account's key (API key header, no
signature; a new one if none is active, else the active one, its validity extended), the
socket is ``<ws_url>/ws/<key>``, ``PUT`` keeps the key alive (Binance expires it 60 min
after the last keepalive; we send one every ``keepalive_s``, 30 min by default) and
``DELETE`` closes it (when ``run`` ends, unless ``close_key`` is off). Every (re)connect
starts with a ``POST``, so a stream never reconnects with a key the exchange has
forgotten. When the key expires the server sends ``listenKeyExpired`` and closes the
socket; a keepalive answered with -1125 means the same: either way the stream reconnects
at once with a new key. Any other drop reconnects
after a back-off (doubling from ``initial_backoff_s`` to ``max_backoff_s``). Order
updates sent while the stream is down are lost with it: ``on_state(False, why)`` tells the
caller to fall back to REST queries until ``on_state(True, ...)``.

Frames: ``executionReport`` (spot) and ``ORDER_TRADE_UPDATE`` (futures) become
``ExecutionReport``; account updates and other events are counted and ignored (balances
come from REST reconciliation). A malformed frame is logged, counted in ``counts`` and
dropped; it never stops the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import websockets
from raytrade.actors.venues import binance_replies as r
from raytrade.actors.venues.binance_signed import (
    BinanceApiError,
    MalformedReplyError,
    SignedTransport,
)
from raytrade.actors.venues.execution import ExecutionReport, MarketKind, VenueAuthError
from raytrade.actors.venues.reconnect import Reconnector
from raytrade.envs.errors import DataError, OperationalError, TemporaryError
from websockets.asyncio.client import ClientConnection, connect

log = logging.getLogger(__name__)

LISTEN_KEY_GONE = -1125
KEY_GONE_QUIET_S = 60.0
"""A listen key lost again within this many seconds of the last loss is not re-created
at once but after the drop back-off (a server that expires every key cannot make the
stream hammer the listen-key endpoint)."""


class _KeyGone(Exception):  # noqa: N818 - internal control flow, never escapes
    """The listen key expired or was forgotten: create a new one."""


class BinanceUserStream:
    """One account's user data stream (module docstring). ``run`` until cancelled."""

    def __init__(self, transport: SignedTransport, market: MarketKind, listen_key_path: str,
                 ws_url: str, *, keepalive_s: float = 1800.0, initial_backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, open_timeout_s: float = 10.0,
                 ping_interval_s: float | None = 20.0, close_key: bool = True) -> None:
        if keepalive_s <= 0:
            raise ValueError(f"keepalive_s must be > 0, got {keepalive_s}")
        self.transport = transport
        self.market = market
        self.path = listen_key_path
        self.ws_url = ws_url.rstrip("/")
        self.keepalive_s = keepalive_s
        self._link = Reconnector("user stream", initial_backoff_s, max_backoff_s)
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.close_key = close_key
        """DELETE the listen key when ``run`` ends. Binance hands every stream of one
        account the same key: streams sharing an account leave it open (it expires 60 min
        after its last keepalive) so that one stopping does not cut the others off."""
        self.counts = {"connects": 0, "listen_key_posts": 0, "keepalives": 0, "reports": 0,
                       "malformed": 0, "ignored": 0, "expired": 0, "drops": 0}

    async def run(self, on_report: Callable[[ExecutionReport], None],
                  on_state: Callable[[bool, str], None]) -> None:
        """Keep the stream up until cancelled; ``VenueAuthError`` (bad keys) ends it."""
        self._link.reset()
        key: str | None = None
        last_gone = -math.inf
        try:
            while True:
                connects = self.counts["connects"]
                try:
                    key = await self._create_key()
                    await self._session(key, on_report, on_state)
                    why = "the server closed the stream"
                except _KeyGone as exc:
                    self._link.tell(on_state, False, str(exc))
                    # at once, unless keys keep vanishing: then back off as for a drop
                    now = time.monotonic()
                    quiet, last_gone = now - last_gone > KEY_GONE_QUIET_S, now
                    if quiet:
                        self._link.reset()
                        continue
                    why = str(exc)
                except VenueAuthError:
                    self._link.tell(on_state, False, "the exchange refused the API key")
                    raise
                except (OSError, TimeoutError, websockets.WebSocketException,
                        TemporaryError, OperationalError, DataError) as exc:
                    why = f"{exc.__class__.__name__}: {exc}"
                self.counts["drops"] += 1
                await self._link.wait_after_drop(on_state, why,
                                                 was_up=self.counts["connects"] > connects)
        finally:
            if key is not None and self.close_key:
                await self._close_key(key)

    async def _create_key(self) -> str:
        data = await self.transport.call("POST", self.path, api_key=True)
        key = data.get("listenKey") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.isalnum():
            raise MalformedReplyError(f"POST {self.path}: field 'listenKey' is missing or "
                                      "not alphanumeric")
        self.counts["listen_key_posts"] += 1
        return key

    def _key_params(self, key: str) -> dict[str, str | int | float | bool]:
        # futures identify the key by the API key and take no parameter
        return {"listenKey": key} if self.market == "spot" else {}

    async def _keepalive(self, key: str) -> None:
        """PUT the key every ``keepalive_s``; ``_KeyGone`` when the exchange forgot it."""
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.transport.call("PUT", self.path, self._key_params(key),
                                          api_key=True)
                self.counts["keepalives"] += 1
            except BinanceApiError as exc:
                if exc.code == LISTEN_KEY_GONE:
                    raise _KeyGone(f"keepalive refused: {exc.code} {exc.msg}") from None
                log.warning("listen key keepalive failed (%s); retrying next period", exc)
            except TemporaryError as exc:
                log.warning("listen key keepalive failed (%s); retrying next period", exc)

    async def _close_key(self, key: str) -> None:
        try:
            await asyncio.wait_for(self.transport.call("DELETE", self.path,
                                                       self._key_params(key), api_key=True),
                                   self.transport.timeout_s)
        except (OSError, TimeoutError, TemporaryError, OperationalError) as exc:
            log.info("closing the listen key failed (%s); it expires by itself", exc)

    async def _session(self, key: str, on_report: Callable[[ExecutionReport], None],
                       on_state: Callable[[bool, str], None]) -> None:
        """One connection: read frames until it closes; keepalives alongside."""
        ws = await connect(f"{self.ws_url}/ws/{key}", open_timeout=self.open_timeout_s,
                           ping_interval=self.ping_interval_s, max_size=2**20, proxy=None)
        self.counts["connects"] += 1
        self._link.tell(on_state, True, "connected")
        keepalive = asyncio.create_task(self._keepalive(key))
        reader = asyncio.create_task(self._read(ws, on_report))
        try:
            done, _ = await asyncio.wait({keepalive, reader},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise _KeyGone or a connection error
        finally:
            for task in (keepalive, reader):
                task.cancel()
            for task in (keepalive, reader):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

    async def _read(self, ws: ClientConnection, on_report: Callable[[ExecutionReport], None]
                    ) -> None:
        async for raw in ws:
            try:
                event = parse_event(raw, self.market)
            except MalformedReplyError as exc:
                self.counts["malformed"] += 1
                log.warning("user stream: dropped a malformed frame: %s", exc)
                continue
            if isinstance(event, str):  # "expired"
                self.counts["expired"] += 1
                raise _KeyGone("listen key expired")
            if event is None:
                self.counts["ignored"] += 1
                continue
            self.counts["reports"] += 1
            on_report(event)


def parse_event(raw: str | bytes, market: MarketKind) -> ExecutionReport | str | None:
    """An order update, ``"expired"`` for ``listenKeyExpired``, or None for events the
    order side does not use; ``MalformedReplyError`` naming the field otherwise."""
    try:
        msg = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedReplyError(f"user stream frame is not JSON: {raw[:120]!r}") from None
    if not isinstance(msg, dict):
        raise MalformedReplyError("user stream frame is not a JSON object")
    kind = msg.get("e")
    if kind == "listenKeyExpired":
        return "expired"
    if kind == "executionReport" and market == "spot":
        return _spot_report(msg)
    if kind == "ORDER_TRADE_UPDATE" and market == "futures":
        order = msg.get("o")
        if not isinstance(order, dict):
            raise MalformedReplyError("ORDER_TRADE_UPDATE: field 'o' is not an object")
        return _futures_report(order, _int(msg, "E", "ORDER_TRADE_UPDATE"))
    return None


def _spot_report(m: Mapping[str, Any]) -> ExecutionReport:
    w = "executionReport"
    execution = r.text(m, "x", w)
    # a cancel's report carries the cancel request's id in "c", the order's in "C"
    cid = r.text(m, "c", w)
    original = m.get("C")
    if execution == "CANCELED" and isinstance(original, str) and original:
        cid = original
    trade = execution == "TRADE"
    asset = m.get("N")
    reason = m.get("r")
    return ExecutionReport(
        client_order_id=cid, venue_order_id=str(_int(m, "i", w)), symbol=r.text(m, "s", w),
        side=r.side(m, "S", w), status=r.status(m, "X", w), qty=r.decimal(m, "q", w),
        last_qty=r.decimal(m, "l", w), last_price=r.decimal(m, "L", w),
        cum_qty=r.decimal(m, "z", w), cum_quote=r.decimal(m, "Z", w),
        commission=r.decimal(m, "n", w, signed=True) if trade else 0.0,
        commission_asset=asset if isinstance(asset, str) else "",
        trade_id=_int(m, "t", w) if trade else -1, event_ms=_int(m, "E", w),
        reason=reason if isinstance(reason, str) and reason != "NONE" else "")


def _futures_report(o: Mapping[str, Any], event_ms: int) -> ExecutionReport:
    w = "ORDER_TRADE_UPDATE"
    trade = r.text(o, "x", w) == "TRADE"
    cum = r.decimal(o, "z", w)
    avg = r.decimal(o, "ap", w) if "ap" in o else 0.0
    asset = o.get("N")
    commission = r.decimal(o, "n", w, signed=True) if trade and "n" in o else 0.0
    cum_quote = cum * avg
    if not math.isfinite(cum_quote):
        raise MalformedReplyError(f"{w}: cumulative quote {cum} x {avg} is not finite")
    return ExecutionReport(
        client_order_id=r.text(o, "c", w), venue_order_id=str(_int(o, "i", w)),
        symbol=r.text(o, "s", w), side=r.side(o, "S", w), status=r.status(o, "X", w),
        qty=r.decimal(o, "q", w), last_qty=r.decimal(o, "l", w),
        last_price=r.decimal(o, "L", w), cum_qty=cum, cum_quote=cum_quote,
        commission=commission, commission_asset=asset if isinstance(asset, str) else "",
        trade_id=_int(o, "t", w) if trade else -1, event_ms=event_ms)


def _int(d: Mapping[str, Any], key: str, where: str) -> int:
    return r.integer(d, key, where)
