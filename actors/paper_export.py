"""A trader's record in the run store, under ``paper/<actor>/`` (keys in
``algos/storage/keys.py``): what the dashboard shows and the live gate judges (format in
``algos/storage/promotion.py``), and what lets the record survive the actor moving node.

- ``equity.jsonl``: ``{"ts", "equity", "position", "version", "close", "fees",
  "slippage", "borrow", "traded_notional", "trades", "halted"}`` per decided bar
  (``close``: the bar's close price, for the dashboard's price chart; the costs, traded
  notional and fill count are the account's cumulative counters after the bar, quote
  currency, and ``halted`` whether the drawdown halt has fired, so any slice of the record,
  one policy version's bars for instance, has its own costs);
- ``performance.json``: ``{"record": metrics, "versions": {version: metrics}}``, the shared
  metrics with costs (``algos.run_metrics.record_performance``: net and gross return, cost
  drag, fees, slippage, borrow, turnover, trades per day, holding time, ``halted``) of
  the whole record and of each policy version's bars, annualized with the market's trading
  calendar (the policy manifest's ``env.calendar``);
- ``trades.jsonl``: every fill;
- ``health.json``: feed and trader state, counters, and ``unresolved_faults``;
- ``record.json``: the exported record's length (``equity_rows``, ``first_ts``,
  ``last_ts``) and how many exports were refused (``refused_exports``);
- ``journal.sqlite.gz``: a snapshot of the SQLite journal, taken with SQLite's online
  backup API (a consistent copy while the trader runs) at the first export of a session and
  then every ``SNAPSHOT_EVERY_BARS`` decided bars.

Each object is rewritten whole and atomically (the store's ``put``); an unreachable store
is retried at the next export, and trading never waits on it.

**Surviving a move.** The journal lives on the node's disk. When Ray restarts the actor on
another node (the old one lost), the session calls ``restore_journal`` before opening its
journal: a missing local journal, or one behind the store's snapshot (the actor came back
to a node it left earlier), is replaced by the snapshot, so the account, the bars for the
feature warm-up and the equity history continue; the bars since the snapshot are fetched
again over REST and processed as catch-up. At most ``SNAPSHOT_EVERY_BARS`` bars of exact
live decisions are lost, never the record.

**Never shrinking.** ``upload_paper`` refuses to replace the store's record with one that
has fewer equity rows or starts later (the local journal lost history: the restore failed,
or the snapshot was missing). Refused exports write nothing but ``health.json``, which then
carries the refusal as an unresolved fault (the live gate fails, the dashboard shows it)
and the count (also in ``record.json``); an error is logged. The export is tried again each
time, so a record that is only behind (catching up after a restore) is written as soon as
it is as long as the store's.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import sqlite3
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raytrade.actors.journal import Journal, JournalError
from raytrade.algos.run_metrics import record_performance
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore, NotFoundError, StoreError
from raytrade.envs.accounting import BORROW, FEES, HALTED, SLIPPAGE, TRADES, TURNOVER
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import TemporaryError

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_BARS = 12
"""Decided bars between journal snapshots (12 five-minute bars: one an hour)."""
SNAPSHOT_META = "store_snapshot_ts"
"""Journal meta key: the newest equity row's bar time in the last snapshot taken."""
SHRINK_FAULT = "paper record export refused"


@dataclass(frozen=True)
class RecordSummary:
    """The length of an equity record: rows, and the first and last bar time (ms)."""

    equity_rows: int
    first_ts: int | None
    last_ts: int | None

    def loses_history_of(self, stored: RecordSummary) -> bool:
        """Whether replacing ``stored`` with this record would lose rows or its start."""
        if self.equity_rows < stored.equity_rows:
            return True
        return stored.first_ts is not None and (self.first_ts is None
                                                or self.first_ts > stored.first_ts)


_COUNTER_FIELDS = {"fees": FEES, "slippage": SLIPPAGE, "borrow": BORROW,
                   "traded_notional": TURNOVER, "trades": TRADES}


def equity_records(journal: Journal, symbol: str) -> list[dict[str, Any]]:
    """The ``equity.jsonl`` rows for one symbol (module docstring), oldest first."""
    closes = journal.closes(symbol)
    states = journal.account_states(symbol)
    out = []
    for ts, eq, pos, v in journal.equity_rows(symbol):
        row: dict[str, Any] = {"ts": ts, "equity": eq, "position": pos, "version": v,
                               "close": closes.get(ts)}
        acct = (states.get(ts) or {}).get("acct")
        if isinstance(acct, list) and len(acct) > max(HALTED, *_COUNTER_FIELDS.values()):
            row.update({k: float(acct[i]) for k, i in _COUNTER_FIELDS.items()})
            row["trades"] = int(acct[TRADES])
            row["halted"] = acct[HALTED] != 0.0
        out.append(row)
    return out


