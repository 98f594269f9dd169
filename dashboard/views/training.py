"""Training: returns, losses, Q-values, TD error, epsilon per runner, throughput, replay."""

from __future__ import annotations

import streamlit as st
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors

st.title("Training")
run = reader()

PANELS = (
    ("Episode return (mean)", ["episode_return_mean"]),
    ("Loss", ["qf_loss"]),
    ("Mean Q", ["qf_mean"]),
    ("TD error (mean)", ["td_error_mean"]),
    ("Env steps per second", ["sampled_per_s", "trained_per_s"]),
    ("Replay buffer size", ["replay_size"]),
    ("Episode Sharpe and drawdown", ["episode_sharpe", "episode_max_drawdown"]),
)


@st.fragment(run_every=refresh_s())
def body() -> None:
    train, errors = run.train()
    show_errors(errors)
    if not len(train) or "iteration" not in train:
        empty("No training metrics", "Start `raytrade train` with this store.")
        return
    frame = train.set_index("iteration")
    eps = [c for c in frame.columns if c.startswith("epsilon_")]
    panels = [*PANELS, ("Epsilon per env runner", eps)]
    for i in range(0, len(panels), 2):
        cols = st.columns(2)
        for col, (title, names) in zip(cols, panels[i:i + 2], strict=False):
            present = [n for n in names if n in frame and frame[n].notna().any()]
            col.markdown(f"**{title}**")
            if present:
                col.line_chart(frame[present])
            else:
                col.caption("not reported by this run yet")


body()
