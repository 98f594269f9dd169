"""The normalizer is fitted on the training split only and survives a JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.dataset import prepare_dataset
from raytrade.envs.errors import ConfigError
from raytrade.envs.features import FeatureSpec, Normalizer


@pytest.fixture(scope="module")
def prepared(eth: BarTable, btc: BarTable):  # type: ignore[no-untyped-def]
    return prepare_dataset(eth, reference=btc)


def test_normalizer_ignores_everything_after_the_training_split(prepared, eth: BarTable,
                                                                btc: BarTable) -> None:
    stop = prepared.splits.train.stop
    x = eth.ohlcv()
    x[stop:] *= 3.0  # rewrite validation and test: the normalizer must not move
    other = BarTable.from_arrays(eth.ts, x, interval_ms=eth.interval_ms, symbol=eth.symbol)
    again = prepare_dataset(other, reference=btc)
    np.testing.assert_array_equal(again.normalizer.mean, prepared.normalizer.mean)
    np.testing.assert_array_equal(again.normalizer.std, prepared.normalizer.std)
    assert prepared.normalizer.fit_end_ts < int(eth.ts[prepared.splits.validation.start])


def test_normalized_training_rows_are_standardized(prepared) -> None:
    ds = prepared
    z = ds.normalizer.transform(ds.features.values[ds.splits.train.start:ds.splits.train.stop])
    z = z[np.isfinite(z).all(axis=1)]
    continuous = [i for i, n in enumerate(ds.spec.names) if not ds.spec.is_discrete(n)]
    unclipped = np.abs(z[:, continuous]).max(axis=0) < ds.normalizer.clip
    assert np.allclose(z[:, continuous].mean(axis=0)[unclipped], 0, atol=1e-3)
    discrete = [i for i, n in enumerate(ds.spec.names) if ds.spec.is_discrete(n)]
    raw = ds.features.values[ds.splits.train.start:ds.splits.train.stop]
    raw = raw[np.isfinite(raw).all(axis=1)]
    np.testing.assert_array_equal(z[:, discrete], raw[:, discrete])


def test_normalizer_json_round_trip(prepared, tmp_path: Path) -> None:
    path = tmp_path / "norm.json"
    prepared.normalizer.save(path)
    loaded = Normalizer.load(path)
    x = prepared.features.values[-100:]
    np.testing.assert_array_equal(loaded.transform(x), prepared.normalizer.transform(x))
    loaded.check_spec(prepared.spec)
    with pytest.raises(ConfigError, match="another FeatureSpec"):
        loaded.check_spec(FeatureSpec(rsi_period=21))


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("mean"),
    lambda d: d.update(std=[0.0] * len(d["std"])),
    lambda d: d.update(mean=d["mean"][:-1]),
    lambda d: d.update(format="other/9"),
])
def test_malformed_normalizer_json_is_rejected(prepared, tmp_path: Path, mutate) -> None:
    data = prepared.normalizer.to_dict()
    mutate(data)
    path = tmp_path / "n.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError):
        Normalizer.load(path)


def test_not_json_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "n.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Normalizer.load(tmp_path / "n.json")
