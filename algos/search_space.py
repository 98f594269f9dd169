"""A hyperparameter search space over experiment fields named by dotted paths, and the
overrides that turn a base experiment into one trial's experiment.

A dimension is written in the experiment file's ``[tune.space]`` table as
``"dqn.lr" = {loguniform = [1e-4, 1e-3]}``; the path walks the frozen config dataclasses
(``env.decision.margin`` reaches a field of a dataclass nested two levels down), so any
field of any section can be searched without a per-field list here. Distributions:

- ``choice = [a, b, ...]``: one of the values (lists allowed: ``[[128, 128], [256, 256]]``);
- ``uniform = [low, high]``: a float drawn uniformly in ``[low, high]``;
- ``loguniform = [low, high]``: a float whose log is uniform, ``0 < low < high``;
- ``randint = [low, high]``: an integer in ``[low, high)`` (high exclusive, as Ray Tune's).

:func:`apply_overrides` replaces the named fields with ``dataclasses.replace`` from the
leaf up, so every dataclass on the way re-runs its own checks (``EnvConfig.__post_init__``)
and the caller re-runs the experiment's cross-field ``check()``. Nothing here imports
Ray: the experiment loader validates spaces at load time with it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from raytrade.envs.errors import ConfigError

T = TypeVar("T")

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
"""Names a ``[tune.space]`` entry may use."""


@dataclass(frozen=True)
class Dimension:
    """One searched field: its dotted ``path``, the ``distribution`` name and its
    ``values`` (the choices, or the two bounds)."""

    path: str
    distribution: str
    values: tuple[Any, ...]

    def endpoints(self) -> tuple[Any, ...]:
        """Values a trial can take at the edges of this dimension (every choice, the
        bounds of a range; ``randint``'s largest is ``high - 1``): the loader applies each
        to the base experiment, so a bad bound fails at load time, not in a trial."""
        if self.distribution == "choice":
            return self.values
        if self.distribution == "randint":
            return (self.values[0], self.values[1] - 1)
        return self.values

    def to_tune(self) -> Any:
        """The Ray Tune domain (``tune.choice`` ...) that samples this dimension."""
        from ray import tune

        if self.distribution == "choice":
            return tune.choice([_plain(v) for v in self.values])
        low, high = self.values
        if self.distribution == "uniform":
            return tune.uniform(low, high)
        if self.distribution == "loguniform":
            return tune.loguniform(low, high)
        return tune.randint(low, high)


def parse_space(space: Mapping[str, Any], root: type[Any],
                where: str = "[tune.space]") -> tuple[Dimension, ...]:
    """The dimensions of a ``[tune.space]`` table, paths checked against ``root`` (the
    experiment dataclass) and distributions against their rules; ``ConfigError`` naming
    ``where``, the path and the rule otherwise. Dimensions come sorted by path."""
    out: list[Dimension] = []
    for path in sorted(space):
        spec = space[path]
        here = f"{where} {path!r}"
        hint = field_type(root, path, where)
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ConfigError(f"{here}: write one distribution, e.g. {{choice = [1, 3]}} or "
                              f"{{loguniform = [1e-4, 1e-3]}}; one of {DISTRIBUTIONS}")
        [(kind, raw)] = spec.items()
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{here}: unknown distribution {kind!r}; one of {DISTRIBUTIONS}")
        if not isinstance(raw, list | tuple) or not raw:
            raise ConfigError(f"{here}: {kind} takes a non-empty list")
        values = tuple(raw)
        if kind != "choice":
            if len(values) != 2 or not all(_is_number(v) for v in values) \
                    or not values[0] < values[1]:
                raise ConfigError(f"{here}: {kind} takes [low, high] numbers with low < high, "
                                  f"got {list(values)}")
            if kind == "loguniform" and not values[0] > 0:
                raise ConfigError(f"{here}: loguniform needs 0 < low, got {values[0]}")
            if kind == "randint" and not all(isinstance(v, int) for v in values):
                raise ConfigError(f"{here}: randint takes integer bounds, got {list(values)}")
            if kind in ("uniform", "loguniform") and _base(hint) is not float:
                raise ConfigError(f"{here}: {kind} draws floats but the field is "
                                  f"{_name(hint)}; use choice or randint")
            if kind == "randint" and _base(hint) not in (int, float):
                raise ConfigError(f"{here}: randint draws integers but the field is "
                                  f"{_name(hint)}")
        elif len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{here}: choice lists a value twice: {list(values)}")
        out.append(Dimension(path=path, distribution=kind, values=values))
    return tuple(out)


def field_type(root: type[Any], path: str, where: str = "override") -> Any:
    """The type hint of the field ``path`` names, walking nested dataclasses from
    ``root``; ``ConfigError`` naming the path and the first part that is not a field (or a
    path that ends on a whole section)."""
    node: Any = root
    parts = path.split(".")
    for i, part in enumerate(parts):
        owner = _base(node)
        if not (dataclasses.is_dataclass(owner) and isinstance(owner, type)):
            raise ConfigError(f"{where} {path!r}: {'.'.join(parts[:i])} is a value, "
                              f"not a section with fields")
        names = {f.name for f in dataclasses.fields(owner) if f.init}
        if part not in names:
            prefix = ".".join(parts[:i]) or "the experiment"
            raise ConfigError(f"{where} {path!r}: {prefix} has no field {part!r} "
                              f"(fields: {', '.join(sorted(names))})")
        node = typing.get_type_hints(owner)[part]
    leaf = _base(node)
    if dataclasses.is_dataclass(leaf) and isinstance(leaf, type):
        raise ConfigError(f"{where} {path!r}: names the whole section; name one of its "
                          f"fields ({', '.join(f.name for f in dataclasses.fields(leaf))})")
    return node


def apply_overrides(config: T, overrides: Mapping[str, Any]) -> T:
    """``config`` with each dotted path set to its value (nested frozen dataclasses
    replaced from the leaf up; lists become tuples, integers given for float fields become
    floats). ``ConfigError`` naming the path for an unknown path, a value of the wrong
    type, or one its dataclass refuses. The caller re-runs cross-field checks."""
    out = config
    for path in sorted(overrides):
        field_type(type(config), path)
        try:
            out = _replace(out, path.split("."), overrides[path], path)
        except ConfigError as exc:
            if str(exc).startswith(f"override {path!r}"):
                raise
            raise ConfigError(f"override {path!r} = {overrides[path]!r}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"override {path!r} = {overrides[path]!r}: {exc}") from exc
    return out


def _replace(node: Any, parts: list[str], value: Any, path: str) -> Any:
    name = parts[0]
    if len(parts) > 1:
        return dataclasses.replace(node, **{name: _replace(getattr(node, name), parts[1:],
                                                           value, path)})
    hint = typing.get_type_hints(type(node))[name]
    return dataclasses.replace(node, **{name: _coerce(hint, value, path)})


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """``value`` as the field's type: lists as tuples, whole floats for int fields refused
    unless integral, ints for float fields as floats."""
    base = _base(hint)
    if value is None:
        if not _optional(hint):
            raise ConfigError(f"override {path!r}: the field takes no null")
        return None
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"override {path!r}: expected true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not _is_number(value) or float(value) != int(value):
            raise ConfigError(f"override {path!r}: expected an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not _is_number(value):
            raise ConfigError(f"override {path!r}: expected a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"override {path!r}: expected a string, got {value!r}")
        return value
    if typing.get_origin(base) is tuple or base is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"override {path!r}: expected a list, got {value!r}")
        return _frozen(value)
    return _frozen(value)


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Tuples as lists (what Ray Tune stores in a trial's config and JSON results)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(float(value))


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(hint)


def _base(hint: Any) -> Any:
    """``X`` for ``X | None``; the hint itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
