"""The paper-trading journal: SQLite in WAL mode, one transaction per bar.

Every closed bar a trader processes is written in **one** transaction: the bar itself,
the order and its fill (or rejection), the account state after it, and the decision with
its policy version, Q-values and feature hash. A ``kill -9`` at any point therefore leaves
the bar either fully recorded or absent, and a restarted trader rebuilds everything (the
feature state from the journaled bars, the account from the last account row) from the
journal alone. Bars are keyed by (symbol, open time) and fills by their deterministic id,
so replaying a bar that is already journaled changes nothing.

The file is opened with ``locking_mode=EXCLUSIVE``: a second trader on the same journal is
refused at start, as is a file that fails SQLite's ``quick_check``.

Tables: ``bars``, ``decisions``, ``orders``, ``fills``, ``account`` (equity and position
by bar, with the full broker state), ``events`` (gaps, feed faults, policy swaps, alerts,
shutdowns), ``meta``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from raytrade.actors.records import BarStep, Fill, Rejection
from raytrade.envs.bars import Bar
from raytrade.envs.errors import OperationalError

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars(symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL NOT NULL,
  high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
  ref_close REAL, kind TEXT NOT NULL, PRIMARY KEY(symbol, ts));
CREATE TABLE IF NOT EXISTS decisions(symbol TEXT NOT NULL, ts INTEGER NOT NULL,
  version INTEGER, action INTEGER, requested REAL NOT NULL, decided REAL NOT NULL,
  risk_event INTEGER NOT NULL, greedy_action INTEGER, q_values TEXT, confidence REAL,
  held INTEGER NOT NULL, reason TEXT NOT NULL, feature_hash TEXT NOT NULL,
  PRIMARY KEY(symbol, ts));
CREATE TABLE IF NOT EXISTS orders(order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL,
  bar_ts INTEGER NOT NULL, target REAL NOT NULL, status TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS fills(fill_id TEXT PRIMARY KEY, symbol TEXT NOT NULL,
  bar_ts INTEGER NOT NULL, target REAL NOT NULL, qty REAL NOT NULL, price REAL NOT NULL,
  notional REAL NOT NULL, fee REAL NOT NULL, slippage REAL NOT NULL);
CREATE TABLE IF NOT EXISTS account(symbol TEXT NOT NULL, ts INTEGER NOT NULL,
  equity REAL NOT NULL, position REAL NOT NULL, version INTEGER, state TEXT NOT NULL,
  PRIMARY KEY(symbol, ts));
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
  symbol TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL);
"""


class JournalError(OperationalError):
    """The journal cannot be used (locked by another trader, corrupt, wrong schema):
    the trader refuses to trade and says why."""


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


