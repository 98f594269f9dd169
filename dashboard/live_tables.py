"""The tables and numbers of the Live page, built from the typed live records
(``live_records``): pure pandas and numpy, no Streamlit, so they can be tested alone.

Slippage here is the price a live fill got against the price paper trading filled at on
the same bar, in basis points of the paper price, signed so that positive means live paid
more (bought higher or sold lower). The actor exports it per fill (``slippage_bps``);
a fill exported with paper's price but without the number gets it computed here the same
way, and a fill paper did not match on its bar is counted apart (``unmatched``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from raytrade.actors.live_export import slippage_bps
from raytrade.algos.storage.live_commands import LiveCommand
from raytrade.dashboard.live_reader import LiveRecord
from raytrade.dashboard.live_records import (
    OPEN_STATUSES,
    Halt,
    LiveEquity,
    LiveEvent,
    LiveFill,
    LiveOrder,
)

ORDER_COLUMNS = ("updated", "client order id", "side", "qty", "kind", "limit price",
                 "status", "filled", "avg price", "reduce only", "ack latency ms",
                 "venue order id", "policy version", "bar", "reason")
FILL_COLUMNS = ("time", "fill id", "client order id", "side", "qty", "price", "commission",
                "commission asset", "bar")
SLIPPAGE_COLUMNS = ("time", "fill id", "side", "qty", "live price", "paper price",
                    "slippage bps")
EVENT_COLUMNS = ("time", "kind", "by", "detail")
COMMAND_COLUMNS = ("issued", "action", "actors", "by", "reason", "id")
ACTOR_COLUMNS = ("actor", "symbol", "venue", "network", "dry run", "state", "halted",
                 "position", "target", "equity", "day PnL", "stream", "faults", "errors")


@dataclass(frozen=True)
class SlippageSummary:
    """Live against paper fill prices over an actor's fills (module docstring)."""

    compared: int
    """Fills with a paper fill on the same bar."""
    unmatched: int
    """Fills paper did not fill on their bar (no price to compare)."""
    median_bps: float | None
    p90_bps: float | None
    """90th percentile of the signed slippage: the costly tail."""
    mean_bps: float | None


def time_of(ms: int | float) -> pd.Timestamp:
    """An epoch time in ms as a UTC timestamp."""
    return pd.to_datetime(ms, unit="ms", utc=True)


def fill_slippage_bps(fill: LiveFill) -> float | None:
    """The fill's slippage against paper, bps (exported, else computed from paper's
    price); None when paper did not fill that bar."""
    if fill.slippage_bps is not None:
        return fill.slippage_bps if math.isfinite(fill.slippage_bps) else None
    return slippage_bps(fill.side, fill.price, fill.paper_price)


def slippage_summary(fills: Iterable[LiveFill]) -> SlippageSummary:
    """Median, 90th percentile and mean of the fills' slippage against paper (bps)."""
    values: list[float] = []
    unmatched = 0
    for fill in fills:
        bps = fill_slippage_bps(fill)
        if bps is None:
            unmatched += 1
        else:
            values.append(bps)
    if not values:
        return SlippageSummary(0, unmatched, None, None, None)
    arr = np.asarray(values)
    return SlippageSummary(len(values), unmatched, float(np.median(arr)),
                           float(np.percentile(arr, 90)), float(arr.mean()))


def slippage_table(fills: Sequence[LiveFill], limit: int = 200) -> pd.DataFrame:
    """One row per fill (newest first): live and paper price and the slippage."""
    rows = [{"time": time_of(f.at_ms), "fill id": f.fill_id, "side": f.side, "qty": f.qty,
             "live price": f.price, "paper price": f.paper_price,
             "slippage bps": fill_slippage_bps(f)} for f in _newest(fills, limit)]
    return pd.DataFrame(rows, columns=list(SLIPPAGE_COLUMNS))


def latest_orders(orders: Iterable[LiveOrder]) -> list[LiveOrder]:
    """Each order's latest state (the last line written for its client order id), newest
    update first."""
    latest: dict[str, LiveOrder] = {}
    for order in orders:
        latest[order.client_order_id] = order
    return sorted(latest.values(), key=lambda o: o.updated_ms, reverse=True)


def orders_table(orders: Iterable[LiveOrder], limit: int = 100) -> pd.DataFrame:
    """The latest state of the newest ``limit`` orders."""
    return _orders_frame(latest_orders(orders)[:limit])


def open_orders_table(orders: Iterable[LiveOrder]) -> pd.DataFrame:
    """The orders that may still fill (health's ``open_orders``), newest first."""
    return _orders_frame([o for o in latest_orders(orders) if o.status in OPEN_STATUSES])


