"""Live trading: every live actor at a glance, then per actor: where it trades (MAINNET in
red, dry run marked), whether and why it is halted (who, why, since when), position,
equity and day PnL, the equity curve with paper's beside it, open orders, orders, fills,
the slippage of live fills against paper's on the same bars, and its events
(reconciliations, halts, operator actions). Below them the operator commands issued, with
who issued each.

Only when the dashboard was started with ``--enable-actions``: the kill switch ("Halt
all", "Flatten all", and Halt, Flatten or Resume of one actor), each with a required
reason and a confirmation, written to the store as issued by the viewer
(``dashboard/live_actions.py``). Tables and numbers come from ``dashboard/live_tables.py``.
"""

from __future__ import annotations

import time

import streamlit as st
from raytrade.dashboard.charts import value_lines
from raytrade.dashboard.context import (
    actions_enabled,
    empty,
    reader,
    refresh_s,
    show_errors,
    viewer,
)
from raytrade.dashboard.live_actions import EFFECTS, describe, operator_command
from raytrade.dashboard.live_reader import LiveRecord
from raytrade.dashboard.live_records import LiveHealth
from raytrade.dashboard.live_tables import (
    actors_table,
    commands_table,
    equity_frame,
    events_table,
    fills_table,
    halt_text,
    open_orders_table,
    orders_table,
    position_frame,
    slippage_summary,
    slippage_table,
    time_of,
)
from raytrade.envs.errors import RaytradeError

st.title("Live trading")
run = reader()
NETWORK_BADGES = {"mainnet": ":red-badge[MAINNET: real money]",
                  "testnet": ":blue-badge[testnet]", "loopback": ":gray-badge[loopback]"}



def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted, or a dash before the actor has one (no bar traded yet)."""
    return "-" if value is None else format(value, spec)

def send(action: str, actors: tuple[str, ...], reason: str, confirmed: bool,
         by: str | None) -> None:
    """Write one operator command, or say why nothing was written."""
    try:
        command = operator_command(run.store.blobs, action, actors=actors, reason=reason,
                                   confirmed=confirmed, by=by)
    except RaytradeError as exc:
        st.error(str(exc))
        return
    st.success(describe(command))


def kill_switch() -> None:
    """The operator's controls (shown only with ``--enable-actions``)."""
    st.subheader("Kill switch")
    acting = viewer()
    st.caption("Commands are recorded as issued by "
               f"{acting or 'nobody: your identity is unknown, so nothing can be sent'}; "
               "every live actor applies them within one bar.")
    with st.form("live_all", clear_on_submit=True):
        st.markdown("**Every live actor**")
        reason = st.text_input("Reason (required, recorded with the command)",
                               key="all_reason")
        confirmed = st.checkbox("I confirm: this acts on every live actor", key="all_ok")
        left, right = st.columns(2)
        halt_all = left.form_submit_button("Halt all", type="primary")
        flatten_all = right.form_submit_button("Flatten all")
    if halt_all or flatten_all:
        send("halt" if halt_all else "flatten", (), reason, confirmed, acting)
    actors, _ = run.live.actors()
    if not actors:
        return
    with st.form("live_one", clear_on_submit=True):
        st.markdown("**One actor**")
        actor = st.selectbox("Actor", actors, key="command_actor")
        reason_one = st.text_input("Reason (required, recorded with the command)",
                                   key="one_reason")
        confirmed_one = st.checkbox("I confirm this command", key="one_ok")
        cols = st.columns(3)
        pressed = {action: col.form_submit_button(action.capitalize())
                   for action, col in zip(("halt", "flatten", "resume"), cols, strict=True)}
    st.caption(" ".join(f"{action.capitalize()}: the actor {effect}." for action, effect
                        in EFFECTS.items() if action != "adopt"))
    for action, hit in pressed.items():
        if hit:
            send(action, (str(actor),), reason_one, confirmed_one, acting)


