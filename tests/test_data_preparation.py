"""The shared data preparation (``envs/dataset.py``) on real bundled bars: files finer than
the FeatureSpec's interval are resampled causally (the 1h bars training sees are
``resample`` of the 5m file, bar for bar), coarser or non-dividing files are refused, and a
feature warm-up that eats a file is a warning, or an error when it never completes, naming
the file, the bars and the slowest feature."""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from raytrade.algos.experiment import ExperimentConfig
from raytrade.envs.bars import BarTable
from raytrade.envs.dataset import WarmupWarning, prepare_features
from raytrade.envs.errors import DataError
from raytrade.envs.features.pipeline import FeaturePipeline
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.io import load_bars
from raytrade.envs.market import M_CLOSE, M_OPEN, load_markets
from raytrade.envs.resample import align, resample

from tests.live_setup import write_csv

HOUR = 3_600_000
LIGHT_1H = FeatureSpec(base_interval="1h", higher_timeframes=("4h",), pivot_levels=2,
                       smc_level=1)
"""Hourly features light enough for the bundled 90 days (2,160 hourly bars)."""


def _files(eth: BarTable, btc: BarTable, n: int, folder: Path) -> tuple[Path, Path]:
    return write_csv(eth.slice(0, n), folder), write_csv(btc.slice(0, n), folder)


def test_load_markets_on_5m_files_with_a_1h_spec_trains_on_resample_of_the_file(
        eth: BarTable, btc: BarTable) -> None:
    markets, _ = load_markets(["sample:ETHUSDT", "sample:BTCUSDT"], spec=LIGHT_1H,
                              split="all", window=8)
    eth_1h, btc_1h = align([resample(eth, "1h"), resample(btc, "1h")])
    by_name = {m.name: m for m in markets}
    for market, want in ((by_name["ETHUSDT"], eth_1h), (by_name["BTCUSDT"], btc_1h)):
        np.testing.assert_array_equal(market.ts, want.ts)
        np.testing.assert_array_equal(market.market[M_OPEN], want.open)
        np.testing.assert_array_equal(market.market[M_CLOSE], want.close)
        assert set(np.diff(market.ts)) == {HOUR}
    # the features are those of the hourly bars (reference resampled the same way)
    first = FeaturePipeline(LIGHT_1H).compute(eth_1h, btc_1h).first_valid
    assert by_name["ETHUSDT"].first_valid == first


def test_a_1h_experiment_file_builds_hourly_markets_with_warmup_in_hours(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    text = (files("raytrade.algos.experiments") / "eth_btc_5m.toml").read_text()
    path = tmp_path / "eth_btc_1h.toml"
    path.write_text(text + '\n[features]\nbase_interval = "1h"\nhigher_timeframes = ["4h"]\n'
                    "pivot_levels = 2\nsmc_level = 1\n")
    exp = ExperimentConfig.load(path)
    assert exp.features == LIGHT_1H
    spec = exp.fit_env_spec()
    eth_1h, btc_1h = align([resample(eth, "1h"), resample(btc, "1h")])
    warm = FeaturePipeline(LIGHT_1H).compute(eth_1h, btc_1h).first_valid
    for split in ("train", "validation", "test"):
        for market in spec.markets(split):
            assert set(np.diff(market.ts)) == {HOUR}
            assert len(market.ts) == len(eth_1h)
            # warm-up counted in hourly bars: the 288-bar long volatility window alone
            # is 12 days of hours, not one day of 5m bars
            assert market.first_valid == warm >= LIGHT_1H.regime_vol_long
            assert market.ts[market.first_valid] - market.ts[0] == warm * HOUR
    assert spec.normalizer.fit_end_ts < spec.markets("validation")[0].ts[
        spec.markets("validation")[0].splits.validation.start]


def test_prepare_features_refuses_a_file_coarser_than_the_spec(
        tmp_path: Path, eth: BarTable) -> None:
    hourly = resample(eth.slice(0, 3000), "1h")
    path = tmp_path / "ETHUSDT_1h.csv"
    hourly.to_frame().to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"{path}: its 1h bars cannot make 5m bars.*"
                                        r"base_interval is 5m"):
        prepare_features(load_bars(path), None, FeatureSpec(reference_symbol=None))


