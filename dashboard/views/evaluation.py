"""Evaluation: the shared metrics of the greedy policy against buy-and-hold and flat per
evaluation, and the equity and drawdown curves of an evaluation when training saved them
(curves of different lengths on their bar times, a policy that stopped early marked where
it stopped: see ``dashboard/eval_curves.py``)."""

from __future__ import annotations

import streamlit as st
from raytrade.dashboard.charts import curves_with_stops
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors
from raytrade.dashboard.eval_curves import dataset_curves

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
    st.subheader("Equity and drawdown curves")
    where = f"curves of iteration {last_it} ({split})"
    try:
        curves = run.eval_curves(last_it, split)
        per_dataset = dataset_curves(curves) if curves else []
    except ValueError as exc:  # malformed JSON or a record that breaks the curve format
        st.error(f"{where}: {exc}")
        return
    if not per_dataset:
        empty("No curves for this evaluation", "Curves are saved with each evaluation by "
              "this version of training.")
        return
    for dc in per_dataset:
        st.markdown(f"**{dc.dataset}**: equity")
        st.altair_chart(curves_with_stops(dc, "equity"))
        st.markdown(f"**{dc.dataset}**: drawdown")
        st.altair_chart(curves_with_stops(dc, "drawdown"))
        for stop in dc.stops:
            st.caption(stop.describe())
        if not dc.aligned_on_time:
            st.caption("This record has no bar times: curves are drawn by point index, "
                       "exact only where no curve was subsampled.")


body()
