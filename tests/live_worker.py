"""A live trader in its own process, without Ray, for the crash tests: ``python -m
tests.live_worker CONFIG.json``. The JSON holds ``store`` (URI), ``paper``
(``PaperConfig`` fields) and ``live`` (``LiveConfig`` fields but ``paper`` and
``limits``, plus ``limits``: ``LiveLimits`` fields). Keys come from the environment, as in
production (``live_actor.build_execution``). Runs until SIGTERM; logs to stderr."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from raytrade.actors.live_actor import build_execution
from raytrade.actors.live_config import LiveConfig, LiveLimits
from raytrade.actors.live_session import LiveSession
from raytrade.actors.paper_config import PaperConfig
from raytrade.algos.storage.policy_store import PolicyStore


def main(path: str) -> None:
    """Trade until SIGTERM."""
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with open(path) as fh:
        raw = json.load(fh)
    live = dict(raw["live"])
    limits = LiveLimits(**live.pop("limits", {}))
    config = LiveConfig(paper=PaperConfig(**raw["paper"]), limits=limits, **live)
    session = LiveSession(config, PolicyStore(raw["store"]), build_execution(config))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, session.stop)
        await session.run()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1])
