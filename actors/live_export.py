"""The live actor's record in the store (``live/<actor>/``), read from its orders journal.

Objects (``algos/storage/keys.py``): ``health.json`` (halts, position, equity, stream,
last reconciliation, latencies, faults), ``orders.jsonl`` (each order's latest state),
``fills.jsonl`` (with the paper twin's fill price on the same bar and the slippage
against it, in basis points, positive when live paid more), ``equity.jsonl`` and
``events.jsonl``. The dashboard's Live page reads them; they never carry keys (the journal
has none).
"""

from __future__ import annotations

import json
from typing import Any

from raytrade.actors.live_ledger import LiveLedger
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore

MAX_ROWS = 5_000
"""Newest orders, fills and events exported (the journal keeps them all)."""


def _lines(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode()


def order_record(row: dict[str, Any]) -> dict[str, Any]:
    """One order as exported."""
    filled = float(row["filled_qty"])
    return {"client_order_id": row["cid"], "symbol": row["symbol"], "bar_ts": row["bar_ts"],
            "version": row["version"], "leg": row["leg"], "side": row["side"],
            "qty": row["qty"], "kind": row["kind"], "limit_price": row["limit_price"],
            "reduce_only": bool(row["reduce_only"]), "status": row["status"],
            "venue_order_id": row["venue_order_id"], "filled_qty": filled,
            "avg_price": float(row["cum_quote"]) / filled if filled > 0 else None,
            "reason": row["reason"], "sent_ms": row["sent_ms"], "ack_ms": row["ack_ms"],
            "updated_ms": row["updated_ms"]}


def slippage_bps(side: str, price: float, paper_price: float | None) -> float | None:
    """A live fill's slippage against the paper twin's fill on the same bar, basis points,
    positive when live paid more (bought higher or sold lower); None without a paper
    price."""
    if paper_price is None or not paper_price > 0:
        return None
    sign = 1.0 if side == "buy" else -1.0
    return sign * (price - paper_price) / paper_price * 1e4


def fill_record(row: dict[str, Any]) -> dict[str, Any]:
    """One fill as exported, with its slippage against the paper twin's fill."""
    paper = row["paper_price"]
    slippage = slippage_bps(str(row["side"]), float(row["price"]),
                            None if paper is None else float(paper))
    return {"fill_id": row["fill_id"], "client_order_id": row["cid"],
            "symbol": row["symbol"], "side": row["side"], "qty": row["qty"],
            "price": row["price"], "commission": row["commission"],
            "commission_asset": row["commission_asset"], "at_ms": row["at_ms"],
            "bar_ts": row["bar_ts"], "estimated": bool(row["estimated"]),
            "paper_price": paper, "slippage_bps": slippage}


def live_objects(ledger: LiveLedger, symbol: str, health: dict[str, Any]) -> dict[str, bytes]:
    """The objects' bodies (module docstring)."""
    health = {**health, "open_orders": [order_record(r) for r in health.get("open_orders",
                                                                           [])]}
    equity = [{"ts": r["ts"], "equity": r["equity"], "cash": r["cash"],
               "position_qty": r["position"], "target": r["target"], "price": r["price"],
               "paper_equity": r["paper_equity"], "pnl": None} for r in
              ledger.equity_rows(symbol)]
    if equity:
        first = equity[0]["equity"]
        for r in equity:
            r["pnl"] = r["equity"] - first
    events = [{"at_ms": e["at_ms"], "kind": e["kind"], "by": e["by"], "detail": e["detail"]}
              for e in ledger.events(MAX_ROWS)]
    return {keys.LIVE_HEALTH: json.dumps(health, indent=1, default=str).encode(),
            keys.LIVE_ORDERS: _lines([order_record(r) for r in ledger.orders(limit=MAX_ROWS)]),
            keys.LIVE_FILLS: _lines([fill_record(r) for r in ledger.fills(MAX_ROWS)]),
            keys.LIVE_EQUITY: _lines(equity[-MAX_ROWS:]),
            keys.LIVE_EVENTS: _lines(events)}


def upload_live(blobs: BlobStore, actor: str, objects: dict[str, bytes]) -> None:
    """Write the objects under ``live/<actor>/`` (health last: its time says the rest is
    at least that fresh)."""
    for name, data in objects.items():
        if name != keys.LIVE_HEALTH:
            blobs.put(keys.live_key(actor, name), data)
    blobs.put(keys.live_key(actor, keys.LIVE_HEALTH), objects[keys.LIVE_HEALTH])
