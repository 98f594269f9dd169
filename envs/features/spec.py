"""FeatureSpec: which features, with which parameters, in which order, under which version.

Its hash (sha256 of canonical JSON) goes into every policy bundle, so a policy is only ever
served features computed exactly as in training. Change ``PIPELINE_VERSION`` whenever the
meaning of any feature changes.

Feature families and their column names (``h`` = horizon, ``n`` = window, in bars of the
timeframe they are computed on):

- Per timeframe (base, and each of ``higher_timeframes`` with a ``"1h_"``-style prefix):
  ``ret_h`` log return over h bars; ``rvol_n`` realized volatility (root mean square of
  1-bar log returns); ``rsi_n`` Wilder RSI rescaled to [-1, 1]; ``macd`` and ``macd_hist``
  (EMA difference and its distance to the signal EMA, divided by the close); ``atr_n``
  Wilder ATR divided by the close; ``bb_z_n`` Bollinger z-score; ``vol_z_n`` z-score of
  log(1 + volume); ``candle_body``, ``candle_upper``, ``candle_lower`` body and wicks as
  fractions of the bar range.
- Reference asset (``reference_symbol``): ``ref_ret_h``, ``ref_corr_n`` and ``ref_beta_n``
  of 1-bar log returns against the reference.
- Williams market structure, levels 1..``pivot_levels``: ``pivL_dist_high`` and
  ``pivL_dist_low`` (log distance of the close to the last confirmed swing high and low),
  ``pivL_trend`` (+1 higher highs and higher lows, -1 lower both, 0 mixed) and
  ``pivL_strength`` (mean log change of the last two swing highs and lows).
- Smart-money concepts on the level-``smc_level`` structure: ``smc_bos`` and ``smc_choch``
  (+1/-1 on the bar that breaks structure), ``smc_dir`` (current structure direction),
  ``smc_ob_side`` and ``smc_ob_dist`` (the active order block: side, and log distance of
  the close to its middle), ``smc_engulf`` (signed engulfing strength).
- Market regime: ``regime_er`` (signed Kaufman efficiency ratio), ``regime_vol_ratio``
  (log of short over long realized volatility), and one-hot ``regime_trending``,
  ``regime_ranging``, ``regime_volatile``.

Warm-up rows (not enough history yet) are NaN; see ``FeatureMatrix.first_valid``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raytrade.envs.errors import ConfigError, reject_unknown_fields
from raytrade.envs.intervals import interval_to_ms

PIPELINE_VERSION = 1

TF_SCALAR_COLUMNS = ("rvol", "rsi", "macd", "macd_hist", "atr", "bb_z", "vol_z",
                     "candle_body", "candle_upper", "candle_lower")
SMC_COLUMNS = ("smc_bos", "smc_choch", "smc_dir", "smc_ob_side", "smc_ob_dist", "smc_engulf")
REGIME_COLUMNS = ("regime_er", "regime_vol_ratio", "regime_trending", "regime_ranging",
                  "regime_volatile")
DISCRETE_SUFFIXES = ("_trend", "smc_bos", "smc_choch", "smc_dir", "smc_ob_side",
                     "regime_trending", "regime_ranging", "regime_volatile")


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered feature set and every parameter that shapes it. Windows are in bars."""

    base_interval: str = "5m"
    """Interval of the bars the pipeline consumes, e.g. ``"5m"``; finer files (5m for
    ``"1h"``) are resampled to it causally before features, coarser ones refused."""
    return_horizons: tuple[int, ...] = (1, 3, 12, 48)
    """Log-return horizons on the base timeframe, in bars."""
    vol_window: int = 48
    """Realized-volatility window, in bars."""
    rsi_period: int = 14
    """Wilder RSI period, in bars."""
    macd_fast: int = 12
    """MACD fast EMA span, in bars."""
    macd_slow: int = 26
    """MACD slow EMA span, in bars."""
    macd_signal: int = 9
    """MACD signal EMA span, in bars."""
    atr_period: int = 14
    """Wilder ATR period, in bars."""
    bb_window: int = 20
    """Bollinger window (population standard deviation), in bars."""
    volume_window: int = 48
    """Volume z-score window, in bars."""
    higher_timeframes: tuple[str, ...] = ("1h", "4h")
    """Higher timeframes computed from the base bars, visible only once closed."""
    htf_return_horizons: tuple[int, ...] = (1, 3)
    """Log-return horizons on each higher timeframe, in bars of that timeframe."""
    reference_symbol: str | None = "BTCUSDT"
    """Reference asset whose aligned close feeds ``ref_*`` features; None turns them off."""
    reference_horizons: tuple[int, ...] = (1, 12)
    """Reference log-return horizons, in base bars."""
    corr_window: int = 48
    """Window of the return correlation and beta against the reference, in bars."""
    pivot_levels: int = 5
    """Williams market-structure levels (1 = short-term swings), 0 to 5."""
    smc_level: int = 2
    """Structure level whose swings define breaks of structure and order blocks."""
    ob_lookback: int = 20
    """How many bars back to look for the order-block candle, in bars."""
    regime_window: int = 48
    """Efficiency-ratio window, in bars."""
    regime_vol_short: int = 12
    """Short realized-volatility window for the regime, in bars."""
    regime_vol_long: int = 288
    """Long realized-volatility window for the regime, in bars."""
    er_threshold: float = 0.3
    """|efficiency ratio| at or above which the market counts as trending."""
    vol_ratio_threshold: float = 1.5
    """Short/long volatility ratio at or above which a non-trending market is volatile."""
    version: int = PIPELINE_VERSION
    """Pipeline semantics version; part of the hash."""
    names: tuple[str, ...] = field(init=False)
    """Ordered feature names (derived from the parameters)."""

    def __post_init__(self) -> None:
        if self.reference_symbol == "":  # TOML has no null: "" means no reference asset
            object.__setattr__(self, "reference_symbol", None)
        self._check()
        object.__setattr__(self, "names", tuple(self._derive_names()))

    # -- validation -------------------------------------------------------------------
    def _check(self) -> None:
        if self.version != PIPELINE_VERSION:
            raise ConfigError(f"FeatureSpec version {self.version} is not supported by this "
                              f"pipeline (version {PIPELINE_VERSION})")
        base_ms = interval_to_ms(self.base_interval)
        for name in ("return_horizons", "htf_return_horizons", "reference_horizons"):
            hs = getattr(self, name)
            if not hs or any(int(h) != h or h < 1 for h in hs) or list(hs) != sorted(set(hs)):
                raise ConfigError(f"FeatureSpec.{name} must be increasing positive integers, "
                                  f"got {hs}")
        for name in ("vol_window", "rsi_period", "macd_fast", "macd_slow", "macd_signal",
                     "atr_period", "bb_window", "volume_window", "corr_window", "ob_lookback",
                     "regime_window", "regime_vol_short", "regime_vol_long"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ConfigError(f"FeatureSpec.{name} must be an integer >= 2, got {value!r}")
        if self.macd_fast >= self.macd_slow:
            raise ConfigError("FeatureSpec.macd_fast must be shorter than macd_slow")
        if self.regime_vol_short >= self.regime_vol_long:
            raise ConfigError("FeatureSpec.regime_vol_short must be shorter than regime_vol_long")
        if not 0 <= self.pivot_levels <= 5:
            raise ConfigError(f"FeatureSpec.pivot_levels must be 0..5, got {self.pivot_levels}")
        if self.pivot_levels and not 1 <= self.smc_level <= self.pivot_levels:
            raise ConfigError(f"FeatureSpec.smc_level must be 1..pivot_levels "
                              f"({self.pivot_levels}), got {self.smc_level}")
        if not 0 < self.er_threshold < 1 or self.vol_ratio_threshold <= 0:
            raise ConfigError("FeatureSpec.er_threshold must be in (0, 1) and "
                              "vol_ratio_threshold positive")
        seen = set()
        for tf in self.higher_timeframes:
            ms = interval_to_ms(tf)
            if ms <= base_ms or ms % base_ms or 86_400_000 % ms or tf in seen:
                raise ConfigError(f"FeatureSpec.higher_timeframes: {tf!r} must be a distinct "
                                  f"multiple of {self.base_interval} that divides one day")
            seen.add(tf)

    # -- names ------------------------------------------------------------------------
    def timeframe_columns(self, horizons: tuple[int, ...]) -> list[str]:
        """Column names of one timeframe block, without prefix."""
        windows = {"rvol": self.vol_window, "rsi": self.rsi_period, "atr": self.atr_period,
                   "bb_z": self.bb_window, "vol_z": self.volume_window}
        cols = [f"ret_{h}" for h in horizons]
        cols += [f"{c}_{windows[c]}" if c in windows else c for c in TF_SCALAR_COLUMNS]
        return cols

    def _derive_names(self) -> list[str]:
        names = self.timeframe_columns(self.return_horizons)
        for tf in self.higher_timeframes:
            names += [f"{tf}_{c}" for c in self.timeframe_columns(self.htf_return_horizons)]
        if self.reference_symbol:
            names += [f"ref_ret_{h}" for h in self.reference_horizons]
            names += [f"ref_corr_{self.corr_window}", f"ref_beta_{self.corr_window}"]
        for level in range(1, self.pivot_levels + 1):
            names += [f"piv{level}_{c}" for c in ("dist_high", "dist_low", "trend", "strength")]
        if self.pivot_levels:
            names += list(SMC_COLUMNS)
        names += list(REGIME_COLUMNS)
        return names

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.names)

    @property
    def interval_ms(self) -> int:
        """Base interval in milliseconds."""
        return interval_to_ms(self.base_interval)

    def is_discrete(self, name: str) -> bool:
        """True for flag-like features ({-1, 0, 1} or one-hot) the normalizer leaves as is."""
        return any(name.endswith(s) for s in DISCRETE_SUFFIXES)

    # -- serialization ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Parameters and names as plain JSON types."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the input of :attr:`hash`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 hex digest of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec; unknown fields and names that disagree with the parameters raise."""
        reject_unknown_fields("FeatureSpec", data, (f.name for f in dataclasses.fields(cls)))
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items() if k != "names"}
        try:
            spec = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"bad FeatureSpec: {exc}") from exc
        if "names" in data and tuple(data["names"]) != spec.names:
            raise ConfigError("FeatureSpec names do not match its parameters "
                              "(written by another pipeline version?)")
        return spec

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
