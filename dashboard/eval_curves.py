"""The equity and drawdown curves of one evaluation, prepared for the Evaluation page.

Training saves, with every evaluation, each policy's equity curve per dataset (see
``algos.evaluation.evaluate``): ``{"datasets": {dataset: {policy: [equity, ...]}}, "ts":
{dataset: {policy: [bar open time ms UTC, ...]}}}``. The curves of one dataset differ in
length for two reasons:

- an episode ends early when the drawdown halt fires (the account is flattened and stays
  flat for good) or equity is gone (ruin); the environment then terminates, so that
  policy's curve stops before the split's end (a random or badly trained policy on a
  costly market often halts);
- each curve is subsampled on its own to at most a fixed number of points, so a curve over
  more bars than that has points further apart than a shorter one.

So the curves are aligned on their bar times, never on their point index. Records written
before times were saved have none; their curves are aligned on the point index, which is
exact when no curve was subsampled (the page says so). A curve that ends before the
dataset's latest end stopped early: it is returned as an :class:`EarlyStop` to mark.

Pure pandas (no Streamlit): the page module runs on import, this one can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from raytrade.envs.metrics import drawdown_curve

TIME, STEP = "time", "step"
"""The x column of a curve table: bar open time (UTC) or point index."""


class CurveError(ValueError):
    """A curves record that breaks the format above (the message names dataset, policy
    and the rule)."""


@dataclass(frozen=True)
class EarlyStop:
    """A policy whose evaluation episode ended before the split's end.

    ``at`` is the x value of its last point (a UTC timestamp, or the point index when the
    record has no times); ``equity`` (quote currency) and ``drawdown`` (fraction of the
    peak, <= 0) are the values there; ``reason`` is ``"ruin"`` when equity is gone, else
    ``"drawdown halt"``.
    """

    policy: str
    at: pd.Timestamp | int
    equity: float
    drawdown: float
    reason: str

    def describe(self) -> str:
        """One line for the page, e.g. ``random stopped at 2025-06-20 13:05 UTC (drawdown
        halt: flat for good), equity 4,987.32``."""
        at = (self.at.strftime("%Y-%m-%d %H:%M UTC") if isinstance(self.at, pd.Timestamp)
              else f"point {self.at}")
        why = "drawdown halt: flat for good" if self.reason == "drawdown halt" else \
            "ruin: equity gone"
        return (f"{self.policy} stopped at {at} ({why}), equity {self.equity:,.2f}, "
                f"drawdown {self.drawdown:.1%}")


@dataclass(frozen=True)
class DatasetCurves:
    """One dataset's curves in long form: ``table`` has columns ``x`` (:data:`TIME` or
    :data:`STEP`), ``policy``, ``equity`` and ``drawdown``; ``stops`` the policies that
    stopped early, in the order of the record."""

    dataset: str
    x: str
    table: pd.DataFrame
    stops: tuple[EarlyStop, ...]

    @property
    def aligned_on_time(self) -> bool:
        """True when the record carried bar times (curves are exactly aligned)."""
        return self.x == TIME


def _numbers(value: Any, where: str, what: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``value`` as a non-empty 1-d float array, or ``CurveError`` naming ``where``."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise CurveError(f"{where}: {what} must be a non-empty list of numbers")
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(f"{where}: {what} must be a list of numbers") from None
    if out.ndim != 1:
        raise CurveError(f"{where}: {what} must be a flat list of numbers")
    return out


def dataset_curves(record: Mapping[str, Any]) -> list[DatasetCurves]:
    """Every dataset's curves of one evaluation ``record`` (see the module docstring),
    aligned and with their early stops; ``CurveError`` for a record that breaks the format
    (a curve that is not a list of numbers, times of another length than the equity)."""
    datasets = record.get("datasets")
    if not isinstance(datasets, Mapping):
        raise CurveError("'datasets' must map dataset names to their policies' curves")
    all_times = record.get("ts")
    if all_times is not None and not isinstance(all_times, Mapping):
        raise CurveError("'ts' must map dataset names to their policies' bar times")
    out = []
    for dataset, per in datasets.items():
        if not isinstance(per, Mapping):
            raise CurveError(f"dataset {dataset}: must map policy names to curves")
        times = all_times.get(dataset) if all_times is not None else None
        out.append(_one_dataset(str(dataset), per, times))
    return out


def _one_dataset(dataset: str, per: Mapping[str, Any],
                 times: Mapping[str, Any] | None) -> DatasetCurves:
    x_name = TIME if times is not None else STEP
    frames = []
    for policy, values in per.items():
        where = f"dataset {dataset}, policy {policy}"
        equity = _numbers(values, where, "equity")
        if times is not None:
            if policy not in times:
                raise CurveError(f"{where}: no bar times (every curve needs its 'ts')")
            ts = _numbers(times[policy], where, "bar times")
            if len(ts) != len(equity):
                raise CurveError(f"{where}: {len(ts)} bar times for {len(equity)} equity "
                                 "points (one time per point)")
            if np.any(np.diff(ts) <= 0):
                raise CurveError(f"{where}: bar times must increase")
            x: Any = pd.to_datetime(ts.astype(np.int64), unit="ms", utc=True)
        else:
            x = np.arange(len(equity))
        frames.append(pd.DataFrame({"x": x, "policy": str(policy), "equity": equity,
                                    "drawdown": drawdown_curve(equity)}))
    if not frames:
        raise CurveError(f"dataset {dataset}: no curves")
    table = pd.concat(frames, ignore_index=True)
    ends = table.groupby("policy", sort=False)["x"].max()
    stops = []
    for name, end in ends.items():
        if end < ends.max():
            last = table[table["policy"] == name].iloc[-1]
            at = end if x_name == TIME else int(end)
            stops.append(EarlyStop(str(name), at, float(last["equity"]),
                                   float(last["drawdown"]),
                                   "ruin" if last["equity"] <= 0 else "drawdown halt"))
    return DatasetCurves(dataset, x_name, table, tuple(stops))
