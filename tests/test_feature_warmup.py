"""The warm-up history the live actor fetches covers the real bundled markets."""

from __future__ import annotations

import numpy as np
from raytrade.envs.features.pipeline import FeaturePipeline
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.envs.io import load_bars
from raytrade.envs.resample import align
from raytrade.envs.sample import SYMBOLS, sample_path

from tests.live_setup import experiment


def test_warmup_covers_every_bundled_market() -> None:
    exp = experiment()
    spec, window = exp.features, exp.env.window
    warmup = feature_warmup_bars(spec, window)
    btc = load_bars(sample_path("BTCUSDT"))
    # every bundled sample: BTC, ETH, SOL, BNB, XRP
    files = [str(sample_path(symbol)) for symbol in SYMBOLS]
    assert len(files) == 5
    for path in files:
        bars = load_bars(path)
        bars, ref = align([bars, btc])
        feats = FeaturePipeline(spec).compute(bars, ref)
        # the bar after `warmup` bars of history has a complete, finite observation
        assert warmup < len(feats.values), path
        assert np.isfinite(feats.values[warmup - window + 1:warmup + 1]).all(), path
        assert feats.first_valid + window - 1 <= warmup, path


def test_warmup_grows_with_window_and_margin() -> None:
    spec = experiment().features
    base = feature_warmup_bars(spec, 1, margin=0.0)
    assert feature_warmup_bars(spec, 32, margin=0.0) == base + 31
    assert feature_warmup_bars(spec, 1, margin=0.5) == int(np.ceil(base * 1.5))
