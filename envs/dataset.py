"""Prepare one symbol for learning: features, time splits, and a train-only normalizer.

This is the single recipe the environments, the backtests and the demo use, so the
normalizer is fitted on exactly the training split everywhere and never sees later bars.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrade.envs.bars import BarTable
from raytrade.envs.errors import FeatureError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.pipeline import FeatureMatrix, FeaturePipeline
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.resample import align
from raytrade.envs.splits import Splits, split_by_fraction


@dataclass(frozen=True)
class PreparedDataset:
    """Aligned bars, their features, the splits and the normalizer fitted on ``splits.train``."""

    bars: BarTable
    features: FeatureMatrix
    splits: Splits
    normalizer: Normalizer
    spec: FeatureSpec


def prepare_features(bars: BarTable, reference: BarTable | None, spec: FeatureSpec, *,
                     train: float = 0.7, validation: float = 0.15, embargo_bars: int = 0
                     ) -> tuple[BarTable, FeatureMatrix, Splits]:
    """Align with the reference (when the spec uses one), compute features, split by time.

    The shared first half of every preparation: ``prepare_dataset`` here and the
    environments' ``market.load_markets`` both call it, then fit the normalizer on the
    training rows only (one dataset, or pooled over several).
    """
    if spec.reference_symbol:
        if reference is None:
            raise FeatureError(f"{bars.symbol or bars.source}: the FeatureSpec needs "
                               f"{spec.reference_symbol} bars as reference")
        bars, reference = align([bars, reference])
    features = FeaturePipeline(spec).compute(bars, reference if spec.reference_symbol else None)
    splits = split_by_fraction(bars.ts, bars.interval_ms, train=train, validation=validation,
                               embargo_bars=embargo_bars)
    return bars, features, splits


def prepare_dataset(bars: BarTable, *, reference: BarTable | None = None,
                    spec: FeatureSpec | None = None, train: float = 0.7,
                    validation: float = 0.15, embargo_bars: int = 0) -> PreparedDataset:
    """Align ``bars`` with ``reference`` (when the spec uses one), compute features, split
    by time and fit the normalizer on the training rows only."""
    spec = spec or FeatureSpec()
    if reference is None and bars.symbol == spec.reference_symbol:
        reference = bars
    bars, features, splits = prepare_features(bars, reference, spec, train=train,
                                              validation=validation,
                                              embargo_bars=embargo_bars)
    normalizer = Normalizer.fit(features, spec, start=splits.train.start, stop=splits.train.stop)
    return PreparedDataset(bars=bars, features=features, splits=splits, normalizer=normalizer,
                           spec=spec)
