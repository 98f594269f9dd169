"""Walk-forward reports (``reports/walk_forward/*.json``), when present."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from raytrade.dashboard.context import empty, reader

st.title("Walk-forward")
run = reader()
keys = run.walk_forward_reports()
if not keys:
    empty("No walk-forward reports", "`raytrade backtest walk-forward` writes them to "
          "reports/walk_forward/ in this store.")
else:
    key = st.selectbox("Report", keys[::-1])
    report = run.report(key)
    summary = {k: v for k, v in report.items() if not isinstance(v, list | dict)}
    st.json(summary)
    folds = report.get("folds")
    if isinstance(folds, list) and folds:
        st.dataframe(pd.json_normalize(folds), hide_index=True)
