"""The synthetic planted-signal markets are seeded, valid, and really exploitable."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import synthetic_source
from raytrade.envs.synthetic import (
    cost_band,
    net_log_growth,
    planted_market,
    regime_filter_position,
)
from raytrade.envs.validation import first_broken_rule


@pytest.mark.parametrize("kind", ["regime", "mean_reversion"])
def test_same_seed_same_market_and_bars_pass_validation(kind: str) -> None:
    a = planted_market(5000, kind=kind, seed=11)
    b = planted_market(5000, kind=kind, seed=11)
    c = planted_market(5000, kind=kind, seed=12)
    np.testing.assert_array_equal(a.bars.ohlcv(), b.bars.ohlcv())
    assert not np.array_equal(a.bars.close, c.bars.close)
    assert first_broken_rule(a.bars.ts, a.bars.ohlcv(), a.bars.interval_ms) is None


@pytest.mark.parametrize("kind", ["regime", "mean_reversion"])
def test_oracle_earns_what_the_docstring_promises(kind: str) -> None:
    m = planted_market(50_000, kind=kind, seed=3)
    nxt = np.log(m.bars.close[1:] / m.bars.close[:-1])
    oracle = m.oracle_position[:-1] * nxt  # decided at close t, earns bar t + 1
    flat = 0.0
    buy_hold = nxt.mean()
    assert oracle.mean() > 5 * abs(buy_hold) and oracle.mean() > flat
    if kind == "regime":
        assert oracle.mean() == pytest.approx(0.0006 * (2 * 0.995 - 1), rel=0.25)
        assert 0.002 < np.mean(np.diff(m.regime) != 0) < 0.01  # persistent regimes
    # t-statistic of the oracle's edge: far from luck
    assert oracle.mean() / (oracle.std() / np.sqrt(len(oracle))) > 10


def test_unknown_kind_and_bad_parameters_are_rejected() -> None:
    with pytest.raises(ConfigError):
        planted_market(100, kind="sine")
    with pytest.raises(ConfigError):
        planted_market(100, p_stay=1.0)


def test_causal_filter_uses_only_the_past_and_gets_most_of_the_oracle() -> None:
    m = planted_market(50_000, seed=3)
    causal = m.causal_position()
    nxt = np.log(m.bars.close[1:] / m.bars.close[:-1])
    filt, oracle = (causal[:-1] * nxt).sum(), (m.oracle_position[:-1] * nxt).sum()
    assert 0.6 * oracle < filt < oracle  # most of the oracle, never all of it
    # causal: the decision at bar t is the same when the future is cut off
    returns = np.diff(np.log(m.bars.close), prepend=np.log(m.bars.open[0]))
    head = regime_filter_position(returns[:20_000], m.drift, m.vol, m.p_stay)
    np.testing.assert_array_equal(head, causal[:20_000])
    # mean reversion's oracle is causal already
    mr = planted_market(1000, kind="mean_reversion", seed=3)
    np.testing.assert_array_equal(mr.causal_position(), mr.oracle_position)


def test_randomwalk_has_no_drift_the_regime_vol_and_a_flat_oracle_and_filter() -> None:
    walk = planted_market(200_000, kind="randomwalk", seed=5)
    regime = planted_market(200_000, kind="regime", seed=5)
    r = np.diff(np.log(walk.bars.close))
    # zero drift: the mean is within 4 standard errors of 0 (and far below the regime's)
    assert abs(r.mean()) < 4 * r.std() / np.sqrt(len(r))
    assert abs(r.mean()) < 0.05 * regime.drift
    # the same volatility as the regime market's noise (its regimes add drift**2 only)
    assert r.std() == pytest.approx(regime.vol, rel=0.01)
    assert np.diff(np.log(regime.bars.close)).std() == pytest.approx(
        np.hypot(regime.vol, regime.drift), rel=0.01)
    # nothing to know: the oracle and the causal filter stay flat, with or without costs
    assert not walk.oracle_position.any() and not walk.regime.any()
    assert not walk.causal_position().any()
    assert not walk.causal_position(switch_cost=0.0012).any()
    assert first_broken_rule(walk.bars.ts, walk.bars.ohlcv(), walk.bars.interval_ms) is None


def test_volume_scale_multiplies_volume_only_and_defaults_keep_the_bars() -> None:
    base = planted_market(3000, seed=2)
    scaled = planted_market(3000, seed=2, volume_scale=1000.0)
    np.testing.assert_array_equal(base.bars.close, scaled.bars.close)
    np.testing.assert_allclose(scaled.bars.volume, 1000.0 * base.bars.volume, rtol=1e-12)
    # the option-free source means the same bars it always did (the regression pins a
    # close computed before the options existed)
    assert synthetic_source("synthetic:regime:seed=1:n=30000").bars.close[-1] == \
        pytest.approx(planted_market(30_000, seed=1).bars.close[-1], rel=0, abs=0)
    np.testing.assert_array_equal(
        synthetic_source("synthetic:regime:seed=1:n=3000:drift=6").bars.close,
        planted_market(3000, seed=1).bars.close)


def test_causal_filter_with_switch_cost_trades_less_and_keeps_more_after_costs() -> None:
    m = planted_market(50_000, seed=3)
    nxt = np.log(m.bars.close[1:] / m.bars.close[:-1])
    returns = np.concatenate([[0.0], nxt])
    cost = 0.0013  # 10 bp fee + 3 bp slippage per unit of equity traded
    blind, aware = m.causal_position(), m.causal_position(switch_cost=cost)
    assert set(np.unique(aware)) <= {-1.0, 0.0, 1.0}
    assert np.count_nonzero(np.diff(aware)) < 0.5 * np.count_nonzero(np.diff(blind))
    assert net_log_growth(aware, returns, cost) > net_log_growth(blind, returns, cost) > 0
    # zero cost is the cost-blind filter exactly
    np.testing.assert_array_equal(m.causal_position(switch_cost=0.0), blind)
    with pytest.raises(ConfigError, match="switch_cost"):
        m.causal_position(switch_cost=-1.0)


def test_weak_drift_regime_does_not_pay_the_costs_for_the_filter() -> None:
    m = synthetic_source("synthetic:regime:seed=1:n=50000:drift=0.3")
    assert m.drift == pytest.approx(0.00003)
    returns = np.diff(np.log(m.bars.close), prepend=np.log(m.bars.open[0]))
    cost = 0.0013
    # the cost-blind filter trades on noise and loses after costs; no band pays, so the
    # cost-aware one never trades
    assert net_log_growth(m.causal_position(), returns, cost) < -1.0
    assert cost_band(m.drift, m.vol, m.p_stay, cost) == np.inf
    assert not m.causal_position(switch_cost=cost).any()
    # at the default drift a band pays, and it is wider the dearer the trade
    assert 0 < cost_band(0.0006, 0.002, 0.995, 0.0005) <= cost_band(0.0006, 0.002, 0.995,
                                                                      0.0013) < np.inf


@pytest.mark.parametrize(("source", "message"), [
    ("synthetic:sine", "unknown kind 'sine'"),
    ("synthetic:regime:seed=x", "cannot read 'seed=x'"),
    ("synthetic:regime:drift=abc", "cannot read 'drift=abc'"),
    ("synthetic:regime:drift=-1", "drift >= 0"),
    ("synthetic:regime:volume=0", "volume > 0"),
    ("synthetic:regime:drift=nan", "cannot read 'drift=nan'"),
    ("synthetic:regime:n=1", "n must be at least 2"),
    ("synthetic:regime:seed=1:seed=2", "'seed' given twice"),
    ("synthetic:randomwalk:drift=1", "drift applies to the regime market only"),
    ("synthetic:regime:speed=3", "cannot read 'speed=3'"),
])
def test_synthetic_source_bad_option_names_the_source_and_rule(source: str,
                                                                message: str) -> None:
    with pytest.raises(ConfigError) as info:
        synthetic_source(source)
    assert repr(source) in str(info.value) and message in str(info.value)