def _orders_frame(orders: Sequence[LiveOrder]) -> pd.DataFrame:
    rows = [{"updated": time_of(o.updated_ms), "client order id": o.client_order_id,
             "side": o.side, "qty": o.qty, "kind": o.kind, "limit price": o.limit_price,
             "status": o.status, "filled": o.filled_qty, "avg price": o.avg_price,
             "reduce only": o.reduce_only,
             "ack latency ms": None if o.ack_ms is None else o.ack_ms - o.sent_ms,
             "venue order id": o.venue_order_id, "policy version": o.version,
             "bar": time_of(o.bar_ts), "reason": o.reason} for o in orders]
    return pd.DataFrame(rows, columns=list(ORDER_COLUMNS))


def fills_table(fills: Sequence[LiveFill], limit: int = 100) -> pd.DataFrame:
    """The newest ``limit`` fills, newest first."""
    rows = [{"time": time_of(f.at_ms), "fill id": f.fill_id,
             "client order id": f.client_order_id, "side": f.side, "qty": f.qty,
             "price": f.price, "commission": f.commission,
             "commission asset": f.commission_asset, "bar": time_of(f.bar_ts)}
            for f in _newest(fills, limit)]
    return pd.DataFrame(rows, columns=list(FILL_COLUMNS))


def equity_frame(equity: Sequence[LiveEquity]) -> pd.DataFrame:
    """Equity per bar, indexed by bar time: ``live``, and ``paper`` beside it when the
    actor exported paper's equity for any bar."""
    frame = pd.DataFrame({"live": [e.equity for e in equity],
                          "paper": [e.paper_equity for e in equity]},
                         index=pd.DatetimeIndex([time_of(e.ts) for e in equity], name="time"),
                         dtype=float)
    return frame if frame["paper"].notna().any() else frame[["live"]]


def position_frame(equity: Sequence[LiveEquity]) -> pd.DataFrame:
    """The position held per bar (base units, negative short), indexed by bar time."""
    return pd.DataFrame({"position": [e.position_qty for e in equity]},
                        index=pd.DatetimeIndex([time_of(e.ts) for e in equity], name="time"),
                        dtype=float)


def events_table(events: Sequence[LiveEvent], limit: int = 200) -> pd.DataFrame:
    """The newest ``limit`` events, newest first."""
    rows = [{"time": time_of(e.at_ms), "kind": e.kind, "by": e.by, "detail": e.detail}
            for e in sorted(events, key=lambda e: e.at_ms, reverse=True)[:limit]]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def commands_table(commands: Sequence[LiveCommand], limit: int = 50) -> pd.DataFrame:
    """The newest ``limit`` operator commands, newest first, with who issued them."""
    rows = [{"issued": time_of(c.at_ms), "action": c.action,
             "actors": ", ".join(c.actors) if c.actors else "all", "by": c.by,
             "reason": c.reason, "id": c.id}
            for c in sorted(commands, key=lambda c: c.id, reverse=True)[:limit]]
    return pd.DataFrame(rows, columns=list(COMMAND_COLUMNS))


def halt_text(halt: Halt) -> str:
    """Why, by whom and since when an actor is halted, in one line."""
    when = time_of(halt.at_ms).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"HALTED ({halt.kind}) by {halt.by} at {when}: {halt.reason or 'no reason given'}"


def actors_table(records: Sequence[LiveRecord]) -> pd.DataFrame:
    """One row per live actor: where it trades, whether it is halted, its position,
    equity and day PnL, stream state and how many faults and skipped lines it has."""
    rows = []
    for rec in records:
        h = rec.health
        rows.append({
            "actor": rec.actor, "symbol": h.symbol if h else None,
            "venue": h.venue if h else None, "network": h.network if h else None,
            "dry run": h.dry_run if h else None, "state": h.state if h else "no health yet",
            "halted": (f"{h.halted.kind} by {h.halted.by}" if h.halted else "no")
            if h else None,
            "position": h.position_qty if h else None, "target": h.target if h else None,
            "equity": h.equity if h else None, "day PnL": h.day_pnl if h else None,
            "stream": ("up" if h.stream_up else "down") if h else None,
            "faults": len(h.unresolved_faults) if h else 0, "errors": len(rec.errors)})
    return pd.DataFrame(rows, columns=list(ACTOR_COLUMNS))


def _newest(fills: Sequence[LiveFill], limit: int) -> list[LiveFill]:
    return sorted(fills, key=lambda f: (f.at_ms, f.fill_id), reverse=True)[:limit]
