"""Risk rules applied to every requested target: the same code for env, backtest and live.

At each decision (a bar's close) the agent's requested target goes through, in order:
1. drawdown halt: once marked equity is ``max_drawdown`` or more below its peak, the
   account is halted for good and every target is 0 (the env then terminates);
2. stop-loss: if the open position's return since entry is ``-stop_loss`` or worse, the
   target is forced to 0 and the next ``cooldown_bars`` decisions are forced flat too;
3. sizing: the target is scaled by ``position_fraction`` and capped so that its notional
   (``|target| * equity``) stays within ``max_notional``. The cap is evaluated when the
   request changes; an unchanged request keeps the target already held, so a drifting
   equity never causes rebalancing trades.
The stop is evaluated on the close and filled at the next open, so a gap can lose more
than ``stop_loss``; that is the honest behaviour of a stop placed on closed bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from raytrade.envs.accounting import (
    COOLDOWN,
    DECIDED,
    EQUITY,
    HALTED,
    REQUESTED,
    STOPS,
    UNITS,
    drawdown,
    unrealized_return,
)
from raytrade.envs.bars import FloatArray
from raytrade.envs.errors import ConfigError

R_FRACTION, R_MAX_NOTIONAL, R_MAX_DD, R_STOP, R_COOLDOWN = range(5)
EVENT_NONE, EVENT_STOP, EVENT_HALT = 0, 1, 2


@dataclass(frozen=True)
class RiskConfig:
    """Risk limits. Fractions are of equity; 0 or inf turns a limit off where stated."""

    position_fraction: float = 1.0
    """Multiplier on every target (1 = the action's position as is)."""
    max_notional: float = math.inf
    """Largest position notional in quote currency (inf = no cap)."""
    max_drawdown: float = 0.5
    """Drawdown from peak equity that halts trading for good (1 = never)."""
    stop_loss: float = 0.0
    """Loss of the open position since entry that forces it flat (0 = off)."""
    cooldown_bars: int = 0
    """Decisions forced flat after a stop-loss fired."""

    def __post_init__(self) -> None:
        if not self.position_fraction > 0 or not self.max_notional > 0:
            raise ConfigError("RiskConfig.position_fraction and max_notional must be > 0")
        if not 0 < self.max_drawdown <= 1:
            raise ConfigError("RiskConfig.max_drawdown must be in (0, 1]")
        if not 0 <= self.stop_loss < 1 or self.cooldown_bars < 0:
            raise ConfigError("RiskConfig.stop_loss must be in [0, 1), cooldown_bars >= 0")

    def params(self) -> FloatArray:
        """The float64 parameter vector the kernels read."""
        return np.array([self.position_fraction, self.max_notional, self.max_drawdown,
                         self.stop_loss, float(self.cooldown_bars)])


@numba.njit(cache=True)
def risk_target(acct: FloatArray, requested: float, close: float,
                rp: FloatArray) -> tuple[float, int]:  # pragma: no cover - compiled
    """The target allowed for ``requested`` at this close, and the risk event that fired.

    Compares with the last *decided* target, not the filled one: with a latency above one
    bar the fill lags the decision, and an unchanged request must keep its decision.
    """
    target = 0.0
    event = EVENT_NONE
    acct_requested = acct[REQUESTED]
    acct[REQUESTED] = requested
    if acct[HALTED] == 0.0 and drawdown(acct) >= rp[R_MAX_DD]:
        acct[HALTED] = 1.0
        event = EVENT_HALT
    elif acct[HALTED] != 0.0:
        pass
    elif rp[R_STOP] > 0.0 and acct[UNITS] != 0.0 and \
            unrealized_return(acct, close) <= -rp[R_STOP]:
        acct[COOLDOWN] = rp[R_COOLDOWN]
        acct[STOPS] += 1.0
        event = EVENT_STOP
    elif acct[COOLDOWN] > 0.0:
        acct[COOLDOWN] -= 1.0
    elif requested == acct_requested and acct[DECIDED] != 0.0:
        target = acct[DECIDED]
    else:
        target = requested * rp[R_FRACTION]
        equity = acct[EQUITY]
        if equity > 0.0 and abs(target) * equity > rp[R_MAX_NOTIONAL]:
            cap = rp[R_MAX_NOTIONAL] / equity
            target = cap if target > 0.0 else -cap
    acct[DECIDED] = target
    return target, event
