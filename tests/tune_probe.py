"""Records every split a process asks its env spec for: ``install()`` wraps
``EnvSpec.markets`` to append ``<time> <pid> <split> <dataset names>`` to the file named by
``$RAYTRADE_SPLIT_LOG``. The tune test installs it in the driver and, as Ray's
``worker_process_setup_hook``, in every Ray worker (the Tune trials and their env
runners), so the log holds every bar split any part of a search read."""

from __future__ import annotations

import os
import time
from typing import Any

from raytrade.envs.env_spec import EnvSpec

LOG_VAR = "RAYTRADE_SPLIT_LOG"


def install() -> None:
    """Wrap ``EnvSpec.markets`` once per process (a no-op without ``$RAYTRADE_SPLIT_LOG``)."""
    path = os.environ.get(LOG_VAR)
    if not path or getattr(EnvSpec.markets, "probed", False):
        return
    original = EnvSpec.markets

    def markets(self: EnvSpec, split: str) -> Any:
        out = original(self, split)
        names = ",".join(m.name for m in out)
        with open(path, "a") as fh:  # one short line per write: appends do not interleave
            fh.write(f"{time.time():.6f} {os.getpid()} {split} {names}\n")
        return out

    markets.probed = True  # type: ignore[attr-defined]
    EnvSpec.markets = markets  # type: ignore[method-assign]


def read(path: str) -> list[tuple[float, int, str, str]]:
    """The recorded requests, in time order."""
    rows = []
    with open(path) as fh:
        for line in fh:
            t, pid, split, names = line.split()
            rows.append((float(t), int(pid), split, names))
    return sorted(rows)
