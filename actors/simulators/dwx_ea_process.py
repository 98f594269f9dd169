"""Start the simulated DWX EA as its own process (``raytrade dwx sim``), for tests and demos.

The EA and its client must be separate processes sharing only a folder, as a MetaTrader
terminal and a Python program are: ``start_ea`` spawns the command in its own process group
(``scripts/child_process.py``), waits for its ready line, and returns a handle that reads the
simulator's truth file, stops the EA the way MetaTrader does (SIGTERM: OnDeinit deletes its
files) or kills it outright (SIGKILL: files and state left as they were, as in a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from raytrade.actors.simulators.dwx_ea_faults import EaFault, faults_json
from raytrade.actors.simulators.dwx_ea_files import FOLDER, read_sim_state
from raytrade.scripts.child_process import ChildProcess


@dataclass(frozen=True)
class EaOptions:
    """The ``raytrade dwx sim`` options other than the folder, bars and faults (see
    ``scripts/dwx_cli.py`` for their meaning; ``None`` keeps the command's default)."""

    symbol: str = "EURUSD"
    timeframe: str = "H1"
    bar_seconds: float = 1.0
    start_bar: int | None = None
    pace: str = "bars"
    start_on_subscribe: bool = False
    account: str = "demo"
    trade_mode_field: bool = False
    balance: float = 10_000.0
    leverage: int = 100
    contract_size: float = 100_000.0
    digits: int = 5
    spread_points: int = 10
    commission_per_lot: float = 0.0
    min_lot: float = 0.01
    max_lot: float = 100.0
    lot_step: float = 0.01
    maximum_orders: int = 1
    maximum_lot_size: float = 0.01
    slippage_points: int = 3
    timer_ms: int = 25
    server_utc_offset_hours: float = 0.0
    encoding: str = "ansi"

    def argv(self) -> list[str]:
        """The options as command-line arguments."""
        out: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flag = "--" + field.name.replace("_", "-")
            if isinstance(value, bool):
                out += [flag] if value else []
            elif value is not None:
                out += [flag, str(value)]
        return out


class EaProcess:
    """A running ``raytrade dwx sim`` (module docstring)."""

    def __init__(self, files_dir: Path, child: ChildProcess, banner: dict[str, Any]) -> None:
        self.files_dir = files_dir
        self.child = child
        self.banner = banner

    @property
    def dwx_dir(self) -> Path:
        """The EA's folder (``files_dir/DWX``)."""
        return self.files_dir / FOLDER

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        return int(self.child.proc.pid)

    def state(self) -> dict[str, Any]:
        """The simulator's truth (``DWX/sim_state.json``)."""
        return read_sim_state(self.files_dir)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.child.alive()

    def stop(self) -> int | None:
        """Stop the EA as MetaTrader does (SIGTERM; OnDeinit deletes its files)."""
        return self.child.stop()

    def kill(self) -> None:
        """SIGKILL: a crash; the folder and the truth file stay as they were."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.proc.pid, signal.SIGKILL)
        self.child.stop()

    def __enter__(self) -> EaProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_ea(files_dir: str | Path, bars: str | Path, *, faults: Sequence[EaFault] = (),
             options: EaOptions = EaOptions(), log: str | Path | None = None) -> EaProcess:
    """Spawn ``raytrade dwx sim`` on ``files_dir`` replaying ``bars`` and wait until the EA
    runs (its first orders file is written). The fault schedule is written beside the log
    (``files_dir/dwx_sim_faults.json``); the log defaults to ``files_dir/dwx_sim.log``.
    ``OperationalError`` with the log's tail if the process exits first."""
    files = Path(files_dir)
    files.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "raytrade.scripts.cli", "dwx", "sim", "--files-dir",
           str(files), "--bars", str(bars), *options.argv()]
    if faults:
        schedule = files / "dwx_sim_faults.json"
        schedule.write_text(faults_json(tuple(faults)))
        cmd += ["--faults", str(schedule)]
    child = ChildProcess("dwx ea simulator", cmd, Path(log) if log else files / "dwx_sim.log",
                         banner=True)
    try:
        banner = child.read_banner()
    except BaseException:
        child.stop()
        raise
    return EaProcess(files, child, banner)
