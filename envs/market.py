"""Market data prepared for the environments: normalized features and execution inputs.

``load_markets`` turns data sources into :class:`MarketData`: bars are loaded and
validated, brought to the FeatureSpec's ``base_interval`` (resampled from finer files),
aligned with the reference asset, turned into features by the shared pipeline, checked
for warm-up, split by time, and normalized with statistics pooled over the *training*
splits only (all in ``dataset.py``). The episode range is then restricted to the requested
split (features before it are still computed from real history, which is causal and
avoids losing the window to warm-up); a split the warm-up leaves under
``dataset.MIN_DATA_SHARE`` of gets a ``WarmupWarning``.

Sources are file paths, glob patterns, ``"sample:SYMBOL"`` for the bundled data,
``"backtesting:NAME"`` for the real bars shipped inside the installed ``backtesting``
package (``EURUSD``: 5000 hourly EURUSD bars, 2017-04-19 to 2018-02-07 UTC, with forex
weekends and holidays; read in place, never copied), or
``"synthetic:KIND[:seed=S][:n=N][:drift=BPS][:volume=X]"`` for a planted-signal market
(``synthetic.py``, options in :func:`synthetic_source`), which has no reference asset
(use a FeatureSpec with ``reference_symbol=None``).

Every source is read under the env's trading calendar (``EnvConfig.calendar``,
``envs/calendar.py``): a file's steps across the calendar's closures are accepted, and a
synthetic market, generated around the clock, keeps only the bars the calendar expects.
Results are cached per process in two layers: the bars, features and splits of a set of
sources are prepared once, normalized once per normalizer, and every split is then a view
of the same arrays; many envs on one runner, and the evaluation and the publisher in the
driver, share one copy.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.util
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import BarTable, FloatArray, IntArray
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.costs import CostModel, cost_inputs
from raytrade.envs.dataset import MIN_DATA_SHARE, WarmupWarning, fit_normalizer, prepare_features
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.pipeline import FeatureMatrix
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.io import load_bars
from raytrade.envs.sample import sample_path
from raytrade.envs.splits import Splits
from raytrade.envs.synthetic import DEFAULT_DRIFT, KINDS, SyntheticMarket, planted_market

SPLITS = ("train", "validation", "test", "all")
M_OPEN, M_CLOSE, M_QUOTE_VOLUME, M_SIGMA = range(4)


@dataclass(frozen=True)
class MarketData:
    """One symbol, ready for episodes.

    Attributes:
        name: symbol (or source) name.
        ts: bar open times (ms UTC), the whole series.
        z: float32 ``[T, F]`` normalized features (NaN during warm-up).
        market: float64 ``[4, T]``: open, close, quote volume, volatility (``M_*`` rows).
        first: first bar index at which a decision may be taken (its window is complete
            and it lies in the split).
        last: last decision index (its fill bar ``last + 1`` still lies in the split).
        split: which split the episode range covers.
        splits: the train / validation / test bar ranges of the whole series.
        first_valid: first bar whose features are complete (the warm-up before it).
        source: the file (or ``synthetic:`` source) the bars came from, for messages.
    """

    name: str
    ts: IntArray
    z: npt.NDArray[np.float32]
    market: FloatArray
    first: int
    last: int
    split: str
    splits: Splits
    first_valid: int
    source: str = ""

    @property
    def n_decisions(self) -> int:
        """Decisions available in the episode range."""
        return self.last - self.first + 1


def load_source(src: str, calendar: TradingCalendar = ALWAYS) -> BarTable:
    """Bars of one resolved source under ``calendar``: a file, or a ``synthetic:`` market
    (generated around the clock; with a calendar that closes, the bars inside closures are
    left out, so it trades like that market)."""
    if not src.startswith("synthetic:"):
        return load_bars(src, calendar=calendar)
    return synthetic_source(src).bars.in_sessions(calendar)


BACKTESTING_PACKAGE = "backtesting"


def backtesting_path(name: str) -> Path:
    """The CSV ``NAME`` (``EURUSD``, ``GOOG``, ``BTCUSD``) shipped inside the installed
    ``backtesting`` package's ``test`` folder, read in place (the package is AGPL: its data
    is never copied into this repository).

    Raises:
        ConfigError: the package is not installed, or has no such file (names the ones
            it has).
    """
    spec = importlib.util.find_spec(BACKTESTING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"source 'backtesting:{name}' reads the bars shipped in the "
                          f"'{BACKTESTING_PACKAGE}' package, which is not installed "
                          "(pip install 'raytrade[forex]', or pip install "
                          f"{BACKTESTING_PACKAGE})")
    folder = Path(next(iter(spec.submodule_search_locations))) / "test"
    path = folder / f"{name}.csv"
    if not name or not path.is_file():
        have = sorted(p.stem for p in folder.glob("*.csv"))
        raise ConfigError(f"source 'backtesting:{name}': the '{BACKTESTING_PACKAGE}' package "
                          f"has no {name or '(empty name)'}.csv; it ships {', '.join(have)}")
    return path


SYNTHETIC_FORMAT = ("synthetic:KIND[:seed=S][:n=N][:drift=BPS][:volume=X] (KIND: "
                    + ", ".join(KINDS) + ")")
"""The grammar of a ``synthetic:`` source, for error messages and docs."""


def synthetic_source(src: str) -> SyntheticMarket:
    """The planted-signal market (bars and oracle) of a ``synthetic:`` source.

    Options, each at most once: ``seed`` (int, default 0), ``n`` (bars, int >= 2, default
    20,000), ``drift`` (the regimes' per-bar log drift in basis points, a number >= 0,
    default 6 = 0.0006; only for ``regime``) and ``volume`` (multiplier of the bar
    volumes, > 0, default 1; see ``synthetic.py``). Without options a source means the
    same bars it always did.
    """
    parts = src.split(":")
    kind = parts[1] if len(parts) > 1 and parts[1] else "regime"
    if kind not in KINDS:
        raise ConfigError(f"bad synthetic source {src!r}: unknown kind {kind!r}; expected "
                          f"{SYNTHETIC_FORMAT}")
    ints: dict[str, int] = {}
    floats: dict[str, float] = {}
    for part in parts[2:]:
        key, eq, value = part.partition("=")
        if key in ints or key in floats:
            raise ConfigError(f"bad synthetic source {src!r}: {key!r} given twice")
        if key in ("seed", "n") and eq and value.isdigit():
            ints[key] = int(value)
        elif key in ("drift", "volume") and eq and _is_number(value):
            floats[key] = float(value)
        else:
            raise ConfigError(f"bad synthetic source {src!r}: cannot read {part!r}; "
                              f"expected {SYNTHETIC_FORMAT}")
    if ints.get("n", 2) < 2:
        raise ConfigError(f"bad synthetic source {src!r}: n must be at least 2")
    if "drift" in floats and kind != "regime":
        raise ConfigError(f"bad synthetic source {src!r}: drift applies to the regime "
                          f"market only")
    if floats.get("drift", 0.0) < 0 or floats.get("volume", 1.0) <= 0:
        raise ConfigError(f"bad synthetic source {src!r}: need drift >= 0 (bp per bar) "
                          f"and volume > 0 (a multiplier)")
    drift = floats["drift"] / 1e4 if "drift" in floats else DEFAULT_DRIFT
    return planted_market(ints.get("n", 20_000), kind=kind, seed=ints.get("seed", 0),
                          drift=drift, volume_scale=floats.get("volume", 1.0))


def _is_number(text: str) -> bool:
    """A finite decimal number (``"0.5"``, ``"3"``, ``"1e-1"``)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def resolve_sources(sources: tuple[str, ...]) -> list[str]:
    """Expand globs, ``sample:`` and ``backtesting:`` names into file paths (sorted within
    each glob)."""
    out: list[str] = []
    for src in sources:
        if src.startswith("synthetic:"):
            out.append(src)
        elif src.startswith("sample:"):
            out.append(str(sample_path(src.split(":", 1)[1])))
        elif src.startswith(BACKTESTING_PACKAGE + ":"):
            out.append(str(backtesting_path(src.split(":", 1)[1])))
        elif any(ch in src for ch in "*?["):
            matches = sorted(glob.glob(src))
            if not matches:
                raise DataError(f"no file matches {src!r}")
            out.extend(matches)
        else:
            out.append(src)
    if not out:
        raise ConfigError("no data sources given")
    return out


