"""The loopback exchange's fault schedule: what goes wrong, and on which order request.

Faults are keyed by ``at_order``, the 0-based index of a ``POST /api/v3/order`` or
``POST /fapi/v1/order`` request among all such requests the exchange has authenticated
(valid API key and signature) since it started, spot and futures together. Several faults
may share an index (a partial fill on a dropped stream). Each fires once.

Kinds (nothing placed unless said):
- ``accept_then_timeout``: place and fill the order, then hold the HTTP reply for
  ``delay_s`` (default 30) so the client times out not knowing the order's fate;
- ``error_5xx_before``: 503; ``error_5xx_after``: place and fill, then answer 503;
- ``place_late``: answer 503 at once and place the order ``delay_s`` (default 1) later,
  as a request still inside the matching engine after the gateway gave up would be (it
  is still placed only within the request's ``recvWindow``);
- ``rate_limit``: 429 with ``Retry-After: retry_after_s`` (default 1);
- ``ban``: 418 with ``Retry-After``; every request is refused for ``retry_after_s``;
- ``timestamp``: -1021 (as if the client's clock were off);
- ``insufficient_balance``: spot -2010, futures -2019;
- ``filter_lot_size``: spot -1013 "Filter failure: LOT_SIZE", futures -1111;
- ``partial_fill``: fill ``fraction`` (default 0.5) of the quantity; a MARKET order fills
  the rest in a second trade ``delay_s`` (default 0.2) later, a LIMIT IOC order expires
  with the rest unfilled;
- ``expire_listen_key``: after the order, ``listenKeyExpired`` on every user stream, and
  every listen key is forgotten;
- ``drop_user_stream``: after the order's NEW event, every user-stream socket is cut
  (no close frame); the order's TRADE events are lost for them.

The loopback Delta exchange (``delta_exchange``) takes the same kinds and JSON, keyed by
its authenticated ``POST /v2/orders`` requests, and answers each with Delta's own errors
(its module docstring lists them); the Binance codes above are the Binance exchange's.

The JSON form (``POST /sim/faults`` and ``--faults FILE``) is
``{"faults": [{"kind": "partial_fill", "at_order": 3, "fraction": 0.25}, ...]}``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from raytrade.envs.errors import ConfigError

FaultKind = Literal["accept_then_timeout", "error_5xx_before", "error_5xx_after", "place_late",
                    "rate_limit", "ban", "timestamp", "insufficient_balance",
                    "filter_lot_size", "partial_fill", "expire_listen_key",
                    "drop_user_stream"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

_OPTIONS: dict[str, frozenset[str]] = {
    "accept_then_timeout": frozenset({"delay_s"}),
    "place_late": frozenset({"delay_s"}),
    "rate_limit": frozenset({"retry_after_s"}),
    "ban": frozenset({"retry_after_s"}),
    "partial_fill": frozenset({"fraction", "delay_s"}),
}
_DEFAULT_DELAY_S = {"accept_then_timeout": 30.0, "partial_fill": 0.2, "place_late": 1.0}

BEFORE_PLACING: frozenset[str] = frozenset({
    "error_5xx_before", "rate_limit", "ban", "timestamp", "insufficient_balance",
    "filter_lot_size"})
"""Kinds that answer instead of placing the order."""


@dataclass(frozen=True)
class Fault:
    """One scheduled fault (module docstring)."""

    kind: FaultKind
    at_order: int
    """0-based index of the authenticated order request it hits."""
    delay_s: float | None = None
    """Seconds: how long ``accept_then_timeout`` holds the reply (default 30) or when a
    ``partial_fill`` market order's rest fills (default 0.2)."""
    retry_after_s: float = 1.0
    """Seconds announced in ``Retry-After`` by ``rate_limit`` and ``ban`` (and the ban's
    length)."""
    fraction: float = 0.5
    """Share of the quantity a ``partial_fill`` fills first, in (0, 1)."""

    def __post_init__(self) -> None:
        where = f"fault {self.kind!r} at_order {self.at_order}"
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind {self.kind!r} unknown; kinds: {list(FAULT_KINDS)}")
        if self.at_order < 0:
            raise ConfigError(f"{where}: 'at_order' must be >= 0")
        if self.delay_s is not None and not self.delay_s >= 0:
            raise ConfigError(f"{where}: 'delay_s' must be >= 0, got {self.delay_s}")
        if not self.retry_after_s > 0:
            raise ConfigError(f"{where}: 'retry_after_s' must be > 0, got "
                              f"{self.retry_after_s}")
        if not 0 < self.fraction < 1:
            raise ConfigError(f"{where}: 'fraction' must be in (0, 1), got {self.fraction}")

    @property
    def delay(self) -> float:
        """``delay_s`` or the kind's default (seconds)."""
        return self.delay_s if self.delay_s is not None else _DEFAULT_DELAY_S.get(self.kind,
                                                                                  0.0)

    def to_json(self) -> dict[str, Any]:
        """The JSON form, with the options this kind uses."""
        out: dict[str, Any] = {"kind": self.kind, "at_order": self.at_order}
        for name in sorted(_OPTIONS.get(self.kind, frozenset())):
            out[name] = self.delay if name == "delay_s" else getattr(self, name)
        return out


