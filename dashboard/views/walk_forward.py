"""Walk-forward reports (``reports/walk_forward/*.json``), when present."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from raytrade.algos.storage.keys import WALK_FORWARD_REPORTS
from raytrade.dashboard.context import empty, reader

st.title("Walk-forward")
run = reader()
keys = run.walk_forward_reports()
if not keys:
    empty("No walk-forward reports", "`raytrade backtest walk-forward` writes them to "
          f"{WALK_FORWARD_REPORTS} in this store.")
else:
    key = st.selectbox("Report", keys[::-1])
    report = run.report(key)
    summary = {k: v for k, v in report.items() if not isinstance(v, list | dict)}
    st.json(summary)
    aggregate = report.get("aggregate")
    if isinstance(aggregate, dict) and aggregate:
        st.subheader("Out of sample, folds chained")
        st.dataframe(pd.DataFrame([{"dataset": d, "policy": p, **{
            k: r.get(k) for k in ("total_return", "sharpe", "max_drawdown",
                                  "sharpe_gap_in_minus_out", "return_gap_in_minus_out")}}
            for d, per in aggregate.items() for p, r in per.items()]), hide_index=True)
    folds = report.get("folds")
    if isinstance(folds, list) and folds:
        st.subheader("Folds")
        st.dataframe(pd.json_normalize(folds), hide_index=True)