class Journal:
    """One trader's journal file (module docstring)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout_s: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if synchronous not in ("FULL", "NORMAL"):
            raise JournalError("synchronous must be FULL or NORMAL")
        try:
            self.db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{self.path}: could not enable WAL (mode {mode})")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            # take the exclusive lock now: a second trader on this file fails here
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("COMMIT")
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise JournalError(f"{self.path}: journal is corrupt ({check}); refusing to "
                                   "trade. Move it aside to start fresh.")
            self.db.executescript(SCHEMA)
            self._check_schema()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise JournalError(f"{self.path}: journal is locked by another process "
                                   f"(another trader on the same journal?): {exc}") from exc
            raise JournalError(f"{self.path}: cannot open journal: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path}: journal is corrupt or not SQLite ({exc}); "
                               "refusing to trade. Move it aside to start fresh.") from exc

    def _check_schema(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise JournalError(f"{self.path}: journal schema {row[0]}, this trader writes "
                               f"{SCHEMA_VERSION}")

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()

    # ---- writes
    def record(self, step: BarStep) -> bool:
        """Write one bar's step in one transaction; False if the bar was already there."""
        b = step.bar
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO bars VALUES(?,?,?,?,?,?,?,?,?)",
                (step.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, step.ref_close,
                 step.kind))
            if cur.rowcount == 0:
                db.execute("ROLLBACK")
                return False
            res = step.result
            if isinstance(res, Fill):
                db.execute("INSERT INTO orders VALUES(?,?,?,?,?,?)",
                           (res.fill_id, res.symbol, res.bar_ts, res.target, "filled", None))
                db.execute("INSERT INTO fills VALUES(?,?,?,?,?,?,?,?,?)",
                           (res.fill_id, res.symbol, res.bar_ts, res.target, res.qty,
                            res.price, res.notional, res.fee, res.slippage))
            elif isinstance(res, Rejection):
                db.execute("INSERT INTO orders VALUES(?,?,?,?,?,?)",
                           (f"{step.symbol}:{res.bar_ts}:rejected", res.symbol, res.bar_ts,
                            res.target, "rejected", res.reason))
            if step.broker_state is not None and step.equity is not None:
                db.execute("INSERT INTO account VALUES(?,?,?,?,?,?)",
                           (step.symbol, b.ts, step.equity, step.position, step.version,
                            _json(step.broker_state)))
            d = step.decision
            if d is not None:
                db.execute("INSERT INTO decisions VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (step.symbol, b.ts, d.version, d.action, d.requested, d.decided,
                            d.risk_event, d.greedy_action, _json(list(d.q_values)),
                            d.confidence, int(d.held), d.reason, d.feature_hash))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True

    def event(self, kind: str, detail: dict[str, Any] | str, symbol: str | None = None,
              at: float | None = None) -> None:
        """Record a non-bar event (gap, feed fault, policy swap, alert, shutdown)."""
        text = detail if isinstance(detail, str) else _json(detail)
        self.db.execute("INSERT INTO events(at, symbol, kind, detail) VALUES(?,?,?,?)",
                        (time.time() if at is None else at, symbol, kind, text))

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting (for example the trader's configuration)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    # ---- reads
    def meta(self, key: str) -> str | None:
        """A stored setting, or None."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def bars(self, symbol: str) -> list[tuple[Bar, float | None, str]]:
        """Every journaled bar of ``symbol``, oldest first, with its reference close and
        kind."""
        rows = self.db.execute("SELECT ts, open, high, low, close, volume, ref_close, kind "
                               "FROM bars WHERE symbol=? ORDER BY ts", (symbol,)).fetchall()
        return [(Bar(int(r[0]), r[1], r[2], r[3], r[4], r[5]), r[6], r[7]) for r in rows]

    def last_account(self, symbol: str) -> tuple[int, dict[str, Any]] | None:
        """The newest account row's bar time and broker state."""
        row = self.db.execute("SELECT ts, state FROM account WHERE symbol=? ORDER BY ts DESC "
                              "LIMIT 1", (symbol,)).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def last_decision(self, symbol: str) -> tuple[int, float] | None:
        """The newest decision's bar time and requested target."""
        row = self.db.execute("SELECT ts, requested FROM decisions WHERE symbol=? ORDER BY "
                              "ts DESC LIMIT 1", (symbol,)).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def equity_rows(self, symbol: str, after_ts: int = -1) -> list[tuple[int, float, float,
                                                                            int | None]]:
        """(ts, equity, position, version) by bar, after ``after_ts``."""
        rows = self.db.execute("SELECT ts, equity, position, version FROM account WHERE "
                               "symbol=? AND ts>? ORDER BY ts", (symbol, after_ts)).fetchall()
        return [(int(r[0]), float(r[1]), float(r[2]), r[3]) for r in rows]

    def account_states(self, symbol: str) -> dict[int, dict[str, Any]]:
        """The broker state journaled after each bar of ``symbol``, by bar open time."""
        rows = self.db.execute("SELECT ts, state FROM account WHERE symbol=?", (symbol,))
        return {int(ts): json.loads(state) for ts, state in rows}

    def closes(self, symbol: str) -> dict[int, float]:
        """Close price by bar open time, for every journaled bar of ``symbol``."""
        return dict(self.db.execute("SELECT ts, close FROM bars WHERE symbol=?", (symbol,)))

    def fills(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Every fill (optionally of one symbol), oldest first."""
        sql = "SELECT * FROM fills" + (" WHERE symbol=?" if symbol else "") + " ORDER BY bar_ts"
        cur = self.db.execute(sql, (symbol,) if symbol else ())
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def count(self, table: str) -> int:
        """Rows in one of the journal's tables."""
        if table not in ("bars", "decisions", "orders", "fills", "account", "events"):
            raise ValueError(f"no table {table!r}")
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

