"""Prepare one symbol for learning: bars at the spec's interval, features, time splits, and
a train-only normalizer.

This is the single recipe the environments, the backtests, the walk-forward and the demo
use, so the normalizer is fitted on exactly the training split everywhere and never sees
later bars, and every one of them gets the same checks:

- **Bar interval.** Files finer than the FeatureSpec's ``base_interval`` (5m files for a
  ``"1h"`` spec) are resampled causally first (``resample.resample``: epoch-aligned
  buckets, incomplete ones dropped), the traded series and the reference alike; a file
  coarser than the spec, or one whose interval does not divide it, is refused.
- **Trading calendar.** The bars carry their market's calendar (``BarTable.calendar``,
  set when they were validated): resampling, alignment with the reference and the
  features skip its closures (weekends, holidays) instead of seeing gaps.
- **Feature warm-up.** The features are NaN until their longest window (or enough swings,
  for the swing-structure features) has passed. A file on which they never complete is
  refused with a ``DataError`` naming the file, the bars it has, the warm-up the spec needs
  and the slowest feature; one on which the warm-up leaves under ``MIN_DATA_SHARE`` of the
  bars gets a :class:`WarmupWarning` saying how many bars are left.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from raytrade.envs.bars import BarTable
from raytrade.envs.errors import DataError, FeatureError, RaytradeWarning
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.pipeline import FeatureMatrix, FeaturePipeline
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.features.warmup import feature_warmup_bars, slowest_feature
from raytrade.envs.intervals import duration_text
from raytrade.envs.resample import align, to_interval
from raytrade.envs.splits import Splits, split_by_fraction

MIN_DATA_SHARE = 0.2
"""Below this share of a file's bars left after the feature warm-up, warn."""


class WarmupWarning(RaytradeWarning):
    """The feature warm-up leaves little of a file (module docstring)."""


@dataclass(frozen=True)
class PreparedDataset:
    """Aligned bars, their features, the splits and the normalizer fitted on ``splits.train``."""

    bars: BarTable
    features: FeatureMatrix
    splits: Splits
    normalizer: Normalizer
    spec: FeatureSpec


def table_name(bars: BarTable) -> str:
    """The file a table came from (its symbol when it has no file), for messages."""
    return bars.source or bars.symbol or "bars"


def at_base_interval(bars: BarTable, spec: FeatureSpec) -> BarTable:
    """``bars`` at the spec's ``base_interval``: as they are, or resampled causally from a
    finer interval that divides it (``resample.to_interval``).

    Raises:
        DataError: the file is coarser than the spec, its interval does not divide the
            spec's, or it holds no complete bar of the spec's interval; names the file and
            both intervals.
    """
    try:
        return to_interval(bars, spec.base_interval)
    except DataError as exc:
        raise DataError(f"{exc} (the FeatureSpec's base_interval is {spec.base_interval})"
                        ) from exc


def _needed_warmup(spec: FeatureSpec) -> str:
    try:
        return f"about {feature_warmup_bars(spec, margin=0.0)} bars"
    except FeatureError:
        return "more bars than the generated test markets hold"


def check_warmup(bars: BarTable, features: FeatureMatrix, spec: FeatureSpec) -> None:
    """Refuse a file on which the features never complete; warn when the warm-up leaves
    under ``MIN_DATA_SHARE`` of it (module docstring). Bars are the spec's base bars."""
    n, warm = len(bars), features.first_valid
    name = table_name(bars)
    slowest, slowest_row = slowest_feature(features)
    if warm >= n:
        raise DataError(
            f"{name}: the features never complete on its {n} {bars.interval} bars "
            f"({duration_text(n * bars.interval_ms)}): the FeatureSpec needs "
            f"{_needed_warmup(spec)} of {spec.base_interval} warm-up on typical markets, "
            f"and '{slowest}' needs the most (still incomplete at the last bar); use a longer "
            "file or lighter features (fewer pivot_levels, shorter higher_timeframes)")
    if n - warm < MIN_DATA_SHARE * n:
        warnings.warn(WarmupWarning(
            f"{name}: the feature warm-up takes {warm} of its {n} {bars.interval} bars "
            f"({duration_text(warm * bars.interval_ms)}), leaving {n - warm} bars "
            f"({100 * (n - warm) / n:.0f} %) to decide on; '{slowest}' needs the most "
            f"(complete from bar {slowest_row}); use a longer file or lighter features"),
            stacklevel=3)


def prepare_features(bars: BarTable, reference: BarTable | None, spec: FeatureSpec, *,
                     train: float = 0.7, validation: float = 0.15, embargo_bars: int = 0
                     ) -> tuple[BarTable, FeatureMatrix, Splits]:
    """Bring the bars to the spec's interval, align them with the reference (when the spec
    uses one), compute features, check the warm-up, split by time.

    The shared first half of every preparation: ``prepare_dataset`` here and the
    environments' ``market.load_markets`` both call it, then fit the normalizer on the
    training rows only (one dataset, or pooled over several, ``fit_normalizer``).
    """
    bars = at_base_interval(bars, spec)
    if spec.reference_symbol:
        if reference is None:
            raise FeatureError(f"{bars.symbol or bars.source}: the FeatureSpec needs "
                               f"{spec.reference_symbol} bars as reference")
        bars, reference = align([bars, at_base_interval(reference, spec)])
    features = FeaturePipeline(spec).compute(bars, reference if spec.reference_symbol else None)
    check_warmup(bars, features, spec)
    splits = split_by_fraction(bars.ts, bars.interval_ms, train=train, validation=validation,
                               embargo_bars=embargo_bars)
    return bars, features, splits


def fit_normalizer(parts: Sequence[tuple[BarTable, FeatureMatrix, Splits]], spec: FeatureSpec
                   ) -> Normalizer:
    """One normalizer on the training rows of every dataset together.

    Raises:
        DataError: fewer than two complete training rows in all: names every file, where
            its warm-up ends and where its training split ends.
    """
    complete = sum(int(np.isfinite(f.values[s.train.start:s.train.stop]).all(axis=1).sum())
                   for _, f, s in parts)
    if complete < 2:
        where = "; ".join(f"{table_name(b)}: warm-up ends at bar {f.first_valid}, the "
                          f"training split at bar {s.train.stop}" for b, f, s in parts)
        raise DataError(f"cannot fit a normalizer on {complete} complete training rows "
                        f"({where}): use more data, a larger train fraction or lighter "
                        "features (fewer pivot_levels, shorter higher_timeframes)")
    return Normalizer.fit_pooled([(f, s.train.start, s.train.stop) for _, f, s in parts], spec)


def prepare_dataset(bars: BarTable, *, reference: BarTable | None = None,
                    spec: FeatureSpec | None = None, train: float = 0.7,
                    validation: float = 0.15, embargo_bars: int = 0) -> PreparedDataset:
    """Bring ``bars`` to the spec's interval, align them with ``reference`` (when the spec
    uses one), compute features, split by time and fit the normalizer on the training rows
    only."""
    spec = spec or FeatureSpec()
    if reference is None and bars.symbol == spec.reference_symbol:
        reference = bars
    bars, features, splits = prepare_features(bars, reference, spec, train=train,
                                              validation=validation,
                                              embargo_bars=embargo_bars)
    normalizer = fit_normalizer([(bars, features, splits)], spec)
    return PreparedDataset(bars=bars, features=features, splits=splits, normalizer=normalizer,
                           spec=spec)
