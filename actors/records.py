"""The records one bar produces on the live side: fills and rejections (the broker),
the decision (the trader), the journal's bar step and the session's step outcome.

Plain frozen data shared by the broker, the trader, the journal and the session, in a
module of their own so that none of those imports another for its types (the journal
does not import the broker). Times are bar open times in ms UTC; money in quote
currency; quantities in base units (signed: + buy); targets and positions are fractions
of equity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raytrade.envs.bars import Bar


@dataclass(frozen=True)
class Fill:
    """One filled market order."""

    fill_id: str
    """``<account>:<symbol>:<fill bar open ms>``: a replay after a crash recreates it."""
    symbol: str
    bar_ts: int
    target: float
    qty: float
    price: float
    notional: float
    fee: float
    slippage: float


@dataclass(frozen=True)
class Rejection:
    """An order the broker refused, and why; the account did not change."""

    symbol: str
    bar_ts: int
    target: float
    reason: str


@dataclass(frozen=True)
class DecisionRecord:
    """What the trader decided at one close (``version`` None: no policy, held)."""

    version: int | None
    action: int | None
    requested: float
    decided: float
    risk_event: int
    greedy_action: int | None
    q_values: tuple[float, ...]
    confidence: float | None
    held: bool
    reason: str
    feature_hash: str


@dataclass(frozen=True)
class BarStep:
    """Everything one bar produced, written to the journal in one transaction."""

    symbol: str
    bar: Bar
    ref_close: float | None
    kind: str
    result: Fill | Rejection | None
    equity: float | None
    position: float | None
    version: int | None
    broker_state: dict[str, Any] | None
    decision: DecisionRecord | None


@dataclass(frozen=True)
class StepOutcome:
    """What one bar did, for the session (alerts, metrics, online learning)."""

    bar: Bar
    kind: str
    decision: DecisionRecord | None
    result: Fill | Rejection | None
    equity: float | None
    drawdown: float | None
    halted: bool
    recorded: bool
