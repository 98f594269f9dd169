"""Shared set-up for the live-trading tests: the loopback Binance exchange
(``raytrade exchange sim``) in its own process with the replay feed it starts, live and
paper session configs on it, and readers of the exchange's state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from raytrade.actors.alerts import Alert
from raytrade.actors.live_config import LiveConfig, LiveLimits
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.paper_session import PaperSession
from raytrade.actors.venues.binance_auth import ApiKeys
from raytrade.actors.venues.binance_orders import BinanceExecution

from tests.live_setup import banner_process

KEY = "rtTestKey7Qm2vX9pL4sN8dF3hJ6kA1zC5bG0"
SECRET = "rtTestSecret4Tq9wE2rY7uI5oP1aS3dF6gH8jK0lZx"
"""Throwaway credentials of the loopback account (tests grep for them)."""


@contextlib.contextmanager
def exchange_process(tmp_path: Path, data: Sequence[Path], *, speed: float, start: int,
                     faults: list[dict[str, Any]] | None = None
                     ) -> Iterator[dict[str, Any]]:
    """``raytrade exchange sim`` with its replay feed of ``data`` (clock started by the
    first subscription), one account (10,000 USDT spot, 10,000 USDT futures); yields its
    banner (``rest_url``, ``ws_url``, ``replay``: ``ws_url``, ``rest_url``)."""
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET,
                                     "spot": {"USDT": "10000"}, "futures_wallet": "10000"}]))
    os.chmod(accounts, 0o600)
    cmd = [sys.executable, "-m", "raytrade.scripts.cli", "exchange", "sim", "--accounts",
           str(accounts), "--replay", *map(str, data), "--speed", str(speed), "--start",
           str(start), "--start-on-connect"]
    if faults:
        path = tmp_path / "faults.json"
        path.write_text(json.dumps({"faults": faults}))
        cmd += ["--faults", str(path)]
    with banner_process(cmd) as banner:
        yield dict(banner)


def sim_state(info: dict[str, Any]) -> dict[str, Any]:
    """The exchange's ``/sim/state``."""
    with urllib.request.urlopen(f"{info['rest_url']}/sim/state", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def sim_post(info: dict[str, Any], path: str, body: dict[str, Any]) -> Any:
    """POST a loopback-only ``/sim/...`` request."""
    req = urllib.request.Request(f"{info['rest_url']}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def account(info: dict[str, Any]) -> dict[str, Any]:
    """The test account's state on the exchange."""
    return dict(sim_state(info)["accounts"][KEY])


def paper_config(tmp_path: Path, info: dict[str, Any], speed: float, actor: str,
                 **kw: Any) -> PaperConfig:
    """A session on the exchange's replay feed following ``live``."""
    base: dict[str, Any] = {
        "actor": actor, "symbol": "ETHUSDT", "venue": "replay",
        "feed_url": info["replay"]["ws_url"], "rest_url": info["replay"]["rest_url"],
        "journal_dir": str(tmp_path / f"journal-{actor}"), "channel": "live",
        "speed": speed, "stale_after_bars": 40, "export_every_s": 0.5}
    return PaperConfig(**{**base, **kw})


def live_config(tmp_path: Path, info: dict[str, Any], speed: float, *,
                actor: str = "live-eth", venue: str = "binance-spot", **kw: Any) -> LiveConfig:
    """A live actor trading on the loopback exchange (stale data allowed for a day of
    market time: the faults stall a fast replay for many bars)."""
    base: dict[str, Any] = {
        "venue": venue, "network": "loopback", "rest_url": info["rest_url"],
        "ws_url": info["ws_url"], "capital": 1000.0, "order_timeout_s": 1.0,
        "recv_window_ms": 1500,
        "fill_timeout_s": 1.0, "command_poll_s": 0.1, "reconcile_every_s": 1.0,
        "limits": LiveLimits(stale_after_s=86_400.0, max_orders_per_minute=1000,
                             max_symbol_notional=5000.0)}
    return LiveConfig(paper=paper_config(tmp_path, info, speed, actor), **{**base, **kw})


def execution(info: dict[str, Any], market: str = "spot") -> BinanceExecution:
    """The real Binance client on the loopback exchange (``recvWindow`` 1.5 s, as in
    ``live_config``: an unknown fate settles 2.5 s after the request)."""
    return BinanceExecution(market, info["rest_url"], info["ws_url"],  # type: ignore[arg-type]
                            ApiKeys(KEY, SECRET), timeout_s=1.0, recv_window_ms=1500)


def run_sessions(sessions: Sequence[PaperSession], timeout_s: float,
                 until: Callable[[], bool],
                 during: Callable[[], None] | None = None) -> None:
    """Run ``sessions`` on one event loop until ``until()`` or the timeout; stop them."""

    async def main() -> None:
        tasks = [asyncio.create_task(s.run()) for s in sessions]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not any(t.done() for t in tasks) \
                and not until():
            if during is not None:
                await asyncio.to_thread(during)
            await asyncio.sleep(0.05)
        for s in sessions:
            s.stop()
        for t in tasks:
            await t

    asyncio.run(main())


class Alerts:
    """A notifier keeping every alert."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        """Keep it."""
        self.sent.append(alert)

    def kinds(self) -> list[str]:
        """Alert kinds, in order."""
        return [a.kind for a in self.sent]