def performance_json(rows: list[dict[str, Any]], calendar: TradingCalendar = ALWAYS) -> bytes:
    """The ``performance.json`` body: metrics of the whole record and per version, with
    ``calendar``'s bars per year."""
    versions: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        versions.setdefault(str(r["version"]), []).append(r)
    return json.dumps({"record": record_performance(rows, calendar),
                       "versions": {v: record_performance(vr, calendar)
                                    for v, vr in versions.items()}},
                      indent=1, default=float).encode()


def trade_lines(journal: Journal, symbol: str) -> bytes:
    """The ``trades.jsonl`` body for one symbol."""
    return "".join(json.dumps(f) + "\n" for f in journal.fills(symbol)).encode()


def journal_snapshot(journal: Journal) -> bytes:
    """A consistent copy of the open journal, as SQLite file bytes (SQLite's online backup
    API, through the journal's own connection: call it from the thread that writes the
    journal). ``upload_paper`` compresses it off that thread."""
    with tempfile.TemporaryDirectory(prefix="journal-snapshot-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        target = sqlite3.connect(path)
        try:
            journal.db.backup(target)
        finally:
            target.close()
        return path.read_bytes()


def paper_objects(journal: Journal, symbol: str, health: dict[str, Any], *,
                  snapshot_every_bars: int = SNAPSHOT_EVERY_BARS,
                  calendar: TradingCalendar = ALWAYS) -> dict[str, bytes]:
    """The objects' bodies, read from the journal, plus a journal snapshot (uncompressed)
    when one is due (the first export of a journal, then every ``snapshot_every_bars``
    equity rows). Runs on the thread that owns the journal. ``calendar``: the market's
    trading calendar, for the bars per year of ``performance.json``."""
    records = equity_records(journal, symbol)
    objects = {keys.EQUITY: "".join(json.dumps(r) + "\n" for r in records).encode(),
               keys.PERFORMANCE: performance_json(records, calendar),
               keys.TRADES: trade_lines(journal, symbol),
               keys.HEALTH: json.dumps(health, indent=1, default=str).encode()}
    rows = journal.equity_rows(symbol)
    if rows:
        snapped = journal.meta(SNAPSHOT_META)
        since = rows if snapped is None else journal.equity_rows(symbol, int(snapped))
        if snapped is None or len(since) >= snapshot_every_bars:
            journal.set_meta(SNAPSHOT_META, str(rows[-1][0]))  # part of the snapshot too
            objects[keys.JOURNAL_SNAPSHOT] = journal_snapshot(journal)
    return objects


def summarize(equity_jsonl: bytes) -> RecordSummary:
    """Rows and first/last bar time of an ``equity.jsonl`` body."""
    lines = [line for line in equity_jsonl.splitlines() if line.strip()]
    if not lines:
        return RecordSummary(0, None, None)

    def ts(line: bytes) -> int | None:
        try:
            return int(json.loads(line)["ts"])
        except (ValueError, KeyError, TypeError):
            return None

    return RecordSummary(len(lines), ts(lines[0]), ts(lines[-1]))


def stored_record(blobs: BlobStore, actor: str) -> tuple[RecordSummary | None, int]:
    """The store's record summary (None if the actor has none) and its refused-export
    count; from ``record.json``, or from ``equity.jsonl`` itself for a record written before
    ``record.json`` existed."""
    try:
        data = json.loads(blobs.get(keys.paper_key(actor, keys.RECORD)).data)
        summary = RecordSummary(int(data["equity_rows"]), data.get("first_ts"),
                                data.get("last_ts"))
        return summary, int(data.get("refused_exports", 0))
    except NotFoundError:
        pass
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("%s/%s is malformed (%s): judging by equity.jsonl", blobs.uri,
                    keys.paper_key(actor, keys.RECORD), exc)
    try:
        return summarize(blobs.get(keys.paper_key(actor, keys.EQUITY)).data), 0
    except NotFoundError:
        return None, 0


def upload_paper(blobs: BlobStore, actor: str, objects: dict[str, bytes]) -> bool:
    """Write the objects under ``paper/<actor>/`` unless that would shrink the store's
    record (module docstring). False (logged) if the store could not be reached (the next
    export tries again) or the export was refused."""
    try:
        stored, refused = stored_record(blobs, actor)
        new = summarize(objects[keys.EQUITY])
        if stored is not None and new.loses_history_of(stored):
            _refuse(blobs, actor, objects, stored, new, refused + 1)
            return False
        for name in (keys.JOURNAL_SNAPSHOT, keys.EQUITY, keys.PERFORMANCE, keys.TRADES,
                     keys.HEALTH):
            if name in objects:
                body = objects[name]
                if name == keys.HEALTH:
                    body = _with_record(body, refused, None)
                elif name == keys.JOURNAL_SNAPSHOT:
                    body = gzip.compress(body, compresslevel=6)
                blobs.put(keys.paper_key(actor, name), body)
        blobs.put(keys.paper_key(actor, keys.RECORD), _record_json(new, refused))
    except (StoreError, TemporaryError, OSError) as exc:
        log.warning("paper export to %s failed, retrying later: %s", blobs.uri, exc)
        return False
    return True


def _refuse(blobs: BlobStore, actor: str, objects: dict[str, bytes], stored: RecordSummary,
            new: RecordSummary, refused: int) -> None:
    why = (f"{SHRINK_FAULT}: the local journal has {new.equity_rows} equity rows from "
           f"{new.first_ts}, the store's {keys.paper_key(actor, keys.EQUITY)} has "
           f"{stored.equity_rows} from {stored.first_ts}; the store's record is kept (restore "
           f"the journal from {keys.paper_key(actor, keys.JOURNAL_SNAPSHOT)}, or archive the "
           "store's record to start a new one)")
    log.error("%s/%s: %s", blobs.uri, keys.paper_prefix(actor), why)
    blobs.put(keys.paper_key(actor, keys.HEALTH), _with_record(objects[keys.HEALTH], refused,
                                                               why))
    blobs.put(keys.paper_key(actor, keys.RECORD), _record_json(stored, refused))


def _record_json(summary: RecordSummary, refused: int) -> bytes:
    return json.dumps({**asdict(summary), "refused_exports": refused}).encode()


def _with_record(health_json: bytes, refused: int, refusal: str | None) -> bytes:
    """``health.json`` with the export's own state: the refusal as an unresolved fault."""
    try:
        health = json.loads(health_json)
    except json.JSONDecodeError:
        health = {"unresolved_faults": ["health.json did not parse"]}
    if not isinstance(health, dict):
        health = {"unresolved_faults": ["health.json is not an object"]}
    health["record"] = {"refused_exports": refused, "refusal": refusal}
    if refusal is not None:
        health["unresolved_faults"] = [*health.get("unresolved_faults", []), refusal]
    return json.dumps(health, indent=1, default=str).encode()


def _last_ts(path: Path, symbol: str) -> int | None:
    journal = Journal(path, synchronous="NORMAL")
    try:
        rows = journal.equity_rows(symbol)
    finally:
        journal.close()
    return rows[-1][0] if rows else None


def restore_journal(blobs: BlobStore, actor: str, symbol: str, path: str | Path) -> str:
    """Before a session opens its journal: install the store's snapshot if the local
    journal is missing or behind it (module docstring). Returns what happened:
    ``"restored"``, ``"kept"`` (the local journal is as new), ``"no snapshot"`` or
    ``"unavailable"`` (the store or snapshot could not be read: logged; the session starts
    on what it has and the export refuses to shrink the store's record)."""
    path = Path(path)
    try:
        blob = blobs.get(keys.paper_key(actor, keys.JOURNAL_SNAPSHOT))
        data = gzip.decompress(blob.data)
    except NotFoundError:
        return "no snapshot"
    except (StoreError, TemporaryError, OSError, EOFError) as exc:
        log.error("%s: cannot read the journal snapshot from %s: %s", actor, blobs.uri, exc)
        return "unavailable"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore-{uuid.uuid4().hex}")
    try:
        tmp.write_bytes(data)
        try:
            snapshot_ts = _last_ts(tmp, symbol)
        except JournalError as exc:
            log.error("%s: the journal snapshot in %s is unusable: %s", actor, blobs.uri, exc)
            return "unavailable"
        if path.exists():
            try:
                local_ts = _last_ts(path, symbol)
            except JournalError:
                return "kept"  # locked or corrupt: the session's own open says why
            if local_ts is not None and (snapshot_ts is None or local_ts >= snapshot_ts):
                return "kept"
            stale = path.with_name(f"{path.name}.stale-{int(time.time() * 1000)}")
            os.replace(path, stale)
            log.warning("%s: local journal (last bar %s) is behind the store's snapshot (%s);"
                        " kept aside as %s", actor, local_ts, snapshot_ts, stale)
        os.replace(tmp, path)
        log.warning("%s: journal restored from %s (last bar %s)", actor,
                    keys.paper_key(actor, keys.JOURNAL_SNAPSHOT), snapshot_ts)
        return "restored"
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
