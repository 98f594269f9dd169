"""One score for choosing between policies, read from a validation evaluation record.

Every place that chooses a policy (early stopping in the training driver, publishing to
``candidate`` only on improvement, the paper gate, the Tune search) scores the record that
``evaluation.evaluate`` wrote for the *validation* split with :func:`score`, so they agree
on what "better" means. Scores are means over the record's datasets:

- ``log_growth``: ``log(final_equity / initial_equity)`` of the greedy policy, after every
  cost (fees, slippage, borrow) the env charged; 0 = flat-equivalent.
- ``excess_log_growth``: the greedy policy's log growth minus the flat baseline's on the
  same bars (flat pays no fees; on a market with borrow it is 0 too), so > 0 means "beat
  staying out after costs". The default.
- ``sharpe``: the greedy policy's annualized Sharpe ratio (NaN counts as -inf: a policy
  that never moved equity is not preferred to one that earned).

A record of another split is refused: selection never looks at the test split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from raytrade.envs.errors import ConfigError

METRICS = ("excess_log_growth", "log_growth", "sharpe")
"""Names :func:`score` accepts."""


def _log_growth(per: Mapping[str, Any], policy: str, initial: float) -> float:
    final = float(per[policy]["final_equity"])
    if not final > 0:
        return -math.inf  # ruined
    return math.log(final / initial)


def score(evaluation: Mapping[str, Any], metric: str, initial_equity: float) -> float:
    """The mean over datasets of ``metric`` (module docstring) in a validation record.

    ``initial_equity`` is the episode's starting equity (``EnvConfig.initial_equity``).
    Raises ``ConfigError`` for an unknown metric, a record without datasets, or a record
    of any split but ``validation``.
    """
    if metric not in METRICS:
        raise ConfigError(f"selection metric must be one of {METRICS}, got {metric!r}")
    split = evaluation.get("split")
    if split != "validation":
        raise ConfigError(f"selection reads validation evaluations only, got split {split!r}")
    datasets = evaluation.get("datasets") or {}
    if not datasets:
        raise ConfigError("the evaluation record has no datasets")
    values: list[float] = []
    for per in datasets.values():
        if metric == "sharpe":
            value = per["greedy"].get("sharpe")
            values.append(-math.inf if value is None or not math.isfinite(float(value))
                          else float(value))
        elif metric == "log_growth":
            values.append(_log_growth(per, "greedy", initial_equity))
        else:
            values.append(_log_growth(per, "greedy", initial_equity)
                          - _log_growth(per, "flat", initial_equity))
    return sum(values) / len(values)


def beats_flat(evaluation: Mapping[str, Any], initial_equity: float) -> bool:
    """True when the greedy policy ended above the flat baseline after costs on every
    dataset of the validation record (the paper gate's default evidence)."""
    if evaluation.get("split") != "validation":
        raise ConfigError("selection reads validation evaluations only, got split "
                          f"{evaluation.get('split')!r}")
    datasets = evaluation.get("datasets") or {}
    return bool(datasets) and all(
        _log_growth(per, "greedy", initial_equity) > _log_growth(per, "flat", initial_equity)
        for per in datasets.values())


def evidence(evaluation: Mapping[str, Any]) -> dict[str, float | None]:
    """Per dataset of a validation record, the greedy policy's ``t_stat`` (its mean
    per-decision return in standard errors, ``envs/metrics.py``; None when not finite,
    e.g. a policy that never held a position)."""
    if evaluation.get("split") != "validation":
        raise ConfigError("selection reads validation evaluations only, got split "
                          f"{evaluation.get('split')!r}")
    out: dict[str, float | None] = {}
    for name, per in (evaluation.get("datasets") or {}).items():
        value = per["greedy"].get("t_stat")
        out[name] = float(value) if value is not None and math.isfinite(float(value)) \
            else None
    return out


def significant(evaluation: Mapping[str, Any], min_t: float) -> bool:
    """True when every dataset's greedy ``t_stat`` (:func:`evidence`) is at least
    ``min_t`` (always True for ``min_t <= 0``)."""
    if min_t <= 0:
        return True
    values = evidence(evaluation)
    return bool(values) and all(v is not None and v >= min_t for v in values.values())
