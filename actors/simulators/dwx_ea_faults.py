"""The DWX EA simulator's fault schedule: what goes wrong, and at which command.

Faults are keyed by ``at_command``, the 0-based index of a command file among all the
command files the simulated EA has read (and deleted) since the simulator process started,
whatever their content (duplicates and malformed ones count). Each fires once.

Kinds:
- ``leave_unread``: when command ``at_command`` is next to be read, the EA reads no command
  file for ``delay_s`` (default 5): the file stays in the folder, as when the terminal is
  busy or frozen, so a client waiting for the answer times out;
- ``half_written``: from command ``at_command`` on (its own answer included), the next write
  of ``file`` (``orders``, ``messages``, ``market_data``, ``bar_data``, ``historic_data`` or
  ``historic_trades``; default: whichever the EA writes next) stops halfway for ``delay_s``
  (default 0.5), so a reader sees truncated JSON, as the real EA's non-atomic writes allow;
- ``reject``: the first trade command (OPEN_ORDER, CLOSE_ORDER, MODIFY_ORDER and the CLOSE_*
  commands) at index ``at_command`` or later is refused by the trade server with MT4 error
  ``error_code`` (default 136, "off quotes"): an ERROR message, no ticket, nothing changed;
- ``restart``: command ``at_command`` runs at the trade server, then the terminal goes down
  before the EA writes its answer (the answer is never written: a client waiting for it
  times out, as when a terminal dies between ``OrderSend`` and ``WriteToFile``). The EA stops
  (OnDeinit), the terminal is down for ``delay_s`` (default 1; bars keep closing and stops
  keep triggering at the broker) and the EA starts again (OnInit): its files are deleted,
  command ids, subscriptions and messages are forgotten, and the orders file is rewritten
  with the broker's open orders.

The JSON form (``--faults FILE``) is
``{"faults": [{"kind": "leave_unread", "at_command": 3, "delay_s": 2.0}, ...]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from raytrade.envs.errors import ConfigError

EaFaultKind = Literal["leave_unread", "half_written", "reject", "restart"]
EA_FAULT_KINDS: tuple[str, ...] = get_args(EaFaultKind)
EA_FILES: tuple[str, ...] = ("orders", "messages", "market_data", "bar_data", "historic_data",
                             "historic_trades")
_DEFAULT_DELAY_S = {"leave_unread": 5.0, "half_written": 0.5, "restart": 1.0}
_FIELDS = {"kind", "at_command", "delay_s", "file", "error_code"}


@dataclass(frozen=True)
class EaFault:
    """One scheduled fault (module docstring)."""

    kind: EaFaultKind
    at_command: int
    delay_s: float | None = None
    """Seconds the fault lasts (``leave_unread``, ``half_written``, ``restart``)."""
    file: str | None = None
    """``half_written`` only: which EA file is cut (None: the next one written)."""
    error_code: int = 136
    """``reject`` only: the MT4 error code the trade server answers."""

    def __post_init__(self) -> None:
        if self.kind not in EA_FAULT_KINDS:
            raise ConfigError(f"fault kind {self.kind!r} is not one of {EA_FAULT_KINDS}")
        if self.at_command < 0:
            raise ConfigError(f"fault {self.kind}: at_command {self.at_command} is below 0")
        if self.delay_s is not None and not self.delay_s >= 0:
            raise ConfigError(f"fault {self.kind}: delay_s {self.delay_s} must be >= 0")
        if self.file is not None and (self.kind != "half_written" or self.file not in EA_FILES):
            raise ConfigError(f"fault {self.kind}: file {self.file!r} needs kind half_written "
                              f"and one of {EA_FILES}")

    @property
    def seconds(self) -> float:
        """``delay_s`` or the kind's default."""
        return self.delay_s if self.delay_s is not None else _DEFAULT_DELAY_S.get(self.kind, 0.0)


def parse_faults(data: Any, source: str = "faults") -> tuple[EaFault, ...]:
    """The schedule from its JSON form; ``ConfigError`` naming the entry and field."""
    if not isinstance(data, dict) or set(data) != {"faults"} or not isinstance(
            data["faults"], list):
        raise ConfigError(f"{source}: expected {{\"faults\": [...]}}")
    out: list[EaFault] = []
    for i, item in enumerate(data["faults"]):
        where = f"{source}: faults[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected an object")
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown fields {unknown} (allowed: {sorted(_FIELDS)})")
        if not isinstance(item.get("at_command"), int) or isinstance(item["at_command"], bool):
            raise ConfigError(f"{where}: at_command must be an integer")
        try:
            delay = item.get("delay_s")
            out.append(EaFault(kind=item.get("kind"),  # type: ignore[arg-type]
                               at_command=item["at_command"],
                               delay_s=None if delay is None else float(delay),
                               file=item.get("file"),
                               error_code=int(item.get("error_code", 136))))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return tuple(out)


def load_ea_faults(path: str | Path) -> tuple[EaFault, ...]:
    """Read a schedule file (module docstring for the form)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the fault schedule: {exc}") from exc
    return parse_faults(data, str(path))


def faults_json(faults: tuple[EaFault, ...]) -> str:
    """The JSON form of a schedule (what ``--faults`` reads)."""
    rows: list[dict[str, Any]] = []
    for f in faults:
        row: dict[str, Any] = {"kind": f.kind, "at_command": f.at_command}
        if f.delay_s is not None:
            row["delay_s"] = f.delay_s
        if f.file is not None:
            row["file"] = f.file
        if f.kind == "reject":
            row["error_code"] = f.error_code
        rows.append(row)
    return json.dumps({"faults": rows})
