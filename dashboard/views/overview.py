"""Overview: run status, channel versions, live actors and their health, alerts."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from raytrade.algos.storage.keys import TRAIN_METRICS
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors
from raytrade.dashboard.run_reader import finite

st.title("Overview")
run = reader()
st.caption(f"Store: `{run.uri}`")


@st.fragment(run_every=refresh_s())
def body() -> None:
    train, errors = run.train()
    show_errors(errors)
    st.subheader("Training run")
    if len(train):
        last = train.iloc[-1]
        cols = st.columns(4)
        cols[0].metric("Iteration", int(last.get("iteration", len(train))))
        cols[1].metric("Env steps sampled", f"{finite(last.get('env_steps_sampled')) or 0:,.0f}")
        cols[2].metric("Env steps trained", f"{finite(last.get('env_steps_trained')) or 0:,.0f}")
        cols[3].metric("Run time", f"{(finite(last.get('time_s')) or 0) / 60:,.1f} min")
    else:
        empty("No training metrics", "They appear when `raytrade train` writes "
              f"{TRAIN_METRICS} to this store.")

    st.subheader("Channels")
    rows = []
    for name, ptr in run.channels().items():
        rows.append({"channel": name, "version": None if ptr is None else ptr.version,
                     "moved": None if ptr is None else pd.to_datetime(ptr.moved_ms, unit="ms",
                                                                      utc=True),
                     "by": None if ptr is None else ptr.by,
                     "reason": None if ptr is None else ptr.reason})
    st.dataframe(pd.DataFrame(rows), hide_index=True)

    st.subheader("Paper actors")
    actors = run.actors()
    if not actors:
        empty("No paper actors", "They appear when `raytrade paper` exports to paper/<actor>/.")
        return
    table: list[dict[str, object]] = []
    alerts: list[str] = []
    for actor in actors:
        h = run.paper(actor).health
        trader = h.get("trader") or {}
        faults = h.get("unresolved_faults") or []
        table.append({"actor": actor, "symbol": h.get("symbol"), "state": h.get("state"),
                      "stale": h.get("stale"), "equity": trader.get("equity"),
                      "position": trader.get("position"),
                      "policy version": (h.get("executor") or {}).get("version"),
                      "faults": len(faults)})
        alerts.extend(f"{actor}: {f}" for f in faults)
    st.dataframe(pd.DataFrame(table), hide_index=True)
    st.subheader("Alerts")
    if alerts:
        for a in alerts:
            st.error(a)
    else:
        st.success("No unresolved faults.")


body()
