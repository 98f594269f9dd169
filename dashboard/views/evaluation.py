"""Evaluation: the shared metrics of the greedy policy against buy-and-hold and flat per
evaluation, the latest evaluation's costs per policy (net beside gross return, cost drag,
fees, slippage, borrow, turnover, trades per day, holding time, halted) and the greedy
policy's Q gaps against the cost of switching, the decision rule and the cost multiples
tried on validation (``dashboard/cost_tables.py``), and the
equity and drawdown curves of an evaluation when training saved them
(curves of different lengths on their bar times, a policy that stopped early marked where
it stopped: see ``dashboard/eval_curves.py``)."""

from __future__ import annotations

import streamlit as st
from raytrade.dashboard.charts import curves_with_stops
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors
from raytrade.dashboard.cost_tables import decision_calibration, evaluation_costs, q_gaps
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
    record = run.latest_evaluation(split)
    if record is not None and record.get("iteration") == last_it:
        st.subheader("Costs: net against gross return (fractions of starting equity)")
        st.dataframe(evaluation_costs(record), hide_index=True)
        st.caption("A policy marked (halted) was stopped early by the drawdown halt or ruin: "
                   "its return is not that of a full run.")
        rule = record.get("decision")
        if isinstance(rule, dict):
            st.caption(f"Decision rule: every {rule.get('every_bars')} bar(s), margin "
                       f"{rule.get('margin')}, cost multiple {rule.get('cost_multiple')}.")
        calibration = decision_calibration(record)
        if len(calibration):
            st.subheader("Cost multiple chosen on validation")
            st.dataframe(calibration, hide_index=True)
        gaps = q_gaps(record)
        st.subheader("Greedy Q gap against the cost of switching (Q units)")
        if len(gaps):
            st.dataframe(gaps, hide_index=True)
            st.caption("Gap: Q of the best action minus Q of the held position's action, at "
                       "every greedy decision. Switch cost: reward_scale x (fee + slippage) "
                       "of a unit position change.")
        else:
            empty("No Q gaps in this evaluation", "Evaluations record them from this "
                  "version of training on.")
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