def header(h: LiveHealth) -> None:
    """Where the actor trades, its halt state, position, equity and health."""
    badges = [NETWORK_BADGES[h.network], f":violet-badge[{h.venue}]"]
    if h.dry_run:
        badges.append(":orange-badge[dry run: no orders sent]")
    st.markdown(f"**{h.actor}** · {h.symbol} · " + " ".join(badges))
    if h.halted is not None:
        st.error(halt_text(h.halted))
    else:
        st.success(f"Trading ({h.state})")
    for fault in h.unresolved_faults:
        st.error(fault)
    cols = st.columns(5)
    cols[0].metric("Position", _fmt(h.position_qty, "+,.8g"))
    cols[1].metric("Target", f"{h.target:+.0%}")
    cols[2].metric("Equity", _fmt(h.equity, ",.2f"))
    cols[3].metric("Day PnL", _fmt(h.day_pnl, "+,.2f"))
    cols[4].metric("Price", _fmt(h.price, ",.8g"))
    row = st.columns(4)
    row[0].metric("User stream", "up" if h.stream_up else "DOWN")
    rec = h.last_reconcile
    row[1].metric("Last reconciliation", "never" if rec is None else
                   "ok" if rec.ok else "MISMATCH")
    lat = h.order_latency_ms
    row[2].metric("Order ack p50 / p99 (ms)", f"{_num(lat.p50)} / {_num(lat.p99)}")
    row[3].metric("Open orders", len(h.open_orders))
    reported = time_of(h.updated_at * 1000)
    st.caption(f"State {h.state}; reported {reported:%Y-%m-%d %H:%M:%S} UTC "
               f"({_age(time.time() - h.updated_at)} ago)."
               + ("" if rec is None else f" Last reconciliation "
                  f"{time_of(rec.at_ms):%Y-%m-%d %H:%M:%S} UTC: {rec.detail}"))


def actor_page(rec: LiveRecord) -> None:
    """Everything about one actor."""
    show_errors(list(rec.errors))
    if rec.health is None:
        empty("No health report", "The actor writes live/<actor>/health.json once it runs.")
    else:
        header(rec.health)
    st.subheader("Equity (live and paper on the same bars)")
    if rec.equity:
        st.altair_chart(value_lines(equity_frame(rec.equity)))
        st.subheader("Position (base units)")
        st.altair_chart(value_lines(position_frame(rec.equity), "position")
                        .mark_line(interpolate="step-after"))
    else:
        empty("No traded bars", "Equity appears after the actor's first decided bar.")
    st.subheader("Open orders")
    opened = open_orders_table(rec.health.open_orders if rec.health else ())
    if len(opened):
        st.dataframe(opened, hide_index=True)
    else:
        st.caption("No open orders.")
    st.subheader("Orders (latest state, newest first)")
    if rec.orders:
        st.dataframe(orders_table(rec.orders), hide_index=True)
    else:
        st.caption("No orders sent.")
    st.subheader("Fills")
    if rec.fills:
        st.dataframe(fills_table(rec.fills), hide_index=True)
    else:
        st.caption("No fills.")
    st.subheader("Slippage against paper (bps, positive: live paid more)")
    summary = slippage_summary(rec.fills)
    cols = st.columns(4)
    cols[0].metric("Fills compared", summary.compared)
    cols[1].metric("Median slippage (bps)", _num(summary.median_bps))
    cols[2].metric("p90 slippage (bps)", _num(summary.p90_bps))
    cols[3].metric("Mean slippage (bps)", _num(summary.mean_bps))
    if summary.unmatched:
        st.caption(f"{summary.unmatched} fills had no paper fill on their bar.")
    if rec.fills:
        st.dataframe(slippage_table(rec.fills), hide_index=True)
    st.subheader("Events (reconciliations, halts, operator actions)")
    if rec.events:
        st.dataframe(events_table(rec.events), hide_index=True)
    else:
        st.caption("No events.")


@st.fragment(run_every=refresh_s())
def body() -> None:
    actors, bad = run.live.actors()
    show_errors(bad)
    if not actors:
        empty("No live actors", "Start `raytrade live --store ...`; each actor exports to "
              "live/<actor>/.")
    else:
        records = [run.live.record(a) for a in actors]
        st.subheader("Actors")
        st.dataframe(actors_table(records), hide_index=True)
        actor = st.selectbox("Actor", actors, key="live_actor")
        actor_page(records[actors.index(str(actor))])
    st.subheader("Operator commands (newest first)")
    commands, errors = run.live.commands()
    show_errors(errors)
    if commands:
        st.dataframe(commands_table(commands), hide_index=True)
    else:
        st.caption("No operator commands issued.")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.2f}"


def _age(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 172_800 else f"{s / 86_400:,.0f} days"


if actions_enabled():
    kill_switch()  # first: a command written now shows in the tables below
body()
