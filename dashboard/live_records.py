"""The live actors' exported record, typed: what ``live/<actor>/`` holds in the run store.

A live actor (``raytrade live``) exports, under ``live/<actor>/`` (``algos.storage.keys``):

- ``health.json`` (``LiveHealth``): its venue, network and dry-run flag, whether and why it
  is halted, its position, equity and day PnL, open orders, user-stream state, the last
  reconciliation, order latency and unresolved faults;
- ``orders.jsonl`` (``LiveOrder``): one line per order state written (the latest line of a
  client order id is its current state);
- ``fills.jsonl`` (``LiveFill``): its fills, each with the price paper trading filled at on
  the same bar and the slippage between the two;
- ``equity.jsonl`` (``LiveEquity``): its allocation's equity and position per bar, with
  paper's equity beside it;
- ``events.jsonl`` (``LiveEvent``): halts, flattens, resumes, adoptions, reconciliations,
  risk refusals, alerts and stream changes, with who caused them.

``parse_record`` checks one JSON object against a record class's field types (read from
its annotations) and raises ``DataError`` naming the source and the field when it does not
fit, so the reader can skip and name a bad line instead of showing a wrong number. Fields
the class does not know are ignored: an exporter may add fields before the dashboard
shows them. Numbers: prices in quote currency, quantities in base units (signed: negative
is short), times in ms UTC unless named otherwise.

Pure Python (no Streamlit, no pandas): importable by tests and tools alike.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from raytrade.actors.live_ledger import HALT_ORDER
from raytrade.actors.live_ledger import OPEN_STATUSES as JOURNAL_OPEN_STATUSES
from raytrade.actors.live_ledger import Halt as Halt  # the journal's halt, read back
from raytrade.envs.errors import DataError

Side = Literal["buy", "sell"]
OrderStatus = Literal["sending", "new", "partially_filled", "filled", "canceled", "rejected",
                      "expired", "lost", "dry_run"]
OPEN_STATUSES = frozenset(JOURNAL_OPEN_STATUSES)
"""Order states that may still fill."""
HALT_KINDS = HALT_ORDER
"""The halt kinds the live actor writes; an unknown one is still shown (a halt must never
be hidden because its kind is new)."""
Network = Literal["testnet", "mainnet", "loopback"]


@dataclass(frozen=True)
class LiveOrder:
    """One state of one order (a line of ``orders.jsonl``, or an open order in health)."""

    client_order_id: str
    """Derived from (actor, bar time, policy version, leg): unique per intended order."""
    symbol: str
    bar_ts: int
    """Open time of the bar whose decision sent it (ms UTC)."""
    version: int | None
    """The policy version that decided it."""
    leg: int | str
    side: Side
    qty: float
    """Requested quantity, base units (positive)."""
    kind: Literal["market", "limit"]
    limit_price: float | None
    reduce_only: bool
    status: OrderStatus
    venue_order_id: str | None
    filled_qty: float
    avg_price: float | None
    """Average fill price (quote), None before the first fill."""
    reason: str
    """Why it was sent, or why it ended (a rejection's message)."""
    sent_ms: int
    ack_ms: int | None
    updated_ms: int


@dataclass(frozen=True)
class LiveFill:
    """One fill (a line of ``fills.jsonl``)."""

    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    commission: float
    commission_asset: str
    at_ms: int
    bar_ts: int
    paper_price: float | None
    """What paper trading filled at on the same bar (None: paper did not trade it)."""
    slippage_bps: float | None
    """Live against paper, basis points, positive when live paid more (bought higher or
    sold lower)."""


@dataclass(frozen=True)
class LiveEquity:
    """The actor's allocation at one bar (a line of ``equity.jsonl``)."""

    ts: int
    """Bar open time (ms UTC)."""
    equity: float
    cash: float
    position_qty: float
    target: float
    """Target position, a fraction of equity (negative: short)."""
    price: float
    paper_equity: float | None
    """Paper trading's equity on the same bar, when the actor tracks it."""
    pnl: float


@dataclass(frozen=True)
class LiveEvent:
    """Something an operator should see (a line of ``events.jsonl``)."""

    at_ms: int
    kind: str
    """E.g. halt, flatten, resume, adopt, mismatch, reconciled, risk, alert, stream_down,
    stream_up, banned, daily_loss."""
    by: str | None
    """Who caused it (a person for operator actions), None for the actor itself."""
    detail: str


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of the last comparison of the exchange's state with the journal."""

    at_ms: int
    ok: bool
    detail: str


@dataclass(frozen=True)
class Latency:
    """Bar close to order acknowledged, milliseconds (None before any order)."""

    p50: float | None
    p99: float | None


@dataclass(frozen=True)
class LiveHealth:
    """A live actor's state now (``health.json``)."""

    actor: str
    symbol: str
    venue: str
    """``binance-spot`` or ``binance-futures`` (shown as written)."""
    market: str
    """``spot`` or ``futures``."""
    network: Network
    """Checked strictly: the page marks MAINNET in red, so an unknown network is an
    error, never shown as if it were a test network."""
    dry_run: bool
    """Orders are journaled, not sent."""
    state: str
    updated_at: float
    """When the actor wrote this (seconds since the epoch)."""
    halted: Halt | None
    position_qty: float | None
    target: float
    equity: float | None
    """The actor's allocation, quote currency."""
    day_pnl: float | None
    price: float | None
    open_orders: tuple[LiveOrder, ...]
    stream_up: bool
    last_reconcile: Reconciliation | None
    order_latency_ms: Latency
    unresolved_faults: tuple[str, ...]


R = TypeVar("R")


def parse_record(cls: type[R], raw: object, source: str) -> R:
    """``raw`` (a parsed JSON object) as a ``cls``; ``DataError`` naming ``source``, the
    field and the rule when a field is missing or has the wrong type."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: a {cls.__name__} record is a JSON object, got "
                        f"{type(raw).__name__}")
    values: dict[str, Any] = {}
    for name, hint in _hints(cls).items():
        if name not in raw:
            raise DataError(f"{source}: field {name!r} is missing")
        try:
            values[name] = _value(raw[name], hint, f"{source}: field {name!r}")
        except _MismatchError:
            raise DataError(f"{source}: field {name!r} must be {_describe(hint)}, got "
                            f"{_shown(raw[name])}") from None
    return cls(**values)


class _MismatchError(Exception):
    pass


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The field types of a record class, resolved once."""
    if cls not in _HINTS:
        hints = get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _value(value: object, hint: Any, source: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _value(value, option, source)
            except _MismatchError:
                continue
        raise _MismatchError
    if origin is Literal:
        if isinstance(value, str) and value in get_args(hint):
            return value
        raise _MismatchError
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list):
            raise _MismatchError
        if _is_record(item):
            return tuple(parse_record(item, v, f"{source} item {i}")
                         for i, v in enumerate(value))
        return tuple(_value(v, item, source) for v in value)
    if hint is type(None):
        if value is None:
            return None
        raise _MismatchError
    if _is_record(hint):
        if isinstance(value, dict):
            return parse_record(hint, value, source)
        raise _MismatchError
    if hint is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # JSON true is not a number here
        raise _MismatchError
    if hint is float and isinstance(value, int | float):
        return float(value)
    if hint is int and isinstance(value, int):
        return value
    if hint is int and isinstance(value, float) and math.isfinite(value) \
            and value.is_integer():  # 1.7e12 written as a float is still a time
        return int(value)
    if hint is str and isinstance(value, str):
        return value
    raise _MismatchError


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    if _is_record(hint):
        return f"an object ({hint.__name__})"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, str(hint))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
