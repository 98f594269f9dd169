"""The DWX EA simulator's folder: file names, the EA's inputs, and how its files are written.

The EA (``mql/DWX_Server_MT4.mq4`` in github.com/darwinex/dwxconnect) writes with MQL's
``FileOpen(FILE_WRITE|FILE_TXT)`` + ``FileWrite`` + ``FileClose``: the file is truncated,
the text written with ``\\r\\n`` appended, then closed; nothing is atomic, so a reader can
catch it empty or half written (``write_ea_file``'s ``pause_s`` holds it half written on
purpose). ResetFolder (OnInit and OnDeinit) deletes the EA's files (not the historic trades)
and all 50 command files. The simulator's own truth file, ``DWX/sim_state.json``, is not
part of the protocol and is written atomically.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raytrade.envs.errors import ConfigError

FOLDER = "DWX"
FILE_NAMES: dict[str, str] = {
    "orders": "DWX_Orders.txt", "messages": "DWX_Messages.txt",
    "market_data": "DWX_Market_Data.txt", "bar_data": "DWX_Bar_Data.txt",
    "historic_data": "DWX_Historic_Data.txt", "historic_trades": "DWX_Historic_Trades.txt"}
"""The files the EA writes, by short name."""
RESET_ON_INIT = ("market_data", "bar_data", "historic_data", "orders", "messages")
"""What ResetFolder deletes besides the command files (MT4 keeps the historic trades)."""
MAX_COMMAND_FILES = 50
STATE_FILE = "sim_state.json"


@dataclass(frozen=True)
class EaSettings:
    """The EA's inputs and the simulation's pace."""

    files_dir: Path
    """The terminal's ``MQL4/Files`` folder; the EA works in its ``DWX`` subfolder."""
    bar_seconds: float = 1.0
    """Wall-clock seconds per replayed bar."""
    start_bar: int = 1
    """Index of the first forming bar (bars before it are history)."""
    timer_ms: int = 25
    maximum_orders: int = 1
    """EA input MaximumOrders (its default: 1)."""
    maximum_lot_size: float = 0.01
    """EA input MaximumLotSize (its default: 0.01)."""
    lot_size_digits: int = 2
    num_last_messages: int = 50
    server_utc_offset_h: float = 0.0
    trade_mode_field: bool = False
    """Append ``"trade_mode": "demo"|"real"`` to account_info (NOT in the real EA: a
    one-line patch a user may apply so a client can check the account kind)."""
    encoding: Literal["ansi", "utf-16"] = "ansi"
    """How the EA's files are encoded (MQL text files: ANSI with FILE_ANSI, else UTF-16LE)."""
    balance: float = 10_000.0
    """The first deposit of a fresh account."""
    pace: Literal["bars", "clock"] = "bars"
    """``bars``: every bar takes ``bar_seconds`` and closures pass at once (a weekend is
    just the step to Sunday's first bar); ``clock``: wall time follows server time, so a
    closure lasts ``bar_seconds`` per missing bar while the market is closed."""
    start_on_subscribe: bool = False
    """Hold the replay on ``start_bar`` until a client first subscribes to bar data, so a
    client that starts slowly (a Ray actor on a loaded machine) still sees every bar from
    there; then the pace runs unchanged, whatever the client does."""

    @property
    def dwx_dir(self) -> Path:
        """The folder the EA reads and writes."""
        return self.files_dir / FOLDER

    @property
    def state_path(self) -> Path:
        """The simulator's truth file."""
        return self.dwx_dir / STATE_FILE


def tick_count() -> int:
    """MQL ``GetTickCount``: milliseconds since the machine started, as a uint32."""
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


def read_sim_state(files_dir: str | Path) -> dict[str, Any]:
    """The simulator's truth file of the folder ``files_dir`` (the ``MQL4/Files`` one)."""
    data: dict[str, Any] = json.loads((Path(files_dir) / FOLDER / STATE_FILE).read_text())
    return data


def reset_folder(dwx_dir: Path) -> None:
    """ResetFolder: create the folder, delete the EA's files and every command file."""
    dwx_dir.mkdir(parents=True, exist_ok=True)
    names = [FILE_NAMES[k] for k in RESET_ON_INIT] + [
        f"DWX_Commands_{i}.txt" for i in range(MAX_COMMAND_FILES)]
    for name in names:
        (dwx_dir / name).unlink(missing_ok=True)


def encode_ea_text(text: str, encoding: str) -> bytes:
    """What ``FileWrite`` puts on disk: ``text`` + ``\\r\\n``, ANSI or UTF-16LE with BOM."""
    body = text + "\r\n"
    if encoding == "utf-16":
        return b"\xff\xfe" + body.encode("utf-16-le")
    return body.encode("cp1252", errors="replace")


def write_ea_file(path: Path, data: bytes, pause_s: float | None = None) -> bool:
    """Truncate, write, close; with ``pause_s`` stop halfway that long first. False when
    the file cannot be opened (the EA's ``FileOpen`` returned -1)."""
    try:
        with open(path, "wb") as fh:
            if pause_s is None:
                fh.write(data)
                return True
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()
            time.sleep(pause_s)
            fh.write(data[half:])
            return True
    except OSError:
        return False


def save_state(path: Path, text: str) -> None:
    """Write the truth file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_state(path: Path, symbol: str, n_bars: int) -> dict[str, Any] | None:
    """The truth file a previous process left (None: a fresh folder); ``ConfigError`` if it
    is unreadable or was saved for other bars."""
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot resume from the simulator's state: {exc}") from exc
    if data.get("symbol") != symbol or data.get("bars") != n_bars:
        raise ConfigError(f"{path}: saved for {data.get('symbol')} with {data.get('bars')} "
                          f"bars, not {symbol} with {n_bars}; use a new folder")
    return data


def decode_command(raw: bytes) -> str:
    """The command file's text as ``FileReadString`` pieces it together (line ends dropped)."""
    if raw[:2] == b"\xff\xfe":
        text = raw[2:].decode("utf-16-le", errors="replace")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    return text.replace("\r", "").replace("\n", "")
