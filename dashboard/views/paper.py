"""Paper trading, per actor: equity and drawdown, position on the price chart with entries
and exits, the costs per policy version (net beside gross return, cost drag, fees,
slippage, borrow, turnover, trades per day, holding time, halted: see
``dashboard/cost_tables.py``), trades, the policy version timeline, feed health, live
metrics from the shared module, and the promotion gate's verdict for the version on
``paper``."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from raytrade.algos.storage.promotion import GateLimits, live_gate
from raytrade.dashboard.charts import value_lines
from raytrade.dashboard.context import empty, reader, refresh_s, show_errors
from raytrade.dashboard.cost_tables import paper_costs
from raytrade.dashboard.run_reader import PaperRecord, finite

st.title("Paper trading")
run = reader()


def price_chart(rec: PaperRecord) -> alt.LayerChart:
    """Close price with the held position as background bands and fills as markers."""
    eq = rec.equity.dropna(subset=["close"])
    line = alt.Chart(eq).mark_line().encode(x=alt.X("ts:T", title=None),
                                            y=alt.Y("close:Q", scale=alt.Scale(zero=False),
                                                    title="close"))
    pos = alt.Chart(eq).mark_area(opacity=0.25).encode(
        x="ts:T", y=alt.Y("position:Q", title="position"))
    layers: list[alt.Chart] = [line]
    if len(rec.trades) and "time" in rec.trades:
        fills = rec.trades.assign(side=lambda d: d["qty"].map(lambda q: "buy" if q > 0
                                                              else "sell"))
        layers.append(alt.Chart(fills).mark_point(filled=True, size=70).encode(
            x="time:T", y=alt.Y("price:Q"), color=alt.Color(
                "side:N", scale=alt.Scale(domain=["buy", "sell"], range=["green", "red"])),
            tooltip=["time:T", "price:Q", "qty:Q", "target:Q", "fee:Q"]))
    chart: alt.LayerChart = alt.layer(alt.layer(*layers), pos).resolve_scale(y="independent")
    return chart


@st.fragment(run_every=refresh_s())
def body() -> None:
    actors = run.actors()
    if not actors:
        empty("No paper actors", "Start `raytrade paper --store ...`; each actor exports "
              "to paper/<actor>/.")
        return
    actor = st.selectbox("Actor", actors, key="actor")
    rec = run.paper(actor)
    show_errors(rec.errors)
    h = rec.health
    faults = h.get("unresolved_faults") or []
    for f in faults:
        st.error(f)
    m = rec.live_metrics()
    cols = st.columns(5)
    cols[0].metric("Bars", len(rec.equity))
    cols[1].metric("Equity", f"{rec.equity['equity'].iloc[-1]:,.2f}" if len(rec.equity)
                   else "n/a")
    cols[2].metric("Total return", _pct(m.get("total_return")))
    cols[3].metric("Sharpe", _num(m.get("sharpe")))
    cols[4].metric("Max drawdown", _pct(m.get("max_drawdown")))
    if not len(rec.equity):
        empty("No traded bars", "The actor is warming up or waiting for a policy.")
    else:
        st.subheader("Costs per policy version (fractions of starting equity)")
        st.dataframe(paper_costs(rec.equity, rec.calendar), hide_index=True)
        st.subheader("Equity")
        st.altair_chart(value_lines(rec.equity.set_index("ts")[["equity"]]))
        st.subheader("Drawdown")
        st.area_chart(rec.equity.set_index("ts")[["drawdown"]])
        st.subheader("Position on price, with fills")
        st.altair_chart(price_chart(rec))
        st.subheader("Policy version")
        st.line_chart(rec.equity.set_index("ts")[["version"]])
    st.subheader("Trades")
    if len(rec.trades):
        st.dataframe(rec.trades, hide_index=True)
    else:
        empty("No trades", "Fills appear here as the policy trades.")
    st.subheader("Feed health")
    feed = h.get("feed") or {}
    hcols = st.columns(4)
    hcols[0].metric("State", str(feed.get("state", "unknown")))
    hcols[1].metric("Stale", "yes" if h.get("stale") else "no")
    counters = feed.get("counters") or {}
    hcols[2].metric("Reconnects", int(counters.get("disconnects", 0)))
    hcols[3].metric("Rejected messages", int(counters.get("rejected", 0)) +
                   int(counters.get("malformed", 0)))
    if counters:
        st.dataframe(pd.DataFrame([counters]), hide_index=True)
    st.subheader("Promotion gate (paper → live)")
    verdict = live_gate(run.store, GateLimits())
    (st.success if verdict.passed else st.warning)(verdict.summary())
    if verdict.actors:
        st.dataframe(pd.DataFrame(verdict.actors).T, hide_index=False)


def _pct(v: object) -> str:
    f = finite(v)
    return "n/a" if f is None else f"{f:.2%}"


def _num(v: object) -> str:
    f = finite(v)
    return "n/a" if f is None else f"{f:.2f}"


body()
