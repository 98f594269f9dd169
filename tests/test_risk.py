"""Risk rules: stop-loss with cooldown, drawdown halt, sizing and notional cap."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.envs.costs import CostModel
from raytrade.envs.errors import ConfigError
from raytrade.envs.execution import simulate
from raytrade.envs.risk import EVENT_HALT, EVENT_STOP, RiskConfig

from tests.test_accounting import make_bars


def test_stop_loss_goes_flat_and_cools_down() -> None:
    returns = [0.0, 0.0, -0.02, -0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    bars = make_bars(returns, [0.0] * 10)
    risk = RiskConfig(stop_loss=0.03, cooldown_bars=3, max_drawdown=1.0)
    r = simulate(bars, np.ones(10), costs=CostModel.free(), risk=risk)
    stop_at = int(np.flatnonzero(r.events == EVENT_STOP)[0])
    # position -3.96% at the close of bar 3: stop decided there, flat from bar 4's open
    assert stop_at == 4 and r.units[4] == 0
    # three decisions forced flat (closes 4, 5, 6), re-entered at the open of bar 8
    assert np.all(r.units[4:8] == 0) and r.units[8] > 0


def test_drawdown_halt_is_final() -> None:
    returns = [0.0, -0.1, -0.1, 0.05, 0.05, 0.05, 0.05]
    bars = make_bars(returns, [0.0] * 7)
    r = simulate(bars, np.ones(7), costs=CostModel.free(),
                 risk=RiskConfig(max_drawdown=0.15))
    halt_at = int(np.flatnonzero(r.events == EVENT_HALT)[0])
    assert halt_at == 3 and np.all(r.units[3:] == 0)


def test_position_fraction_and_notional_cap_size_the_target() -> None:
    bars = make_bars([0.01] * 20, [0.0] * 20)
    half = simulate(bars, np.ones(20), costs=CostModel.free(),
                    risk=RiskConfig(position_fraction=0.5, max_drawdown=1.0))
    assert half.target[5] == 0.5
    capped = simulate(bars, np.ones(20), costs=CostModel.free(),
                      risk=RiskConfig(max_notional=2_500.0, max_drawdown=1.0))
    assert capped.target[1] == pytest.approx(0.25)
    assert capped.trades[-1] == 1  # equity drifts, yet no rebalancing trades


@pytest.mark.parametrize("kwargs", [{"max_drawdown": 0}, {"stop_loss": 1.5},
                                    {"position_fraction": 0}, {"cooldown_bars": -1}])
def test_bad_risk_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RiskConfig(**kwargs)
