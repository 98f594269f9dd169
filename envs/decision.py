"""The cost-aware decision rule: written once, carried in the bundle, applied everywhere.

A DQN policy's greedy action is ``argmax_b Q[b]``. Q estimates are noisy, and every change
of position pays fees and slippage at once, so a policy that follows each flicker of its
Q-values churns and loses to costs. :class:`DecisionRule` adds two guards:

- **A switching margin.** From the held action ``h`` (the action whose target is nearest
  the current position) the rule moves to action ``b`` only when its Q advantage pays the
  margin: the chosen action is ``argmax_b (Q[b] - M[h, b])`` with ``M[h, h] = 0`` and
  ``M[h, b] = margin + cost_multiple * switch_cost(h, b)`` otherwise, ties kept at ``h``.
  ``switch_cost`` is the cost of the trade in Q units: ``reward_scale * c * |p_b - p_h|``
  with ``c = (fee_bps + slippage_bps) / 1e4`` (the fixed slippage when the cost model has
  one, else the half spread, the modelled slippage's floor), and ``p`` the target positions
  scaled by ``risk.position_fraction``; the held action is the one whose scaled target is
  nearest the current position. Q is in reward units (``reward_scale`` times the
  discounted sum of per-bar rewards; for ``log_return`` a log return), so the margin is
  "the log growth a switch must promise before it is worth paying for", in the same units.
- **A decision interval.** With ``every_bars = k > 1`` the policy decides only on bars
  whose open time is a multiple of ``k`` bar intervals since the Unix epoch (the same
  epoch-aligned buckets as ``resample.py``: ``k = 12`` on 5 m bars decides at every full
  hour), and holds its target in between. In the training env one step is one decision:
  the held target is played bar by bar (the same fills, costs and risk rules) up to the
  next decision bar and the step's reward is the sum of the per-bar rewards (so ``gamma``
  discounts per decision). The paper trader holds on the bars in between and its online
  transitions sum their rewards the same way.

The rule is a field of :class:`~raytrade.envs.env_config.EnvConfig` (``env.decision``),
so the training env, the evaluation, the backtest, the paper trader and the executor all
read it from the same typed config the bundle manifest carries. Defaults (no margin,
every bar) reproduce the plain greedy policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from raytrade.envs.errors import ConfigError

if TYPE_CHECKING:
    from raytrade.envs.env_config import EnvConfig


@dataclass(frozen=True)
class DecisionRule:
    """When a policy's greedy wish becomes a change of position (``envs/decision.py``)."""

    margin: float = 0.0
    """Q advantage (reward units) a switch must exceed, on top of the cost term."""
    cost_multiple: float = 0.0
    """Multiple of the switch's cost in Q units added to the margin (0: costs ignored; 1:
    the advantage must at least pay the trade's fee and slippage once)."""
    every_bars: int = 1
    """Decide every ``k`` bars (epoch-aligned) and hold in between; 1 = every bar."""

    def __post_init__(self) -> None:
        if not (self.margin >= 0 and np.isfinite(self.margin)):
            raise ConfigError(f"env.decision.margin must be a finite number >= 0, got "
                              f"{self.margin!r}")
        if not (self.cost_multiple >= 0 and np.isfinite(self.cost_multiple)):
            raise ConfigError(f"env.decision.cost_multiple must be a finite number >= 0, got "
                              f"{self.cost_multiple!r}")
        if isinstance(self.every_bars, bool) or not isinstance(self.every_bars, int) \
                or self.every_bars < 1:
            raise ConfigError(f"env.decision.every_bars must be an integer >= 1, got "
                              f"{self.every_bars!r}")

    @property
    def is_plain_greedy(self) -> bool:
        """True when the rule is the plain argmax on every bar."""
        return self.margin == 0 and self.cost_multiple == 0 and self.every_bars == 1


def unit_switch_cost(config: EnvConfig) -> float:
    """The cost of changing the position by 1 (a whole equity's notional) in Q units:
    ``reward_scale * (fee_bps + slippage_bps) / 1e4``, the slippage being the fixed one when
    the cost model has one, else the half spread (the modelled slippage's floor)."""
    costs = config.costs
    slip = costs.fixed_slippage_bps if costs.fixed_slippage_bps is not None \
        else costs.half_spread_bps
    return float(config.reward_scale * (costs.fee_bps + slip) / 1e4)


def target_positions(config: EnvConfig) -> npt.NDArray[np.float64]:
    """Each action's target as the account holds it: ``positions`` scaled by
    ``risk.position_fraction`` (fraction of equity)."""
    out: npt.NDArray[np.float64] = np.asarray(config.positions, dtype=np.float64) \
        * config.risk.position_fraction
    return out


def switch_thresholds(config: EnvConfig) -> npt.NDArray[np.float64]:
    """``M[h, b]``: the Q advantage action ``b`` needs over the held action ``h`` (module
    docstring), zero on the diagonal; shape ``[n_actions, n_actions]``."""
    rule = config.decision
    p = target_positions(config)
    cost = unit_switch_cost(config) * np.abs(p[None, :] - p[:, None])
    out: npt.NDArray[np.float64] = rule.margin + rule.cost_multiple * cost
    np.fill_diagonal(out, 0.0)
    return out


def held_actions(config: EnvConfig, current: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Per row, the held action: the one whose account target (``target_positions``, the
    position fraction applied) is nearest the current position (fraction of equity, as the
    account, the env's ``info["position"]`` and a broker hold it)."""
    p = target_positions(config)
    cur = np.atleast_1d(np.asarray(current, dtype=np.float64))
    out: npt.NDArray[np.int64] = np.abs(cur[:, None] - p[None, :]).argmin(axis=1)
    return out


def choose(q: npt.ArrayLike, held: npt.ArrayLike,
           thresholds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """The rule's action per row of ``q`` ``[B, n]`` given the held actions ``[B]``:
    ``argmax_b (Q[b] - M[h, b])``, a tie with the held action keeping it."""
    qv = np.atleast_2d(np.asarray(q, dtype=np.float64))
    h = np.atleast_1d(np.asarray(held, dtype=np.int64))
    if qv.shape[0] != h.shape[0] or qv.shape[1] != thresholds.shape[0]:
        raise ValueError(f"q {qv.shape} does not match held {h.shape} and thresholds "
                         f"{thresholds.shape}")
    score = qv - thresholds[h]
    best = score.argmax(axis=1)
    rows = np.arange(len(h))
    keep = score[rows, h] >= score[rows, best]
    out: npt.NDArray[np.int64] = np.where(keep, h, best).astype(np.int64)
    return out


def decision_bars(ts_ms: npt.ArrayLike, interval_ms: int, every_bars: int
                  ) -> npt.NDArray[np.bool_]:
    """Per bar open time, whether the policy decides there (epoch-aligned every ``k``)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if every_bars == 1:
        return np.ones(ts.shape, dtype=bool)
    if interval_ms <= 0:
        raise ConfigError("decision_bars needs a positive bar interval")
    out: npt.NDArray[np.bool_] = (ts // interval_ms) % every_bars == 0
    return out


def is_decision_bar(ts_ms: int, interval_ms: int, every_bars: int) -> bool:
    """Whether the bar opening at ``ts_ms`` is a decision bar (see :func:`decision_bars`)."""
    return every_bars == 1 or (int(ts_ms) // interval_ms) % every_bars == 0


def rule_summary(rule: DecisionRule) -> dict[str, Any]:
    """The rule as plain JSON (reports and logs)."""
    return {"margin": rule.margin, "cost_multiple": rule.cost_multiple,
            "every_bars": rule.every_bars}
