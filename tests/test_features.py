"""The feature pipeline: strict causality, streaming parity, and independent cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.errors import ConfigError, FeatureError
from raytrade.envs.features import FeatureMatrix, FeaturePipeline, FeatureSpec
from raytrade.envs.resample import align, visible_higher

SPEC = FeatureSpec()


@pytest.fixture(scope="module")
def pair(eth: BarTable, btc: BarTable) -> tuple[BarTable, BarTable]:
    a, b = align([eth, btc])
    return a, b


@pytest.fixture(scope="module")
def full(pair: tuple[BarTable, BarTable]) -> FeatureMatrix:
    return FeaturePipeline(SPEC).compute(*pair)


def col(m: FeatureMatrix, name: str) -> np.ndarray:
    return m.column(name).astype(np.float64)


def test_every_feature_is_causal_prefix_equals_full(pair: tuple[BarTable, BarTable],
                                                     full: FeatureMatrix) -> None:
    eth, btc = pair
    rng = np.random.default_rng(7)
    cuts = sorted({int(t) for t in rng.integers(1, len(eth), size=30)} | {1, 2, 5000, 12_001})
    pipe = FeaturePipeline(SPEC)
    for t in cuts:
        part = pipe.compute(eth.slice(0, t), btc.slice(0, t))
        np.testing.assert_array_equal(part.values, full.values[:t],
                                      err_msg=f"features of bars[:{t}] differ")


def test_future_bars_cannot_change_past_features(pair: tuple[BarTable, BarTable],
                                                 full: FeatureMatrix) -> None:
    eth, btc = pair
    t = 15_000
    x = eth.ohlcv()
    x[t:] *= 1.5  # a completely different future
    shocked = BarTable.from_arrays(eth.ts, x, interval_ms=eth.interval_ms, symbol="ETHUSDT")
    other = FeaturePipeline(SPEC).compute(shocked, btc)
    np.testing.assert_array_equal(other.values[:t], full.values[:t])
    assert not np.array_equal(other.values[t:t + 50], full.values[t:t + 50], equal_nan=True)


def test_streaming_bar_by_bar_equals_batch_on_real_data(pair: tuple[BarTable, BarTable],
                                                        full: FeatureMatrix) -> None:
    eth, btc = pair
    state = FeaturePipeline(SPEC).stream()
    rows = np.empty_like(full.values)
    for i in range(len(eth)):
        rows[i] = state.update(eth.bar(i), btc.bar(i))
    np.testing.assert_allclose(rows, full.values, rtol=1e-6, atol=0, equal_nan=True)
    np.testing.assert_array_equal(rows, full.values)  # in fact bit-identical


def test_streaming_in_random_chunks_equals_batch(pair: tuple[BarTable, BarTable],
                                                 full: FeatureMatrix) -> None:
    eth, btc = pair
    state = FeaturePipeline(SPEC).stream()
    rng = np.random.default_rng(3)
    start, parts = 0, []
    while start < len(eth):
        stop = min(len(eth), start + int(rng.integers(1, 700)))
        parts.append(state.update_many(eth.ts[start:stop], eth.ohlcv()[start:stop],
                                       btc.close[start:stop]))
        start = stop
    np.testing.assert_array_equal(np.concatenate(parts), full.values)


@pytest.mark.parametrize("spec", [
    FeatureSpec(reference_symbol=None, pivot_levels=0),
    FeatureSpec(higher_timeframes=(), return_horizons=(2,), pivot_levels=3, smc_level=3),
    FeatureSpec(higher_timeframes=("15m", "30m", "1h"), pivot_levels=1, smc_level=1),
], ids=["no_reference_no_pivots", "no_higher_timeframes", "three_higher_timeframes"])
def test_streaming_bar_by_bar_equals_batch_for_other_specs(pair: tuple[BarTable, BarTable],
                                                           spec: FeatureSpec) -> None:
    eth, btc = pair[0].slice(0, 3000), pair[1].slice(0, 3000)
    ref = btc if spec.reference_symbol else None
    full = FeaturePipeline(spec).compute(eth, ref).values
    state = FeaturePipeline(spec).stream()
    rows = np.stack([state.update(eth.bar(i), None if ref is None else ref.bar(i))
                     for i in range(len(eth))])
    np.testing.assert_array_equal(rows, full)
    assert np.isfinite(full).any(axis=0).all()  # every column compared on real values too


def test_warmup_rows_are_nan_then_all_finite(full: FeatureMatrix) -> None:
    first = full.first_valid
    assert 0 < first < 6000
    assert np.isfinite(full.values[first:]).all()
    assert not np.isfinite(full.values[first - 1]).all()


def _after(a: np.ndarray, b: np.ndarray, start: int, **tol: float) -> None:
    np.testing.assert_allclose(a[start:], b[start:], **tol)


def test_indicators_match_talib_and_pandas(pair: tuple[BarTable, BarTable],
                                           full: FeatureMatrix) -> None:
    eth, btc = pair
    c, h, lo, v = eth.close, eth.high, eth.low, eth.volume
    r = np.log(c[1:] / c[:-1])
    tol = {"rtol": 2e-5, "atol": 2e-6}
    _after(col(full, "rsi_14"), (talib.RSI(c, 14) - 50) / 50, 14, **tol)
    _after(col(full, "atr_14"), talib.ATR(h, lo, c, 14) / c, 14, **tol)
    upper, middle, _ = talib.BBANDS(c, 20, 2.0, 2.0)
    _after(col(full, "bb_z_20"), (c - middle) / ((upper - middle) / 2), 19, rtol=1e-4, atol=1e-4)
    s = pd.Series(c)
    line = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    _after(col(full, "macd"), (line / s).to_numpy(), 25, **tol)
    _after(col(full, "macd_hist"), ((line - signal) / s).to_numpy(), 33, **tol)
    for hz in (1, 3, 12, 48):
        expected = np.full(len(c), np.nan)
        expected[hz:] = np.log(c[hz:] / c[:-hz])
        _after(col(full, f"ret_{hz}"), expected, hz, **tol)
    rv = np.sqrt(pd.Series(r**2).rolling(48).mean().to_numpy())
    _after(col(full, "rvol_48"), np.concatenate([[np.nan], rv]), 48, **tol)
    lv = pd.Series(np.log1p(v))
    vz = (lv - lv.rolling(48).mean()) / lv.rolling(48).std(ddof=0)
    _after(col(full, "vol_z_48"), vz.to_numpy(), 47, rtol=1e-4, atol=1e-4)
    q = np.log(btc.close[1:] / btc.close[:-1])
    corr = pd.Series(r).rolling(48).corr(pd.Series(q)).to_numpy()
    beta = (pd.Series(r).rolling(48).cov(pd.Series(q)) / pd.Series(q).rolling(48).var()).to_numpy()
    _after(col(full, "ref_corr_48"), np.concatenate([[np.nan], corr]), 48, rtol=1e-4, atol=1e-5)
    _after(col(full, "ref_beta_48"), np.concatenate([[np.nan], beta]), 48, rtol=1e-4, atol=1e-5)
    move = c[48:] - c[:-48]
    path = pd.Series(np.abs(np.diff(c))).rolling(48).sum().to_numpy()[47:]
    _after(col(full, "regime_er"), np.concatenate([np.full(48, np.nan), move / path]), 48, **tol)


@pytest.mark.parametrize("tf", ["1h", "4h"])
def test_higher_timeframe_features_use_only_closed_bars(pair: tuple[BarTable, BarTable],
                                                        full: FeatureMatrix, tf: str) -> None:
    eth, _ = pair
    htf, index = visible_higher(eth, tf)
    rsi = (talib.RSI(htf.close, 14) - 50) / 50
    expected = np.where(index >= 0, rsi[np.maximum(index, 0)], np.nan)
    ret1 = np.concatenate([[np.nan], np.log(htf.close[1:] / htf.close[:-1])])
    expected_ret = np.where(index >= 0, ret1[np.maximum(index, 0)], np.nan)
    got = col(full, f"{tf}_rsi_14")
    ok = np.isfinite(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=2e-5, atol=2e-6)
    assert np.isnan(got[~ok]).all()
    ok = np.isfinite(expected_ret)
    np.testing.assert_allclose(col(full, f"{tf}_ret_1")[ok], expected_ret[ok], rtol=2e-5,
                               atol=2e-6)


def _reference_swings(values: np.ndarray, is_high: bool, levels: int) -> list[list[tuple]]:
    """Brute force Williams swings: per level, (price, bar at which it is confirmed)."""
    seq = [(float(x), i) for i, x in enumerate(values)]
    out = []
    for _ in range(levels):
        nxt = []
        for j in range(1, len(seq) - 1):
            a, b, c = seq[j - 1][0], seq[j][0], seq[j + 1][0]
            if (b > a and b > c) if is_high else (b < a and b < c):
                nxt.append((b, seq[j + 1][1]))
        out.append(nxt)
        seq = nxt
    return out


def _last_known(swings: list[tuple], n: int, back: int) -> np.ndarray:
    out = np.full(n, np.nan)
    for k in range(back, len(swings)):
        out[swings[k][1]:] = swings[k - back][0]
    return out


def test_williams_pivots_match_brute_force_reference(pair: tuple[BarTable, BarTable],
                                                     full: FeatureMatrix) -> None:
    eth, _ = pair
    n, c = len(eth), eth.close
    highs = _reference_swings(eth.high, True, 5)
    lows = _reference_swings(eth.low, False, 5)
    for level in range(1, 6):
        h1 = _last_known(highs[level - 1], n, 0)
        l1 = _last_known(lows[level - 1], n, 0)
        h0 = _last_known(highs[level - 1], n, 1)
        l0 = _last_known(lows[level - 1], n, 1)
        np.testing.assert_allclose(col(full, f"piv{level}_dist_high"), np.log(c / h1),
                                   atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(col(full, f"piv{level}_dist_low"), np.log(c / l1),
                                   atol=1e-6, equal_nan=True)
        trend = np.where((h1 > h0) & (l1 > l0), 1.0, np.where((h1 < h0) & (l1 < l0), -1.0, 0.0))
        trend[np.isnan(h0) | np.isnan(l0)] = np.nan
        np.testing.assert_array_equal(col(full, f"piv{level}_trend"), trend)
        assert len(highs[level - 1]) > 2, f"level {level} has too few swings to test"


def _bars(rows: list[tuple[float, float, float, float]]) -> BarTable:
    ts = 1_735_689_600_000 + 300_000 * np.arange(len(rows))
    x = np.array([[o, h, lo, c, 1.0] for o, h, lo, c in rows])
    return BarTable.from_arrays(ts, x, interval_ms=300_000, symbol="TEST")


def test_smc_break_of_structure_choch_order_block_and_engulfing() -> None:
    spec = FeatureSpec(pivot_levels=1, smc_level=1, ob_lookback=5, higher_timeframes=(),
                       reference_symbol=None)
    bars = _bars([(10, 10.5, 9.5, 10), (10, 11.5, 9.8, 11), (11, 12.5, 10.8, 12),
                  (12, 12.2, 10.5, 10.8), (10.8, 11.0, 10.0, 10.2), (10.2, 11.5, 10.1, 11.4),
                  (11.4, 12.9, 11.3, 12.8), (12.8, 12.85, 9.5, 9.6)])
    m = FeaturePipeline(spec).compute(bars)
    bos, choch, side = col(m, "smc_bos"), col(m, "smc_choch"), col(m, "smc_ob_side")
    assert bos.tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert choch.tolist() == [0, 0, 0, 0, 0, 0, 0, -1]
    assert col(m, "smc_dir").tolist() == [0, 0, 0, 0, 0, 0, 1, -1]
    assert side.tolist() == [0, 0, 0, 0, 0, 0, 1, -1]
    assert col(m, "smc_ob_dist")[6] == pytest.approx(math.log(12.8 / 10.5), rel=1e-6)
    assert col(m, "smc_ob_dist")[7] == pytest.approx(math.log(9.6 / 12.1), rel=1e-6)
    assert col(m, "smc_engulf")[7] == pytest.approx(-3.2 / 1.4, rel=1e-6)
    assert col(m, "piv1_dist_high")[6] == pytest.approx(math.log(12.8 / 12.5), rel=1e-6)


def test_smc_flags_only_fire_on_closes_through_swings(full: FeatureMatrix,
                                                      pair: tuple[BarTable, BarTable]) -> None:
    eth, _ = pair
    bos, choch = col(full, "smc_bos"), col(full, "smc_choch")
    fired = (bos != 0) | (choch != 0)
    assert 20 < fired.sum() < len(eth) // 10
    assert not ((bos != 0) & (choch != 0)).any()
    direction = col(full, "smc_dir")
    np.testing.assert_array_equal(direction[fired], (bos + choch)[fired])
    # a CHoCH always reverses the direction the previous bar had
    idx = np.flatnonzero(choch != 0)
    assert np.all(direction[idx - 1] == -choch[idx])


def test_regime_one_hot_is_exclusive(full: FeatureMatrix) -> None:
    onehot = full.values[full.first_valid:, [full.names.index(n) for n in
                                              ("regime_trending", "regime_ranging",
                                               "regime_volatile")]]
    np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)
    assert (onehot.mean(axis=0) > 0.01).all()


def test_streaming_rejects_gap_duplicate_and_bad_bar_leaving_state_unchanged(
        pair: tuple[BarTable, BarTable]) -> None:
    eth, btc = pair
    state = FeaturePipeline(SPEC).stream()
    state.update_many(eth.ts[:500], eth.ohlcv()[:500], btc.close[:500])
    before = state.copy()
    nxt, ref = eth.bar(500), btc.bar(500)
    bad_bars = [
        (eth.bar(501), btc.bar(501), "does not follow"),
        (eth.bar(499), btc.bar(499), "does not follow"),
        (Bar(nxt.ts, nxt.open, nxt.high, nxt.low, float("nan"), nxt.volume), ref, "finite"),
        (Bar(nxt.ts, nxt.open, nxt.open * 0.9, nxt.low, nxt.close, nxt.volume), ref, "high"),
        (Bar(nxt.ts, -1.0, nxt.high, nxt.low, nxt.close, nxt.volume), ref, "positive"),
        (Bar(nxt.ts, nxt.open, nxt.high, nxt.low, nxt.close, -1.0), ref, "volume"),
        (nxt, Bar(ref.ts + 300_000, 1, 1, 1, 1, 1), "reference"),
        (nxt, Bar(ref.ts, 1, 1, 1, float("inf"), 1), "reference close"),
    ]
    for bar, reference, message in bad_bars:
        with pytest.raises(FeatureError, match=message):
            state.update(bar, reference)
    with pytest.raises(FeatureError, match="reference"):
        state.update(nxt)
    np.testing.assert_array_equal(state.update(nxt, ref), before.update(nxt, ref))


def test_compute_rejects_unaligned_reference_and_wrong_interval(
        pair: tuple[BarTable, BarTable]) -> None:
    eth, btc = pair
    pipe = FeaturePipeline(SPEC)
    with pytest.raises(FeatureError, match="not aligned"):
        pipe.compute(eth.slice(0, 100), btc.slice(1, 101))
    with pytest.raises(FeatureError, match="needs reference"):
        pipe.compute(eth.slice(0, 100))
    with pytest.raises(FeatureError, match="expects 1m"):
        FeaturePipeline(FeatureSpec(base_interval="1m")).compute(eth, btc)


def test_spec_hash_is_stable_and_json_round_trips() -> None:
    spec = FeatureSpec()
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_json(spec.to_json()).hash == spec.hash
    assert FeatureSpec(rsi_period=21).hash != spec.hash
    assert spec.n_features == len(spec.names) == len(set(spec.names)) == 73
    assert spec.names[:5] == ("ret_1", "ret_3", "ret_12", "ret_48", "rvol_48")


@pytest.mark.parametrize("kwargs", [
    {"rsi_period": 1}, {"macd_fast": 30}, {"return_horizons": (3, 1)},
    {"higher_timeframes": ("7m",)}, {"higher_timeframes": ("1w",)}, {"pivot_levels": 6},
    {"smc_level": 4, "pivot_levels": 3}, {"version": 99}, {"base_interval": "5 minutes"},
])
def test_spec_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FeatureSpec(**kwargs)


def test_spec_rejects_unknown_fields_and_mismatched_names() -> None:
    data = FeatureSpec().to_dict()
    with pytest.raises(ConfigError, match="unknown"):
        FeatureSpec.from_dict({**data, "lookahead": True})
    with pytest.raises(ConfigError, match="names"):
        FeatureSpec.from_dict({**data, "names": ["ret_1"]})
