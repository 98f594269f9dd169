"""The last hyperparameter search (``raytrade tune``): its trials, the winner published
to ``candidate`` and the winner's test result, from ``tune/trials.json``."""

from __future__ import annotations

import streamlit as st
from raytrade.algos.storage.keys import TUNE_TRIALS
from raytrade.dashboard.context import empty, reader
from raytrade.dashboard.tune_table import trials_frame, winner_test_frame

st.title("Hyperparameter search")
run = reader()
document = run.tune_trials()
if document is None:
    empty("No hyperparameter search", "`raytrade tune --config EXPERIMENT.toml --store "
          f"STORE` writes its trials to {TUNE_TRIALS} in this store.")
else:
    winner = document.get("winner")
    st.caption(f"{document.get('name')}: {len(document.get('trials', []))} trials, "
               f"{document.get('scheduler')} scheduler, selected by validation "
               f"{document.get('metric')}")
    if winner is None:
        st.warning("No trial reported a validation score: nothing was published.")
    else:
        cols = st.columns(3)
        cols[0].metric("Winner", str(winner["trial_id"]))
        cols[1].metric(f"Validation {document.get('metric')}", f"{winner['best_score']:.4g}")
        cols[2].metric("Published", f"v{winner['version']:06d}")
        st.markdown("Overrides: " + ", ".join(f"`{k} = {v}`"
                                              for k, v in winner["overrides"].items()))
    st.subheader("Trials")
    st.dataframe(trials_frame(document), hide_index=True)
    if winner is not None:
        st.subheader("Winner on the test split (read once, after selection)")
        st.dataframe(winner_test_frame(document), hide_index=True)
