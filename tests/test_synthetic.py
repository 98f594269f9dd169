"""The synthetic planted-signal markets are seeded, valid, and really exploitable."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.envs.errors import ConfigError
from raytrade.envs.synthetic import planted_market
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