def _reference_for(tables: list[BarTable], spec: FeatureSpec, reference: str | None,
                   calendar: TradingCalendar = ALWAYS) -> BarTable | None:
    if not spec.reference_symbol:
        return None
    if reference:
        return load_bars(resolve_sources((reference,))[0], calendar=calendar)
    for t in tables:
        if t.symbol == spec.reference_symbol:
            return t
    try:
        return load_bars(sample_path(spec.reference_symbol), calendar=calendar)
    except DataError as exc:
        raise DataError(f"the FeatureSpec needs {spec.reference_symbol} bars: pass "
                        f"reference=PATH or include its file in the sources") from exc


@functools.lru_cache(maxsize=8)
def _prepared(sources: tuple[str, ...], reference: str | None, spec_json: str, train: float,
              validation: float, sigma_span: int, calendar: TradingCalendar = ALWAYS
              ) -> tuple[tuple[BarTable, FeatureMatrix, Splits, FloatArray, FloatArray], ...]:
    """Bars, raw features, splits and cost inputs of every source: the expensive part,
    done once per process for every split and normalizer that reads the same data."""
    spec = FeatureSpec.from_json(spec_json)
    costs = CostModel(sigma_span=sigma_span)
    tables = [load_source(p, calendar) for p in resolve_sources(sources)]
    ref = _reference_for(tables, spec, reference, calendar)
    out = []
    for table in tables:
        bars, features, splits = prepare_features(table, ref, spec, train=train,
                                                  validation=validation)
        qv, sigma = cost_inputs(bars, costs)
        out.append((bars, features, splits, qv, sigma))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _normalized(sources: tuple[str, ...], reference: str | None, spec_json: str,
                train: float, validation: float, sigma_span: int,
                normalizer_json: str | None, calendar: TradingCalendar = ALWAYS
                ) -> tuple[tuple[MarketData, ...], Normalizer]:
    """Every source normalized (``split="all"`` ranges), and the normalizer used."""
    spec = FeatureSpec.from_json(spec_json)
    prepared = _prepared(sources, reference, spec_json, train, validation, sigma_span,
                         calendar)
    if normalizer_json is None:
        normalizer = fit_normalizer([(b, f, s) for b, f, s, _, _ in prepared], spec)
    else:
        normalizer = Normalizer.from_dict(json.loads(normalizer_json))
        normalizer.check_spec(spec)
    markets = []
    for bars, features, splits, qv, sigma in prepared:
        z = np.ascontiguousarray(normalizer.transform(features.values))
        market = np.ascontiguousarray(np.stack([bars.open, bars.close, qv, sigma]))
        z.setflags(write=False)
        market.setflags(write=False)
        markets.append(MarketData(name=bars.symbol or Path(bars.source).name, ts=bars.ts,
                                  z=z, market=market, first=features.first_valid,
                                  last=len(bars) - 2, split="all", splits=splits,
                                  first_valid=features.first_valid, source=bars.source))
    return tuple(markets), normalizer


