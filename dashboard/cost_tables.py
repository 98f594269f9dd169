"""The cost tables of the Evaluation and Paper pages, built from the published records.

Every table puts the net return beside the gross return before costs and the costs that
separate them (cost drag, fees, slippage, borrow: fractions of the starting equity), with
turnover (traded notional / mean equity), trades per day, the average bars a position was
held, and whether the drawdown halt or ruin ended the run early (such a policy's name is
marked ``(halted)``, so its return is never read as an ordinary one). The numbers are the
ones the evaluation (``algos.evaluation.evaluate``) and the paper export
(``algos.run_metrics.record_performance`` on ``equity.jsonl``) computed with the shared
metrics module; nothing is recomputed differently here.

The calibration table lists the decision cost multiples the evaluated policy tried on
validation and the one it kept (``algos.decision_calibration``).

The Q-gap table summarizes, per dataset, how far the greedy policy's best Q was above the
Q of the position it held, against the cost of switching in the same Q units (see
``algos.run_metrics``).

Pure pandas (no Streamlit): the page modules run on import, this one can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from raytrade.algos.run_metrics import COST_COLUMNS, halted_label, record_performance
from raytrade.envs.calendar import ALWAYS, TradingCalendar

COST_LABELS = dict(zip(COST_COLUMNS, ("net return", "gross return", "cost drag", "fees",
                                     "slippage", "borrow", "turnover", "trades/day",
                                     "avg holding bars", "halted"), strict=True))
"""Column titles of the cost tables, in ``COST_COLUMNS`` order."""
Q_GAP_LABELS = {"decisions": "decisions", "p50": "gap p50", "p90": "gap p90",
                "p99": "gap p99", "mean": "gap mean", "switch_cost": "switch cost",
                "below_cost_share": "share below switch cost",
                "wants_switch_share": "share wanting a switch",
                "unpaid_switch_share": "switches not paying their cost"}
"""Column titles of the Q-gap table (Q units: reward_scale x log return)."""

def cost_row(name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One row: the policy (``(halted)`` when stopped early) and its cost metrics."""
    return {"policy": halted_label(name, dict(record)),
            **{label: record.get(col) for col, label in COST_LABELS.items()}}


def evaluation_costs(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset and policy of an evaluation record (``metrics/eval.jsonl``)."""
    rows = []
    for dataset, per in (record.get("datasets") or {}).items():
        for name, metrics in per.items():
            if isinstance(metrics, dict):
                rows.append({"dataset": dataset, **cost_row(name, metrics)})
    return pd.DataFrame(rows, columns=["dataset", "policy", *COST_LABELS.values()])


def q_gaps(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset: the greedy policy's Q-gap summary (empty when the record
    predates it)."""
    rows = []
    for dataset, per in (record.get("datasets") or {}).items():
        gap = (per.get("greedy") or {}).get("q_gap")
        if isinstance(gap, dict):
            rows.append({"dataset": dataset,
                         **{label: gap.get(k) for k, label in Q_GAP_LABELS.items()}})
    return pd.DataFrame(rows, columns=["dataset", *Q_GAP_LABELS.values()])


def decision_calibration(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per cost multiple the evaluated policy tried on validation
    (``algos.decision_calibration``): its score in the ``[selection]`` metric's units, the
    trades it made, and whether it is the one chosen. Empty when the record was not
    calibrated."""
    table = record.get("calibration")
    if not isinstance(table, list):
        return pd.DataFrame(columns=["cost multiple", "validation score", "trades", "chosen"])
    chosen = (record.get("decision") or {}).get("cost_multiple")
    return pd.DataFrame([{"cost multiple": row.get("cost_multiple"),
                          "validation score": row.get("score"), "trades": row.get("trades"),
                          "chosen": row.get("cost_multiple") == chosen} for row in table],
                        columns=["cost multiple", "validation score", "trades", "chosen"])


def paper_costs(equity: pd.DataFrame, calendar: TradingCalendar = ALWAYS) -> pd.DataFrame:
    """The cost table of a paper record (``PaperRecord.equity``): one row per policy
    version traded (named ``vNNNNNN``), then the whole record (``all versions``); per
    year and per day with ``calendar`` (``PaperRecord.calendar``)."""
    if not len(equity):
        return pd.DataFrame(columns=["policy", *COST_LABELS.values()])
    frame = equity.assign(ts=equity["ts_ms"]).drop(columns=["ts_ms"])
    rows = []
    for version in sorted(frame["version"].dropna().unique()):
        perf = record_performance(_records(frame[frame["version"] == version]), calendar)
        if perf:
            rows.append(cost_row(f"v{int(version):06d}", perf))
    whole = record_performance(_records(frame), calendar)
    if whole:
        rows.append(cost_row("all versions", whole))
    return pd.DataFrame(rows, columns=["policy", *COST_LABELS.values()])


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
