"""The synthetic planted-signal markets are seeded, valid, and really exploitable."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.envs.errors import ConfigError
from raytrade.envs.synthetic import planted_market, regime_filter_position
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