def test_prepare_features_refuses_an_interval_that_is_not_a_multiple(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    eth_csv, _ = _files(eth, btc, 3000, tmp_path)
    spec = FeatureSpec(base_interval="12m", higher_timeframes=(), reference_symbol=None)
    with pytest.raises(DataError, match=rf"{eth_csv}: its 5m bars cannot make 12m bars"):
        prepare_features(load_bars(eth_csv), None, spec)


def test_prepare_features_warns_when_the_warmup_eats_most_of_the_file(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    eth_csv, btc_csv = _files(eth, btc, 5000, tmp_path)
    spec = FeatureSpec()
    with pytest.warns(WarmupWarning) as caught:
        _, features, _ = prepare_features(load_bars(eth_csv), load_bars(btc_csv), spec)
    warm = features.first_valid
    message = str(caught[0].message)
    assert str(eth_csv) in message
    assert f"takes {warm} of its 5000 5m bars" in message
    assert f"leaving {5000 - warm} bars" in message
    assert "'piv5_" in message  # the swing structure waits longest on this path


def test_prepare_features_on_a_file_too_short_to_warm_up_names_file_and_feature(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    eth_csv, btc_csv = _files(eth, btc, 3000, tmp_path)
    with pytest.raises(DataError) as err:
        prepare_features(load_bars(eth_csv), load_bars(btc_csv), FeatureSpec())
    message = str(err.value)
    assert message.startswith(f"{eth_csv}: the features never complete on its 3000 5m bars")
    assert "bars of 5m warm-up" in message and "'piv5_" in message


def test_load_markets_warmup_past_the_training_split_names_the_files(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    # 5,000 bars: the warm-up (about 4,080 bars here) ends after the training split
    # (3,500 bars), so no normalizer can be fitted: say which file and where
    eth_csv, btc_csv = _files(eth, btc, 5000, tmp_path)
    warm = FeaturePipeline(FeatureSpec()).compute(
        *align([eth.slice(0, 5000), btc.slice(0, 5000)])).first_valid
    with pytest.warns(WarmupWarning), pytest.raises(DataError) as err:
        load_markets([str(eth_csv)], reference=str(btc_csv))
    assert (f"{eth_csv}: warm-up ends at bar {warm}, the training split at bar 3500"
            in str(err.value))


def test_prepare_features_on_a_long_file_neither_warns_nor_resamples(
        eth: BarTable, btc: BarTable, recwarn: pytest.WarningsRecorder) -> None:
    bars, _, _ = prepare_features(eth, btc, dataclasses.replace(FeatureSpec()))
    assert bars.interval == "5m" and len(bars) == len(eth)
    assert not [w for w in recwarn if issubclass(w.category, WarmupWarning)]


def test_walkforward_fold_of_a_1h_policy_on_5m_files_plays_hourly_bars(
        tmp_path: Path, eth: BarTable, btc: BarTable) -> None:
    # the walk-forward writes each fold's 5m bars and tests on them through load_markets:
    # a 1h policy must play the hourly bars built from them
    from raytrade.algos.export import random_bundle
    from raytrade.algos.policy import Policy
    from raytrade.algos.walkforward import _play

    from tests.live_setup import experiment

    exp = dataclasses.replace(experiment(), features=LIGHT_1H)
    policy = Policy(random_bundle(exp, seed=1, spec=exp.fit_env_spec()), 1)
    start_ms = (int(eth.ts[0]) // HOUR + 1) * HOUR + 30 * 24 * HOUR  # on the hour
    end_ms = start_ms + 10 * 24 * HOUR
    played = _play(policy, [eth], btc, tmp_path, start_ms, end_ms, seed=0, momentum_bars=12)
    ts = np.asarray(played["ETHUSDT"]["policy"]["curves"]["ts"])
    assert set(np.diff(ts)) == {HOUR}
    assert ts[0] >= start_ms and ts[-1] < end_ms
    assert played["ETHUSDT"]["policy"]["bars"] == 10 * 24 - 1