def _number(raw: dict[str, Any], name: str, where: str) -> float:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {name!r} must be a number, got {value!r}")
    return float(value)


def parse_fault(raw: object, where: str) -> Fault:
    """One fault from its JSON object; ``where`` names it in errors (e.g. ``faults[2]``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a fault is a JSON object, got {raw!r}")
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise ConfigError(f"{where}: 'kind' must be one of {list(FAULT_KINDS)}, got {kind!r}")
    at = raw.get("at_order")
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise ConfigError(f"{where}: 'at_order' must be an integer >= 0, got {at!r}")
    allowed = _OPTIONS.get(kind, frozenset())
    unknown = sorted(set(raw) - {"kind", "at_order"} - allowed)
    if unknown:
        raise ConfigError(f"{where}: field(s) {unknown} not used by kind {kind!r} "
                          f"(it takes {sorted(allowed) or 'no options'})")
    opts = {name: _number(raw, name, where) for name in allowed if name in raw}
    try:
        return Fault(kind=kind, at_order=at, **opts)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def parse_faults(raw: object, source: str) -> tuple[Fault, ...]:
    """Faults from ``{"faults": [...]}`` (``source`` names the file or request in errors)."""
    if not isinstance(raw, dict) or set(raw) != {"faults"} or not isinstance(raw["faults"],
                                                                             list):
        raise ConfigError(f"{source}: expected {{\"faults\": [{{\"kind\": ..., "
                          f"\"at_order\": N}}, ...]}}")
    return tuple(parse_fault(item, f"{source}: faults[{i}]")
                 for i, item in enumerate(raw["faults"]))


def load_faults(path: str | Path) -> tuple[Fault, ...]:
    """Faults from a JSON file (``--faults FILE``)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the faults file: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc
    return parse_faults(raw, str(path))


class FaultSchedule:
    """Faults waiting for their order request, and a count of those fired. Used from the
    exchange's event loop only."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._pending: list[Fault] = []
        self.fired: Counter[str] = Counter()
        """Fired faults by kind."""
        self.add(faults)

    def add(self, faults: Iterable[Fault]) -> None:
        """Schedule more faults."""
        self._pending.extend(faults)

    def take(self, index: int) -> tuple[Fault, ...]:
        """The faults due at order request ``index``, removed from the schedule and counted
        as fired."""
        due = tuple(f for f in self._pending if f.at_order == index)
        if due:
            self._pending = [f for f in self._pending if f.at_order != index]
            self.fired.update(f.kind for f in due)
        return due

    @property
    def pending(self) -> tuple[Fault, ...]:
        """Faults not fired yet."""
        return tuple(self._pending)
