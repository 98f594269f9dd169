"""What a trader actor (paper or live) does with its session, written once: start it
unless it runs (a restarted actor's supervisor calls ``start`` again), keep why it
stopped, and stop it cleanly. The Ray actor classes (``paper_actor.PaperTrader``,
``live_actor.LiveTrader``) build their own session in ``_new_session``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from raytrade.actors.alerts import Notifier
from raytrade.actors.paper_session import PaperSession
from raytrade.algos.storage.policy_store import PolicyStore

log = logging.getLogger(__name__)


class SessionHost:
    """A session on the actor's event loop (module docstring)."""

    label = "trading"
    """Names the session in logs (``paper``, ``live``)."""

    def __init__(self, actor: str, store_uri: str, endpoint_url: str | None,
                 notifiers: Sequence[Notifier]) -> None:
        logging.basicConfig(level=logging.INFO)
        self.actor = actor
        self.store = PolicyStore(store_uri, endpoint_url=endpoint_url)
        self.notifiers = list(notifiers)
        self.session: PaperSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.error: str | None = None

    def _new_session(self) -> PaperSession:
        """A fresh session (it rebuilds its state from its journals)."""
        raise NotImplementedError

    async def start(self) -> bool:
        """Start the session unless it runs; True if it was (re)started."""
        if self.task is not None and not self.task.done():
            return False
        self.session = self._new_session()
        self.task = asyncio.create_task(self.session.run())
        self.task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.error = f"{exc.__class__.__name__}: {exc}"
            log.error("%s session %s stopped: %s", self.label, self.actor, self.error,
                      exc_info=exc)

    @property
    def running(self) -> bool:
        """The session's task is alive."""
        return self.task is not None and not self.task.done()

    async def stop_session(self, timeout_s: float) -> None:
        """Ask the session to stop and wait up to ``timeout_s`` for it."""
        if self.session is not None and self.task is not None:
            self.session.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
            except (TimeoutError, Exception):
                log.exception("%s session %s did not stop cleanly", self.label, self.actor)
