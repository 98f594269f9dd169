"""The environments' configuration: one frozen dataclass, built once from a dict at the
RLlib boundary; unknown keys are rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raytrade.envs.calendar import TradingCalendar
from raytrade.envs.costs import CostModel
from raytrade.envs.decision import DecisionRule
from raytrade.envs.errors import ConfigError, reject_unknown_fields
from raytrade.envs.rewards import REWARD_CODES
from raytrade.envs.risk import RiskConfig

REWARDS = tuple(REWARD_CODES)


@dataclass(frozen=True)
class EnvConfig:
    """How an episode is played. Windows in bars, money in quote currency."""

    positions: tuple[float, ...] = (-1.0, 0.0, 1.0)
    """Target position of each action, as a fraction of equity (action i -> positions[i])."""
    window: int = 16
    """Feature rows in one observation (the current bar and ``window - 1`` before it)."""
    reward: str = "log_return"
    """One of ``log_return``, ``differential_sharpe``, ``drawdown_penalized``,
    ``turnover_penalty`` (see the TradingEnv docstring)."""
    dsr_eta: float = 0.01
    """Adaptation rate of the differential Sharpe ratio's moving moments, per bar."""
    drawdown_penalty: float = 1.0
    """Weight of each increase in drawdown (fraction) in ``drawdown_penalized``."""
    turnover_penalty: float = 0.001
    """Penalty per unit change of the held target in ``turnover_penalty``."""
    reward_scale: float = 1.0
    """Multiplier on every reward (per-bar log returns are ~1e-3; learners like ~1)."""
    costs: CostModel = field(default_factory=CostModel)
    """Fees, slippage and borrow."""
    risk: RiskConfig = field(default_factory=RiskConfig)
    """Position sizing, drawdown halt, stop-loss."""
    decision: DecisionRule = field(default_factory=DecisionRule)
    """When the greedy wish becomes a trade: switching margin and decision interval
    (``decision.py``); the training env steps from decision bar to decision bar."""
    latency_bars: int = 1
    """Bars between a decision (at a close) and its fill (at an open), >= 1."""
    initial_equity: float = 10_000.0
    """Equity at the start of every episode."""
    max_episode_steps: int | None = 2048
    """Steps before ``truncated``; None plays to the end of the split."""
    random_start: bool = True
    """Start episodes at a random bar (from ``np_random``); False starts at the first."""
    calendar: TradingCalendar = field(default_factory=TradingCalendar)
    """When the market trades (``envs/calendar.py``): 24/7 by default; ``kind = "forex"``
    accepts weekend and holiday closures in the data instead of calling them gaps, sizes
    warm-ups in expected bars, annualizes with the calendar's bars per year and keeps the
    live side from alerting while the market is closed."""

    def __post_init__(self) -> None:
        if len(self.positions) < 2 or len(set(self.positions)) != len(self.positions):
            raise ConfigError(f"EnvConfig.positions needs >= 2 distinct values, got "
                              f"{self.positions}")
        if self.window < 1 or self.latency_bars < 1 or self.initial_equity <= 0:
            raise ConfigError("EnvConfig.window and latency_bars must be >= 1 and "
                              "initial_equity > 0")
        if self.reward not in REWARDS:
            raise ConfigError(f"EnvConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ConfigError("EnvConfig.max_episode_steps must be >= 1 or None")
        if not self.reward_scale > 0:
            raise ConfigError("EnvConfig.reward_scale must be > 0")
        if not 0 < self.dsr_eta < 1:
            raise ConfigError("EnvConfig.dsr_eta must be in (0, 1)")

    def trading_rules(self) -> EnvConfig:
        """This config without its training-only episode settings (``max_episode_steps``,
        ``random_start``): the rules a live trader and a policy swapped into it must share
        (positions, window, costs, risk, decision rule, latency, reward and its parameters,
        equity)."""
        return dataclasses.replace(self, max_episode_steps=None, random_start=False)

    def differences(self, other: EnvConfig) -> list[str]:
        """The fields (``costs.fee_bps``) whose values differ from ``other``'s."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(theirs):
                out.extend(f"{f.name}.{g.name}" for g in dataclasses.fields(mine)
                           if getattr(mine, g.name) != getattr(theirs, g.name))
            elif mine != theirs:
                out.append(f.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvConfig:
        """Build from plain values (nested ``costs``, ``risk``, ``decision`` and
        ``calendar`` dicts allowed)."""
        reject_unknown_fields("EnvConfig", data, (f.name for f in dataclasses.fields(cls)))
        kwargs = dict(data)
        for name, kind in (("costs", CostModel), ("risk", RiskConfig),
                           ("decision", DecisionRule)):
            value = kwargs.get(name)
            if isinstance(value, Mapping):
                try:
                    kwargs[name] = kind(**value)
                except TypeError as exc:
                    raise ConfigError(f"bad EnvConfig.{name}: {exc}") from exc
        if "calendar" in kwargs and not isinstance(kwargs["calendar"], TradingCalendar):
            kwargs["calendar"] = TradingCalendar.from_dict(kwargs["calendar"])
        if "positions" in kwargs:
            kwargs["positions"] = tuple(float(p) for p in kwargs["positions"])
        return cls(**kwargs)
