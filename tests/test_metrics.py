"""The shared metrics agree with empyrical on real returns; edge cases are NaN, not inf."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest
from raytrade.envs import metrics
from raytrade.envs.bars import BarTable


@pytest.fixture(scope="module")
def real_returns(btc: BarTable) -> np.ndarray:
    return btc.close[1:] / btc.close[:-1] - 1.0


def test_metrics_match_empyrical_on_real_returns(real_returns: np.ndarray) -> None:
    periods = metrics.bars_per_year(300_000)
    assert periods == 105_120
    r = real_returns
    assert metrics.sharpe(r, periods) == pytest.approx(
        empyrical.sharpe_ratio(r, annualization=periods), rel=1e-9)
    assert metrics.sortino(r, periods) == pytest.approx(
        empyrical.sortino_ratio(r, annualization=periods), rel=1e-9)
    equity = np.concatenate([[1.0], np.cumprod(1 + r)])
    assert metrics.max_drawdown(equity) == pytest.approx(empyrical.max_drawdown(r), rel=1e-9)
    assert metrics.annual_return(r, periods) == pytest.approx(
        empyrical.annual_return(r, annualization=periods), rel=1e-9)
    assert metrics.calmar(r, periods) == pytest.approx(
        empyrical.calmar_ratio(r, annualization=periods), rel=1e-9)


def test_drawdown_duration_and_trade_statistics_on_a_known_curve() -> None:
    equity = np.array([100, 110, 105, 100, 108, 111, 111, 109, 115.0])
    assert metrics.max_drawdown(equity) == pytest.approx(100 / 110 - 1)
    assert metrics.max_drawdown_duration(equity) == 3
    position = np.array([0, 1, 1, 0, -1, -1, 0, 1, 1.0])
    pnls = metrics.trade_pnls(equity, position)
    # long from close 0 to close 3 (100 -> 100), short from close 3 to close 6 (100 -> 111)
    np.testing.assert_array_equal(pnls, [0.0, 11.0])
    assert metrics.win_rate(pnls) == 0.5
    assert math.isnan(metrics.profit_factor(pnls))  # no losing trade
    perf = metrics.performance(equity, position, 300_000, traded_notional=500.0, fills=5)
    assert perf.exposure == pytest.approx(6 / 9) and perf.trades == 5
    assert perf.total_return == pytest.approx(0.15)


def test_undefined_ratios_are_nan_not_inf() -> None:
    flat = np.zeros(10)
    assert math.isnan(metrics.sharpe(flat, 365))
    assert math.isnan(metrics.sortino(np.full(10, 0.01), 365))
    assert math.isnan(metrics.calmar(np.full(10, 0.01), 365))
    assert math.isnan(metrics.sharpe(np.zeros(1), 365))
    d = metrics.performance(np.full(5, 100.0), np.zeros(5), 60_000).to_dict()
    assert d["sharpe"] is None and d["max_drawdown"] == 0.0


def test_t_stat_is_the_mean_return_in_standard_errors(real_returns: np.ndarray) -> None:
    r = np.asarray(real_returns, dtype=np.float64)
    expected = r.mean() / (r.std(ddof=1) / math.sqrt(len(r)))
    assert metrics.t_stat(r) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(metrics.t_stat(np.zeros(10))) and math.isnan(metrics.t_stat([0.1]))
    # in a Performance record: the Sharpe ratio scaled by the square root of the years
    equity = 100.0 * np.cumprod(np.r_[1.0, 1.0 + r[:500]])
    perf = metrics.performance(equity, np.ones(501), 3_600_000)
    assert perf.t_stat == pytest.approx(
        perf.sharpe * math.sqrt(500 / metrics.bars_per_year(3_600_000)), rel=1e-9)
