"""``LiveTrader``: one symbol's live session as a restartable Ray actor, and its launcher.

Like the paper trader (``paper_actor.py``): Ray restarts a dead actor, the supervisor
calls ``start`` again, and the new session resolves the orders its predecessor left open
by client id before anything else, then reconciles. Keys are loaded inside the actor's
process (``binance_auth.load_keys``: environment variables or an owner-only file on the
node), never passed through Ray, so they appear in no task argument, runtime environment
or Ray dashboard.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import ray
from raytrade.actors.alerts import Notifier
from raytrade.actors.live_config import LiveConfig
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_actor import supervise
from raytrade.actors.session_host import SessionHost
from raytrade.actors.venues.execution import OrderExecution

log = logging.getLogger(__name__)


def build_execution(config: LiveConfig) -> OrderExecution:
    """The order side for ``config`` (``execution_registry``) at the network's endpoints;
    the venue loads its keys from the environment or the key file and installs their log
    redaction before anything can log. A dry run needs keys too (read-only keys
    suffice): it reads the real account to say what it would send."""
    from raytrade.actors.venues.execution_registry import execution_venue

    return execution_venue(config.venue).build(config.setup())


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class LiveTrader(SessionHost):
    """One symbol's live trader on Ray (module docstring)."""

    label = "live"

    def __init__(self, config: LiveConfig, store_uri: str, endpoint_url: str | None = None,
                 notifiers: Sequence[Notifier] = ()) -> None:
        super().__init__(config.actor, store_uri, endpoint_url, notifiers)
        self.config = config

    def _new_session(self) -> LiveSession:
        return LiveSession(self.config, self.store, build_execution(self.config),
                           notifiers=self.notifiers)

    async def status(self) -> dict[str, Any]:
        """Paper-side health, the live record's health, whether it runs and why not."""
        session = self.session
        health = session.health() if session is not None else {}
        live: dict[str, Any] = {}
        if isinstance(session, LiveSession):
            live = session.live_health() if session.ledger is not None else \
                session.final_health
        return {**health, "live": live, "running": self.running, "error": self.error}

    async def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop cleanly: finish the order in flight, export, close the journals."""
        await self.stop_session(timeout_s)
        return await self.status()


def run_live(configs: Sequence[LiveConfig], store_uri: str, *,
             endpoint_url: str | None = None, notifiers: Sequence[Notifier] = (),
             duration_s: float | None = None, check_every_s: float = 5.0,
             stop_event: threading.Event | None = None) -> list[dict[str, Any]]:
    """One live actor per config on the connected Ray, supervised like the paper
    actors (``paper_actor.supervise``); their final statuses."""
    actors = [LiveTrader.options(name=f"raytrade-live-{c.actor}",  # type: ignore[attr-defined]
                                 get_if_exists=True).remote(c, store_uri, endpoint_url,
                                                            list(notifiers))
              for c in configs]
    return supervise([c.actor for c in configs], actors, duration_s=duration_s,
                     check_every_s=check_every_s, stop_event=stop_event)
