"""Models: versions with their manifests and metrics, channel history, and (only when the
dashboard was started with ``--enable-actions``) promote and rollback through the store's
gate, each with a required reason and a confirmation."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from raytrade.algos.storage.policy_store import version_name
from raytrade.algos.storage.promotion import promote
from raytrade.dashboard.context import actions_enabled, empty, reader, refresh_s, viewer
from raytrade.envs.errors import RaytradeError

st.title("Models")
run = reader()


def summary(version: int, manifest: dict[str, Any]) -> dict[str, Any]:
    """One table row: when, from which training step, with which validation Sharpe."""
    training = manifest.get("training") or {}
    sharpes = [per.get("greedy", {}).get("sharpe") for per in
               ((manifest.get("evaluation") or {}).get("datasets") or {}).values()]
    created_ms = manifest.get("created_ms")
    return {"version": version_name(version),
            "created": pd.to_datetime(int(created_ms), unit="ms", utc=True)
            if isinstance(created_ms, int | float) else None,
            "iteration": training.get("iteration"),
            "env steps": training.get("env_steps_trained") or training.get("env_steps"),
            "validation Sharpe": ", ".join(f"{s:.2f}" for s in sharpes
                                           if isinstance(s, int | float)) or None,
            "feature spec": str(manifest.get("feature_spec_hash", ""))[:12]}


@st.fragment(run_every=refresh_s())
def body() -> None:
    versions = run.versions()
    if not versions:
        empty("No policy versions", "Training publishes bundles to policies/ and points "
              "`candidate` at them.")
        return
    manifests = {v: run.manifest(v) for v in versions[-200:]}
    st.subheader("Versions")
    st.dataframe(pd.DataFrame([summary(v, m) for v, m in manifests.items()][::-1]),
                 hide_index=True)
    chosen = st.selectbox("Manifest of", list(manifests)[::-1], format_func=version_name,
                          key="manifest_of")
    with st.expander(f"{version_name(chosen)} manifest"):
        st.json(manifests[chosen], expanded=False)
    st.subheader("Channel history")
    moves = run.history()
    if moves:
        st.dataframe(pd.DataFrame([{
            "at": pd.to_datetime(m.at_ms, unit="ms", utc=True), "channel": m.channel,
            "from": m.from_version, "to": m.to_version, "kind": m.kind, "by": m.by,
            "reason": m.reason} for m in moves][::-1]), hide_index=True)
    else:
        empty("No channel moves", "Moves are logged when a channel first points somewhere.")


body()

if actions_enabled():
    st.subheader("Promote or roll back")
    acting = viewer()
    st.caption(f"Moves are logged as made by {acting or 'nobody: your identity is unknown'}.")
    with st.form("move"):
        action = st.radio("Action", ["promote to paper", "promote to live", "roll back paper",
                                     "roll back live"], horizontal=True)
        reason = st.text_input("Reason (required, logged with the move)")
        confirm = st.checkbox("I confirm this move")
        submitted = st.form_submit_button("Apply")
    if submitted:
        if not reason.strip() or not confirm:
            st.error("A reason and the confirmation are both required.")
        elif acting is None:
            st.error("Your identity is unknown (no login, or the proxy sent no identity "
                     "header): nothing was moved.")
        else:
            verb, channel = action.split()[0], action.split()[-1]
            store = run.store.acting_as(acting)  # the audit names the viewer
            try:
                if verb == "promote":
                    verdict, pointer = promote(store, channel, reason=reason.strip())
                    if pointer is None:
                        st.error(f"Refused by the gate: {verdict.summary()}")
                    else:
                        st.success(f"{channel} now serves {version_name(pointer.version)}")
                else:
                    pointer = store.rollback(channel, reason=reason.strip())
                    st.success(f"{channel} rolled back to {version_name(pointer.version)}")
            except RaytradeError as exc:
                st.error(str(exc))
