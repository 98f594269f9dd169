"""Median and spread of repeated benchmark runs, for the README's numbers: one run of a
benchmark on a shared 2-core machine is noise-prone, so the scripts' ``--repeats N`` run
each measurement ``N`` times and report every value with its median, minimum and maximum.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def spread(values: Sequence[float | int | None]) -> dict[str, Any]:
    """``{"median", "min", "max", "n", "values"}`` of the finite ``values`` (None and NaN
    are left out of the statistics but kept in ``values``; all three are None when none
    is finite)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {"median": statistics.median(finite) if finite else None,
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
            "n": len(finite), "values": list(values)}


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, float | int | None]:
    """The numeric leaves of a nested record as ``{"a/b/c": value}`` (booleans, strings
    and lists are left out)."""
    out: dict[str, float | int | None] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[name] = value
    return out


def summarize(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per numeric leaf of the runs' records (see :func:`flatten`), its :func:`spread`
    over the runs; a leaf missing from a run counts as None there."""
    flat = [flatten(r) for r in runs]
    names = sorted({k for f in flat for k in f})
    return {k: spread([f.get(k) for f in flat]) for k in names}
