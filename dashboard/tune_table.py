"""Tables of a ``raytrade tune`` search for the dashboard, from ``tune/trials.json``
(``algos/tune.py``): one row per trial, and the winner's validation score beside its
test result. Plain functions, importable without Streamlit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

TRIAL_COLUMNS = ("trial_id", "winner", "status", "iterations", "best_score",
                 "best_iteration", "env_steps_sampled", "wall_s", "overrides", "error")
TEST_POLICIES = ("greedy", "flat", "buy_and_hold", "random", "bayes_filter", "oracle")


def trials_frame(document: Mapping[str, Any]) -> pd.DataFrame:
    """One row per trial, the best validation score first; ``overrides`` as compact
    ``path=value`` text and ``winner`` marking the published trial."""
    won = (document.get("winner") or {}).get("trial_id")
    rows = []
    for trial in document.get("trials", []):
        row = {k: trial.get(k) for k in TRIAL_COLUMNS}
        row["winner"] = trial.get("trial_id") == won
        row["overrides"] = ", ".join(f"{k}={json.dumps(v)}"
                                     for k, v in sorted((trial.get("overrides") or {}).items()))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    if frame.empty:
        return frame
    return frame.sort_values("best_score", ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def winner_test_frame(document: Mapping[str, Any]) -> pd.DataFrame:
    """The winner's test-split result (read once, after selection): per dataset and
    policy, total return, Sharpe, max drawdown and final equity."""
    winner = document.get("winner") or {}
    test = winner.get("test") or {}
    rows = []
    for dataset, per in (test.get("datasets") or {}).items():
        for policy in TEST_POLICIES:
            if policy in per:
                perf = per[policy]
                rows.append({"dataset": dataset, "policy": policy,
                             **{k: perf.get(k) for k in ("total_return", "sharpe",
                                                         "max_drawdown", "final_equity")}})
    return pd.DataFrame(rows)