def restrict(market: MarketData, split: str, window: int) -> MarketData:
    """``market`` with its decision range restricted to ``split`` (``first`` leaves room for
    a complete ``window``, ``last`` for the fill bar); the arrays are shared."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    n = len(market.ts)
    lo, hi = (0, n) if split == "all" else (getattr(market.splits, split).start,
                                            getattr(market.splits, split).stop)
    warm = market.first_valid
    first = max(lo, warm + window - 1)
    last = hi - 2
    if last < first:
        raise DataError(f"{market.name}: the {split} split has no bar with a complete "
                        f"{window}-row window and a next bar ({hi - lo} bars, warm-up ends "
                        f"at {warm}){_of(market)}")
    if split != "all" and first > lo and last - first + 1 < MIN_DATA_SHARE * (hi - lo):
        warnings.warn(WarmupWarning(
            f"{market.name}: the feature warm-up (until bar {first}) takes "
            f"{first - lo} of the {split} split's {hi - lo} bars, leaving "
            f"{last - first + 1} decisions{_of(market)}"), stacklevel=3)
    return dataclasses.replace(market, first=first, last=last, split=split)


def _of(market: MarketData) -> str:
    return f" (file {market.source})" if market.source else ""


def restrict_range(market: MarketData, start_ms: int, end_ms: int) -> MarketData:
    """``market`` with its decisions restricted to bars opening in ``[start_ms, end_ms)``
    (the fill bar of the last decision still inside); the features before ``start_ms``
    are still computed from the history before it. The arrays are shared.

    Raises:
        DataError: no decision bar is left in the range after the feature warm-up.
    """
    lo, hi = (int(i) for i in np.searchsorted(market.ts, [start_ms, end_ms]))
    first, last = max(market.first, lo), min(market.last, hi - 2)
    if last < first:
        raise DataError(f"{market.name}: no decision bar in {start_ms}..{end_ms} ms UTC "
                        f"(bars {lo}..{hi - 1}): the features are complete from bar "
                        f"{market.first_valid}, and a decision needs a complete window and "
                        "a next bar to fill at inside the range")
    return dataclasses.replace(market, first=first, last=last)


def load_markets(sources: Sequence[str] | str, *, spec: FeatureSpec | None = None,
                 split: str = "train", reference: str | None = None, train: float = 0.7,
                 validation: float = 0.15, window: int = 16, costs: CostModel | None = None,
                 normalizer: Normalizer | None = None, calendar: TradingCalendar = ALWAYS
                 ) -> tuple[list[MarketData], Normalizer]:
    """Prepare every source for episodes on ``split``; return the markets and the normalizer.

    The normalizer is fitted on the training splits of all sources together unless one is
    given (for example the one stored in a policy bundle). ``calendar`` is the market's
    trading calendar (``EnvConfig.calendar``): closures in the data are accepted, never
    filled.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    spec = spec or FeatureSpec()
    src = (sources,) if isinstance(sources, str) else tuple(sources)
    norm_json = None if normalizer is None else json.dumps(normalizer.to_dict())
    every, norm = _normalized(src, reference, spec.to_json(), float(train), float(validation),
                              int((costs or CostModel()).sigma_span), norm_json, calendar)
    return [restrict(m, split, window) for m in every], norm
