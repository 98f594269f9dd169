"""Records every split a process asks its env spec for: ``install()`` wraps
``EnvSpec.markets`` to append ``<time> <pid> <split> <dataset names>`` to the file named by
``$RAYTRADE_SPLIT_LOG``. The tune test installs it in the driver and, as Ray's
``worker_process_setup_hook``, in every Ray worker (the Tune trials and their env
runners), so the log holds every bar split any part of a search read.

With ``$RAYTRADE_TUNE_HOLD`` naming a folder, it also wraps ``ray.tune.report`` so that a
trial whose report returned (Tune asked for more: the reported checkpoint is registered)
while ``<folder>/hold`` exists writes ``<folder>/held-<trial id>`` and waits until the file
is gone. The interruption test stops the search while trials are held, so it knows which
trials had a registered checkpoint short of their last iteration at the stop."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from raytrade.envs.env_spec import EnvSpec

LOG_VAR = "RAYTRADE_SPLIT_LOG"
HOLD_VAR = "RAYTRADE_TUNE_HOLD"
HOLD_FILE = "hold"
HOLD_LIMIT_S = 300.0  # a held trial goes on by itself after this (a test that died)


def install() -> None:
    """Wrap ``EnvSpec.markets`` once per process (a no-op without ``$RAYTRADE_SPLIT_LOG``),
    and ``ray.tune.report`` where ``$RAYTRADE_TUNE_HOLD`` is set."""
    _install_hold()
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


def _install_hold() -> None:
    folder = os.environ.get(HOLD_VAR)
    if not folder:
        return
    import ray.tune

    if getattr(ray.tune.report, "probed", False):
        return
    original = ray.tune.report

    def report(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)  # returns once Tune processed the result and its save
        hold = Path(folder) / HOLD_FILE
        if not hold.exists():
            return
        name = f"held-{ray.tune.get_context().get_trial_id()}"
        (Path(folder) / f".{name}").write_text(str(os.getpid()))
        os.replace(Path(folder) / f".{name}", Path(folder) / name)  # seen whole or not at all
        deadline = time.monotonic() + HOLD_LIMIT_S
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    report.probed = True  # type: ignore[attr-defined]
    ray.tune.report = report  # type: ignore[assignment]


def held(folder: str) -> dict[str, int]:
    """The trials that have been held: trial id -> the process that held it."""
    return {p.name.removeprefix("held-"): int(p.read_text())
            for p in Path(folder).glob("held-*")}


def read(path: str) -> list[tuple[float, int, str, str]]:
    """The recorded requests, in time order."""
    rows = []
    with open(path) as fh:
        for line in fh:
            t, pid, split, names = line.split()
            rows.append((float(t), int(pid), split, names))
    return sorted(rows)
