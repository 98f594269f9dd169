"""The one description of the environment a policy trains in, across the RLlib boundary.

An :class:`EnvSpec` holds the data sources, the reference asset, the train / validation
split fractions, the FeatureSpec, the EnvConfig and the normalizer. The normalizer is
fitted once, in the driver, on the training split (``EnvSpec.fit``); the env runners
receive it inside the spec and never fit their own, so the network sees exactly the
features the published bundle will normalize live. The driver's evaluation and its
publisher use the same spec, and ``market.load_markets`` caches the prepared data per
process, so one process prepares its market data once.

RLlib passes ``env_config`` dicts to the env creator on every runner:
``EnvSpec.env_config(split)`` writes ``{"env_spec": ..., "split": ...}`` (strict JSON
values, ``typed_json.py``) and ``registration.make_env`` reads it back with
``EnvSpec.from_env_config``, which refuses unknown keys, missing fields and malformed
values with the field's path. Torch-free and Ray-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.market import MarketData, load_markets, resolve_sources
from raytrade.envs.typed_json import decode, encode

ENV_CONFIG_KEYS = ("env_spec", "split", "num_envs")
"""Keys of RLlib's ``env_config`` (``num_envs`` is added by RLlib for vector envs)."""


@dataclass(frozen=True)
class BarRange:
    """A run of consecutive bars: open times in ms UTC, ``bars`` of them."""

    first_ts: int
    last_ts: int
    bars: int


@dataclass(frozen=True)
class DatasetRange:
    """The bars of one dataset the policy trained on (episodes and the normalizer's fit)
    and the ones its validation evaluation played."""

    name: str
    train: BarRange
    validation: BarRange


@dataclass(frozen=True)
class EnvSpec:
    """Everything an env runner needs to build the training env (module docstring)."""

    sources: tuple[str, ...]
    """Files, globs, ``sample:SYMBOL`` or ``synthetic:...`` sources (``market.py``)."""
    reference: str | None
    """Reference-asset file, when the FeatureSpec needs one and no source is that symbol."""
    train: float
    """Share of each series in the training split (earliest bars)."""
    validation: float
    """Share in the validation split (after training); the rest is the test split."""
    features: FeatureSpec
    """The feature pipeline's parameters."""
    env: EnvConfig
    """Positions, costs, risk rules, reward and its parameters, window, latency."""
    normalizer: Normalizer
    """Fitted once on the training split of every source (``fit``)."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("EnvSpec.sources: no data sources given")
        if not (0 < self.train < 1 and 0 < self.validation < 1
                and self.train + self.validation < 1):
            raise ConfigError(f"EnvSpec.train and validation must be positive and sum below "
                              f"1, got train={self.train}, validation={self.validation}")
        try:
            self.normalizer.check_spec(self.features)
        except ConfigError as exc:
            raise ConfigError(f"EnvSpec.normalizer: {exc}") from exc

    @classmethod
    def fit(cls, *, sources: tuple[str, ...], reference: str | None, train: float,
            validation: float, features: FeatureSpec, env: EnvConfig) -> EnvSpec:
        """Prepare the data (once per process) and fit the normalizer on the training
        split of every source together."""
        _, normalizer = load_markets(list(sources), spec=features, split="train",
                                     reference=reference, train=train, validation=validation,
                                     window=env.window, costs=env.costs,
                                     calendar=env.calendar)
        return cls(sources=tuple(sources), reference=reference, train=train,
                   validation=validation, features=features, env=env, normalizer=normalizer)

    def markets(self, split: str) -> list[MarketData]:
        """Every source, normalized with this spec's normalizer, restricted to ``split``."""
        markets, _ = load_markets(list(self.sources), spec=self.features, split=split,
                                  reference=self.reference, train=self.train,
                                  validation=self.validation, window=self.env.window,
                                  costs=self.env.costs, normalizer=self.normalizer,
                                  calendar=self.env.calendar)
        return markets

    @property
    def several(self) -> bool:
        """True when the sources name more than one dataset (the multi-dataset env)."""
        return len(resolve_sources(self.sources)) > 1

    def data_ranges(self) -> tuple[DatasetRange, ...]:
        """Per dataset, the training and validation bars (for the bundle manifest)."""
        out = []
        for m in self.markets("train"):
            parts = []
            for split in (m.splits.train, m.splits.validation):
                parts.append(BarRange(first_ts=int(m.ts[split.start]),
                                      last_ts=int(m.ts[split.stop - 1]),
                                      bars=split.stop - split.start))
            out.append(DatasetRange(name=m.name, train=parts[0], validation=parts[1]))
        return tuple(out)

    # -- the RLlib boundary ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Strict JSON values of every field (``typed_json.encode``)."""
        out: dict[str, Any] = encode(self)
        return out

    @classmethod
    def from_dict(cls, data: Any, path: str = "env_spec") -> EnvSpec:
        """Inverse of :meth:`to_dict`; ``ConfigError`` naming the field otherwise."""
        return decode(cls, data, path)

    def env_config(self, split: str = "train") -> dict[str, Any]:
        """The ``env_config`` dict RLlib hands to ``registration.make_env``."""
        return {"env_spec": self.to_dict(), "split": split}

    @classmethod
    def from_env_config(cls, env_config: Mapping[str, Any]
                        ) -> tuple[EnvSpec, str, int | None]:
        """The spec, the split and RLlib's ``num_envs`` (None: a single env) of an
        ``env_config``; unknown or missing keys are refused."""
        unknown = sorted(set(env_config) - set(ENV_CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown env_config keys {unknown} (known: "
                              f"{', '.join(ENV_CONFIG_KEYS)})")
        for key in ("env_spec", "split"):
            if key not in env_config:
                raise ConfigError(f"env_config.{key}: missing")
        split = env_config["split"]
        if not isinstance(split, str):
            raise ConfigError(f"env_config.split: expected a string, got {split!r}")
        num_envs = env_config.get("num_envs")
        if num_envs is not None and (isinstance(num_envs, bool) or not isinstance(num_envs, int)
                                     or num_envs < 1):
            raise ConfigError(f"env_config.num_envs: expected an integer >= 1, got {num_envs!r}")
        return cls.from_dict(env_config["env_spec"], "env_config.env_spec"), split, num_envs
