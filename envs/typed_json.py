"""Strict JSON for frozen dataclasses: every field written, every field required on reading.

``encode`` turns a dataclass (nested dataclasses, tuples, ``X | None``, FeatureSpec and
Normalizer included) into plain JSON values; ``decode`` builds it back from parsed JSON and
refuses, with a :class:`ConfigError` naming the field path (``env.costs.fee_bps``), any
missing field, any unknown field and any value of the wrong type. Nothing is ever read with
a default: a document that omits a field is wrong, not old.

Floats that JSON cannot hold (an uncapped ``RiskConfig.max_notional`` is ``inf``) are
written as the strings ``"Infinity"``, ``"-Infinity"`` and ``"NaN"`` and read back as the
floats, so a round trip is exact and the document stays strict JSON (``allow_nan=False``).

Used by the env spec that crosses the RLlib boundary (``env_spec.py``) and by the policy
bundle manifest (``algos/manifest.py``); it imports neither torch nor Ray.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
from raytrade.envs.errors import ConfigError, RaytradeError
from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.spec import FeatureSpec

T = TypeVar("T")

NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
# the documents these two classes write themselves (``to_dict``), key sets taken from it
_OWN_FORMAT: dict[type[Any], frozenset[str]] = {
    FeatureSpec: frozenset(FeatureSpec().to_dict()),
    Normalizer: frozenset(Normalizer(names=(), spec_hash="", mean=np.zeros(0),
                                     std=np.ones(0), clip=1.0, fitted_rows=0,
                                     fit_start_ts=0, fit_end_ts=0).to_dict()),
}


def encode(value: Any) -> Any:
    """Plain JSON values for ``value`` (see the module docstring)."""
    if isinstance(value, FeatureSpec | Normalizer):
        return encode(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name))
                for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def decode(kind: type[T], data: Any, path: str) -> T:
    """``kind`` built from parsed JSON ``data``; ``ConfigError`` naming ``path`` and the
    field otherwise."""
    return typing.cast(T, _decode(kind, data, path))


def _where(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _decode(hint: Any, data: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        rest = [o for o in options if o is not type(None)]
        if len(rest) != 1:
            raise ConfigError(f"{path}: unsupported union {hint}")
        return _decode(rest[0], data, path)
    if hint is Any:
        return data
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if data not in allowed or isinstance(data, bool):
            raise ConfigError(f"{path}: expected one of {list(allowed)}, got {data!r}")
        return data
    if hint in _OWN_FORMAT:
        return _own_format(hint, data, path)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, data, path)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{path}[{i}]") for i, v in enumerate(data))
        if len(args) != len(data):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(data)}")
        pairs = zip(args, data, strict=True)
        return tuple(_decode(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(pairs))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        args = typing.get_args(hint) or (str, Any)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected an object, got {type(data).__name__}")
        return {str(k): _decode(args[1], v, _where(path, str(k))) for k, v in data.items()}
    if hint is float:
        if isinstance(data, str) and data in NON_FINITE:
            return NON_FINITE[data]
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
        raise ConfigError(f"{path}: expected a number, got {data!r}")
    if hint is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise ConfigError(f"{path}: expected an integer, got {data!r}")
    if hint is bool:
        if isinstance(data, bool):
            return data
        raise ConfigError(f"{path}: expected true or false, got {data!r}")
    if hint is str:
        if isinstance(data, str):
            return data
        raise ConfigError(f"{path}: expected a string, got {data!r}")
    raise ConfigError(f"{path}: no JSON reading for type {hint}")


def _check_keys(data: Any, expected: frozenset[str] | set[str], path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'document'}: expected an object, got "
                          f"{type(data).__name__}")
    missing = sorted(expected - set(data))
    if missing:
        raise ConfigError(f"{_where(path, missing[0])}: missing (every field is required; "
                          f"missing: {', '.join(missing)})")
    unknown = sorted(set(data) - expected)
    if unknown:
        raise ConfigError(f"{_where(path, unknown[0])}: unknown field (unknown: "
                          f"{', '.join(unknown)})")
    return data


def _dataclass(kind: type[Any], data: Any, path: str) -> Any:
    fields = [f for f in dataclasses.fields(kind) if f.init]
    _check_keys(data, {f.name for f in fields}, path)
    hints = typing.get_type_hints(kind)
    kwargs = {f.name: _decode(hints[f.name], data[f.name], _where(path, f.name))
              for f in fields}
    try:
        return kind(**kwargs)
    except (RaytradeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path or kind.__name__}: {exc}") from exc


def _own_format(kind: type[FeatureSpec] | type[Normalizer], data: Any,
                path: str) -> FeatureSpec | Normalizer:
    """A FeatureSpec or Normalizer from its own ``to_dict`` document, keys checked."""
    _check_keys(data, _OWN_FORMAT[kind], path)
    try:
        return kind.from_dict(data)
    except (RaytradeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
