"""Exports a trader's journal to the run store under ``paper/<actor>/``: the record the
dashboard shows and the promotion gate reads (format in ``algos/storage/promotion.py``).

- ``equity.jsonl``: ``{"ts", "equity", "position", "version", "close"}`` per decided bar
  (``close``: the bar's close price, for the dashboard's price chart);
- ``trades.jsonl``: every fill;
- ``health.json``: feed and trader state, counters, and ``unresolved_faults``.

Each object is rewritten whole and atomically (the store's ``put``); an unreachable store
is retried at the next export, and trading never waits on it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from raytrade.actors.journal import Journal
from raytrade.algos.storage.blobstore import BlobStore, StoreError
from raytrade.envs.errors import TemporaryError

log = logging.getLogger(__name__)


def equity_lines(journal: Journal, symbol: str) -> bytes:
    """The ``equity.jsonl`` body for one symbol."""
    rows = journal.equity_rows(symbol)
    closes = journal.closes(symbol)
    return "".join(json.dumps({"ts": ts, "equity": eq, "position": pos, "version": v,
                               "close": closes.get(ts)}) + "\n"
                   for ts, eq, pos, v in rows).encode()


def trade_lines(journal: Journal, symbol: str) -> bytes:
    """The ``trades.jsonl`` body for one symbol."""
    return "".join(json.dumps(f) + "\n" for f in journal.fills(symbol)).encode()


def paper_objects(journal: Journal, symbol: str, health: dict[str, Any]) -> dict[str, bytes]:
    """The three objects' bodies, read from the journal."""
    return {"equity.jsonl": equity_lines(journal, symbol),
            "trades.jsonl": trade_lines(journal, symbol),
            "health.json": json.dumps(health, indent=1, default=str).encode()}


def upload_paper(blobs: BlobStore, actor: str, objects: dict[str, bytes]) -> bool:
    """Write the objects under ``paper/<actor>/``; False (logged) if the store could not be
    reached (the next export tries again)."""
    try:
        for name, body in objects.items():
            blobs.put(f"paper/{actor}/{name}", body)
    except (StoreError, TemporaryError, OSError) as exc:
        log.warning("paper export to %s failed, retrying later: %s", blobs.uri, exc)
        return False
    return True
