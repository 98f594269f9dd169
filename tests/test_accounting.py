"""Accounting and costs: properties that must hold for any prices and any targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raytrade.envs.accounting import (
    CASH,
    EQUITY,
    UNITS,
    execute_target,
    mark_close,
    new_account,
)
from raytrade.envs.bars import BarTable
from raytrade.envs.costs import CostModel, slippage_fraction
from raytrade.envs.errors import ConfigError
from raytrade.envs.execution import simulate

POSITION_LISTS = [(-1.0, 0.0, 1.0), (-1.0, -0.5, 0.0, 0.5, 1.0), (0.0, 1.0, 2.0)]


def make_bars(returns: list[float], gaps: list[float], volume: float = 50.0) -> BarTable:
    """Bars whose close follows ``returns`` and whose open gaps by ``gaps`` from the last close."""
    n = len(returns)
    close = 100.0 * np.exp(np.cumsum(returns))
    prev = np.concatenate([[100.0], close[:-1]])
    open_ = prev * np.exp(np.asarray(gaps[:n]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    ts = 1_735_689_600_000 + 300_000 * np.arange(n)
    x = np.column_stack([open_, high, low, close, np.full(n, volume)])
    return BarTable.from_arrays(ts, x, interval_ms=300_000, symbol="TEST")


market = st.integers(5, 60).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n),
    st.lists(st.floats(-0.01, 0.01), min_size=n, max_size=n),
    st.lists(st.integers(0, 4), min_size=n, max_size=n),
    st.sampled_from(POSITION_LISTS)))


@settings(max_examples=150, deadline=None)
@given(market)
def test_equity_is_conserved_with_zero_costs(case) -> None:  # type: ignore[no-untyped-def]
    returns, gaps, actions, positions = case
    bars = make_bars(returns, gaps)
    targets = np.array([positions[a % len(positions)] for a in actions])
    r = simulate(bars, targets, costs=CostModel.free())
    # equity only changes by the mark-to-market of units held: trading creates no value
    for t in range(1, len(bars)):
        held_overnight = r.units[t - 1]
        held_in_bar = r.units[t]
        expected = r.equity[t - 1] + held_overnight * (bars.open[t] - bars.close[t - 1]) \
            + held_in_bar * (bars.close[t] - bars.open[t])
        assert r.equity[t] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert r.fees[-1] == r.slippage[-1] == r.borrow[-1] == 0.0
    # every unit of PnL is either realized or still open
    np.testing.assert_allclose(r.equity - 10_000.0, r.realized + r.unrealized,
                               rtol=1e-9, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(market, st.floats(0, 30), st.floats(0, 3))
def test_pnl_decomposes_into_realized_unrealized_and_costs(case, fee, borrow) -> None:  # type: ignore[no-untyped-def]
    returns, gaps, actions, positions = case
    bars = make_bars(returns, gaps, volume=5.0)
    targets = np.array([positions[a % len(positions)] for a in actions])
    r = simulate(bars, targets, costs=CostModel(fee_bps=fee, borrow_bps_per_bar=borrow))
    # slippage is already inside fill prices, hence inside realized and unrealized PnL
    np.testing.assert_allclose(r.equity - 10_000.0,
                               r.realized + r.unrealized - r.fees - r.borrow,
                               rtol=1e-9, atol=1e-7)


@settings(max_examples=150, deadline=None)
@given(market, st.floats(0, 30), st.floats(0, 5), st.floats(0, 2))
def test_costs_are_never_negative(case, fee, spread, borrow) -> None:  # type: ignore[no-untyped-def]
    returns, gaps, actions, positions = case
    bars = make_bars(returns, gaps, volume=5.0)
    targets = np.array([positions[a % len(positions)] for a in actions])
    costs = CostModel(fee_bps=fee, half_spread_bps=spread, borrow_bps_per_bar=borrow)
    r = simulate(bars, targets, costs=costs)
    for series in (r.fees, r.slippage, r.borrow, r.turnover):
        assert series[0] >= 0 and np.all(np.diff(series) >= 0)
    # fees are exactly the fee rate on the notional traded at fill prices
    assert r.fees[-1] == pytest.approx(fee / 1e4 * r.turnover[-1], rel=1e-9, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05), min_size=5, max_size=50), st.floats(0, 5))
def test_flat_agent_equity_never_changes(returns, borrow) -> None:  # type: ignore[no-untyped-def]
    bars = make_bars(returns, [0.0] * len(returns))
    r = simulate(bars, np.zeros(len(bars)), costs=CostModel(borrow_bps_per_bar=borrow))
    assert np.all(r.equity == 10_000.0) and r.trades[-1] == 0 and r.borrow[-1] == 0


@pytest.mark.parametrize("target", [1.0, -1.0, 0.5, 2.0])
@pytest.mark.parametrize("fixed", [None, 0.0, 7.0])
def test_round_trip_costs_exactly_fees_and_slippage(target: float, fixed: float | None) -> None:
    bars = make_bars([0.0] * 12, [0.0] * 12)  # a perfectly flat price
    targets = np.zeros(12)
    targets[2:6] = target
    costs = CostModel(fee_bps=10, fixed_slippage_bps=fixed)
    r = simulate(bars, targets, costs=costs)
    assert r.trades[-1] == 2
    lost = 10_000.0 - r.equity[-1]
    assert lost == pytest.approx(r.fees[-1] + r.slippage[-1], rel=1e-12)
    assert lost > 0


def test_fill_is_at_next_open_never_the_signal_close() -> None:
    bars = make_bars([0.01, 0.02, -0.03, 0.01], [0.0, 0.005, -0.004, 0.002])
    r = simulate(bars, np.array([1.0, 1.0, 1.0, 1.0]), costs=CostModel.free())
    units = 10_000.0 / bars.open[1]
    assert r.units[1] == pytest.approx(units)
    assert r.equity[1] == pytest.approx(units * bars.close[1])


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_latency_delays_the_fill_by_that_many_bars(latency: int) -> None:
    bars = make_bars([0.001] * 10, [0.0] * 10)
    targets = np.zeros(10)
    targets[3:] = 1.0
    r = simulate(bars, targets, costs=CostModel.free(), latency_bars=latency)
    first_held = int(np.flatnonzero(r.units != 0)[0])
    assert first_held == 3 + latency
    with pytest.raises(ConfigError, match="latency"):
        simulate(bars, targets, latency_bars=0)


def test_borrow_is_charged_on_shorts_and_leverage_only() -> None:
    bars = make_bars([0.0] * 6, [0.0] * 6)
    costs = CostModel(fee_bps=0, fixed_slippage_bps=0, borrow_bps_per_bar=10)
    # held from bar 1's open: borrow charged at closes 1..5 at 10 bp per bar
    expected = {
        1.0: 0.0,                              # fully paid long: nothing borrowed
        -1.0: 5 * 10.0,                        # 10_000 short notional, price flat
        2.0: 10_000.0 * (1.001 ** 5 - 1.0),    # 10_000 borrowed cash, interest compounds
    }
    for target, total in expected.items():
        r = simulate(bars, np.full(6, target), costs=costs)
        assert r.borrow[-1] == pytest.approx(total, rel=1e-9, abs=1e-9)


def test_slippage_model_grows_with_size_and_volatility_and_is_capped() -> None:
    cp = CostModel(half_spread_bps=1, impact_coef=1, max_slippage_bps=50).params()
    small = slippage_fraction(1_000, 1e6, 0.002, cp)
    big = slippage_fraction(100_000, 1e6, 0.002, cp)
    wild = slippage_fraction(100_000, 1e6, 0.02, cp)
    assert 1e-4 < small < big < wild <= 50e-4
    assert slippage_fraction(1e12, 1.0, 0.5, cp) == pytest.approx(50e-4)
    assert slippage_fraction(1_000, 0.0, 0.002, cp) == pytest.approx(50e-4)  # no volume


def test_order_on_bad_price_or_ruined_account_does_nothing() -> None:
    cp = CostModel().params()
    acct = new_account(1_000.0)
    for price in (0.0, float("nan"), -5.0, float("inf")):
        assert execute_target(acct, 1.0, price, 1e6, 0.01, cp) == 0.0
        assert acct[UNITS] == 0.0 and acct[CASH] == 1_000.0
    acct[CASH] = -10.0
    assert execute_target(acct, 1.0, 100.0, 1e6, 0.01, cp) == 0.0
    mark_close(acct, 100.0, cp)
    assert acct[EQUITY] == -10.0


def test_bad_cost_parameters_are_rejected() -> None:
    with pytest.raises(ConfigError):
        CostModel(fee_bps=-1)
    with pytest.raises(ConfigError):
        CostModel(fixed_slippage_bps=float("nan"))


@pytest.mark.parametrize("latency", [1, 2, 5])
def test_latency_shifts_the_held_target_without_extra_trades(btc: BarTable,
                                                             latency: int) -> None:
    bars = btc.slice(0, 3000)
    rng = np.random.default_rng(latency)
    requested = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=300), 10)
    r = simulate(bars, requested, costs=CostModel.free(), latency_bars=latency)
    changes = int(np.sum(np.diff(np.concatenate([[0.0], requested[:-latency]])) != 0))
    assert r.trades[-1] == changes
    # the target held after close t is the one requested at close t - latency
    np.testing.assert_array_equal(r.target[latency:], requested[:-latency])
