"""Per-feature standardization fitted on the training split only, saved as JSON.

``transform(x) = clip((x - mean) / std, -clip, clip)``; discrete features (flags, one-hot,
trend signs) keep mean 0 and std 1 so they pass through unchanged. Statistics use only rows
where every feature is finite (warm-up rows are skipped). A feature with zero spread gets
std 1 rather than dividing by zero. The JSON records the spec hash, the names and the time
range it was fitted on, so it can never be applied to another feature set by mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.features.pipeline import F32Array, FeatureMatrix
from raytrade.envs.features.spec import FeatureSpec

FORMAT = "raytrade.normalizer/1"


@dataclass(frozen=True)
class Normalizer:
    """Fitted statistics. ``mean`` and ``std`` are in each feature's own units."""

    names: tuple[str, ...]
    spec_hash: str
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]
    clip: float
    fitted_rows: int
    fit_start_ts: int
    fit_end_ts: int

    @classmethod
    def fit(cls, features: FeatureMatrix, spec: FeatureSpec, *, start: int = 0,
            stop: int | None = None, clip: float = 10.0) -> Normalizer:
        """Fit on rows ``start:stop`` of ``features`` (the training split, nothing later)."""
        return cls.fit_pooled([(features, start, stop)], spec, clip=clip)

    @classmethod
    def fit_pooled(cls, parts: list[tuple[FeatureMatrix, int, int | None]], spec: FeatureSpec,
                   *, clip: float = 10.0) -> Normalizer:
        """Fit one normalizer on the training rows of several datasets together.

        A policy trained on several symbols serves each of them with the same statistics,
        so the live actor needs one normalizer per policy, whatever the symbol.
        """
        used_parts, ts_parts = [], []
        for features, start, stop in parts:
            if features.spec_hash != spec.hash:
                raise ConfigError("features were computed with another FeatureSpec")
            rows = features.values[start:stop].astype(np.float64)
            ok = np.isfinite(rows).all(axis=1)
            used_parts.append(rows[ok])
            ts_parts.append(features.ts[start:stop][ok])
        used = np.concatenate(used_parts) if used_parts else np.zeros((0, spec.n_features))
        if len(used) < 2:
            warmups = ", ".join(f"{f.first_valid}" for f, _, _ in parts)
            ends = ", ".join(f"{len(f.values) if stop is None else stop}" for f, _, stop in parts)
            raise DataError(f"cannot fit a normalizer on {len(used)} complete training rows: "
                            f"the features' warm-up ends at row(s) {warmups} but the training "
                            f"split(s) end at {ends}; use more data or a FeatureSpec with "
                            "shorter windows (fewer pivot levels, lower timeframes)")
        mean = used.mean(axis=0)
        std = used.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        discrete = np.array([spec.is_discrete(n) for n in spec.names])
        mean[discrete] = 0.0
        std[discrete] = 1.0
        ts = np.concatenate(ts_parts)
        return cls(names=spec.names, spec_hash=spec.hash, mean=mean, std=std, clip=float(clip),
                   fitted_rows=len(used), fit_start_ts=int(ts.min()), fit_end_ts=int(ts.max()))

    def transform(self, values: npt.ArrayLike) -> F32Array:
        """Standardize rows (``[..., F]``) to float32; NaN stays NaN."""
        x = np.asarray(values, dtype=np.float64)
        if x.shape[-1] != len(self.names):
            raise DataError(f"expected {len(self.names)} features, got {x.shape[-1]}")
        z = (x - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def check_spec(self, spec: FeatureSpec) -> None:
        """Raise unless this normalizer was fitted on features of ``spec``."""
        if spec.hash != self.spec_hash or spec.names != self.names:
            raise ConfigError("normalizer was fitted on another FeatureSpec "
                              f"({self.spec_hash[:12]} vs {spec.hash[:12]})")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (floats written with full precision)."""
        return {"format": FORMAT, "names": list(self.names), "spec_hash": self.spec_hash,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "clip": self.clip,
                "fitted_rows": self.fitted_rows, "fit_start_ts": self.fit_start_ts,
                "fit_end_ts": self.fit_end_ts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`; raises ConfigError on a malformed document."""
        try:
            if data["format"] != FORMAT:
                raise ConfigError(f"unknown normalizer format {data['format']!r}")
            names = tuple(str(n) for n in data["names"])
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
            norm = cls(names=names, spec_hash=str(data["spec_hash"]), mean=mean, std=std,
                       clip=float(data["clip"]), fitted_rows=int(data["fitted_rows"]),
                       fit_start_ts=int(data["fit_start_ts"]), fit_end_ts=int(data["fit_end_ts"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed normalizer JSON: {exc}") from exc
        if not (len(mean) == len(std) == len(names)) or not (
                np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ConfigError("malformed normalizer JSON: mean/std must be finite, "
                              "std positive, one per feature name")
        return norm

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        """Read JSON written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)
