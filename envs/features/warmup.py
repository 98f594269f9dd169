"""How many bars of history to fetch before a FeatureSpec's first complete observation.

The live actor fetches this much history over REST before its first decision. Most
features have a fixed warm-up (their window lengths), but the swing-structure features
(``pivot_levels``) are defined only once enough swings of each level have happened, which
depends on the market: on the bundled 5m data the first all-finite row is 3,187 (BTC)
to 6,348 (BNB). So the count is *measured*: the pipeline runs on generated markets, both
random walks and trending regimes (``planted_market``, fixed seeds), and the latest first
all-finite row among them, plus the observation window and a margin, is the answer.

The count is in bars the market's calendar expects (``envs/calendar.py``): with a forex
calendar the generated markets keep only session bars, so the higher-timeframe buckets cut
short by closures are measured too, and whoever turns the count into a span of time (the
live REST backfill) must use ``TradingCalendar.start_for_bars``, which skips closures,
never ``count * interval``.

It is an estimate, not a guarantee: on an unusual market the features can still be NaN
after it, and then the trader holds ("features warming up") until they are finite, which
costs time, never a trade on incomplete data. Cached per spec.

``slowest_feature`` names the feature that waits longest on real bars; the data
preparation (``envs/dataset.py``) uses both when a file is too short for the spec.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import FeatureError
from raytrade.envs.features.pipeline import FeatureMatrix, FeaturePipeline
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.synthetic import planted_market

_MAX_BARS = 1 << 20
# (drift per bar, seed): random walks and trending regimes, which form swings more slowly
_MARKETS = ((0.0, 0), (0.0, 1), (0.0, 2), (0.0006, 0), (0.0006, 1), (0.0006, 2))


def feature_warmup_bars(spec: FeatureSpec, window: int = 1, margin: float = 0.25,
                        calendar: TradingCalendar = ALWAYS) -> int:
    """Bars of history to fetch before the first bar that should decide.

    Args:
        spec: the feature set.
        window: observation rows (the policy manifest's ``env.window``).
        margin: extra fraction on top of the measured count; rounded up.
        calendar: the market's trading calendar (the policy manifest's
            ``env.calendar``); the count is of bars it expects.

    Raises:
        FeatureError: some generated market has no finite row within 2**20 bars.
    """
    first = _latest_first_valid(spec.to_json(), calendar)
    return int(np.ceil((first + max(window, 1) - 1) * (1.0 + margin)))


@lru_cache(maxsize=32)
def _latest_first_valid(spec_json: str, calendar: TradingCalendar = ALWAYS) -> int:
    spec = FeatureSpec.from_json(spec_json)
    pipeline = FeaturePipeline(spec)
    latest = 0
    for drift, seed in _MARKETS:
        n = 16_384
        while True:
            if n > _MAX_BARS:
                raise FeatureError(f"FeatureSpec {spec.hash[:12]}: no row of features is "
                                   f"finite within {_MAX_BARS} generated bars")
            bars = planted_market(n, seed=seed, symbol="WARMUP", drift=drift,
                                  interval=spec.base_interval).bars.in_sessions(calendar)
            ref = planted_market(
                n, seed=seed + 100, symbol=spec.reference_symbol or "REF", drift=drift,
                interval=spec.base_interval
            ).bars.in_sessions(calendar) if spec.reference_symbol else None
            first = pipeline.compute(bars, ref).first_valid
            if first < len(bars):
                latest = max(latest, first)
                break
            n *= 4
    return latest


def slowest_feature(features: FeatureMatrix) -> tuple[str, int]:
    """The feature whose warm-up is longest on these bars, and its first finite row.

    The row is ``len(features.values)`` when that feature is never finite (its warm-up
    never completes on this price path: swing-structure features wait for enough swings).
    Names the culprit when a file is too short for the FeatureSpec.
    """
    values = features.values
    finite = np.isfinite(values)
    first = np.where(finite.any(axis=0), finite.argmax(axis=0), len(values))
    col = int(np.argmax(first))
    return features.names[col], int(first[col])
