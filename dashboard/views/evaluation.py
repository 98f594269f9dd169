"""Evaluation: the shared metrics of the greedy policy against buy-and-hold and flat per
evaluation, and the equity and drawdown curves of an evaluation when training saved them."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from raytrade.dashboard.charts import value_lines
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors
from raytrade.envs.metrics import drawdown_curve

st.title("Evaluation")
run = reader()


@st.fragment(run_every=refresh_s())
def body() -> None:
    evals, errors = run.evaluations()
    show_errors(errors)
    if not len(evals):
        empty("No evaluations", "Training evaluates the greedy policy every "
              "`evaluate_every` iterations into metrics/eval.jsonl.")
        return
    splits = sorted(evals["split"].dropna().unique())
    split = st.radio("Split", splits, horizontal=True, key="split")
    ev = evals[evals["split"] == split]
    last_it = int(ev["iteration"].max())
    st.subheader(f"Latest evaluation (iteration {last_it})")
    latest = ev[ev["iteration"] == last_it].drop(columns=["split"])
    st.dataframe(latest, hide_index=True)
    st.subheader("Total return against the baselines, per evaluation")
    for dataset, per in ev.groupby("dataset"):
        wide = per.pivot_table(index="iteration", columns="policy", values="total_return")
        keep = [c for c in ("greedy", "buy_and_hold", "flat") if c in wide]
        st.markdown(f"**{dataset}**")
        st.line_chart(wide[keep])
    curves = run.eval_curves(last_it, split)
    st.subheader("Equity and drawdown curves")
    if not curves:
        empty("No curves for this evaluation", "Curves are saved with each evaluation by "
              "this version of training.")
        return
    for dataset, per in curves.get("datasets", {}).items():
        eq = pd.DataFrame({k: v for k, v in per.items() if isinstance(v, list)})
        st.markdown(f"**{dataset}**: equity")
        st.altair_chart(value_lines(eq))
        st.markdown(f"**{dataset}**: drawdown")
        st.area_chart(pd.DataFrame({k: drawdown_curve(eq[k].to_numpy()) for k in eq}))


body()
