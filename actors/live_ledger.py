"""The live actor's orders journal: SQLite in WAL mode, one transaction per change.

What the trader believes about its account lives here, beside (not inside) the decisions
journal of its paper twin (``journal.py``): orders from the moment they are decided (an
*intent* is committed before the request leaves, so a ``kill -9`` between sending and the
acknowledgement leaves a row whose client order id the restarted trader queries), every
acknowledgement and status, the fills, the book (position in base units, cash of the
allocation in quote currency), reconciliations, halts and operator actions.

Fills are applied from an order's *cumulative* filled quantity and quote value, whoever
reports them (the user stream, the acknowledgement's list of fills on spot, a REST
query): only the part beyond what the journal already has becomes a fill, so a report
seen twice, or seen on the stream after the acknowledgement, changes nothing. Commission
comes with stream trades and spot acknowledgements; a fill learnt from an order query
alone (after a restart, or on futures with the stream down) estimates it from the
policy's fee rate and says so (``estimated``). On spot, commission on a buy is paid in
the base asset (the position grows by the quantity less the commission), on a sell in
the quote asset.

Opened ``locking_mode=EXCLUSIVE``: a second trader on the same file is refused.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrade.actors.journal import JournalError
from raytrade.actors.venues.execution import OrderRequest, OrderState

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders(cid TEXT PRIMARY KEY, symbol TEXT NOT NULL,
  bar_ts INTEGER NOT NULL, version INTEGER, leg INTEGER NOT NULL, side TEXT NOT NULL,
  qty REAL NOT NULL, kind TEXT NOT NULL, limit_price REAL, reduce_only INTEGER NOT NULL,
  status TEXT NOT NULL, venue_order_id TEXT, filled_qty REAL NOT NULL DEFAULT 0,
  cum_quote REAL NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
  sent_ms INTEGER NOT NULL, ack_ms INTEGER, updated_ms INTEGER NOT NULL,
  ref_price REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS fills(fill_id TEXT PRIMARY KEY, cid TEXT NOT NULL,
  symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL,
  commission REAL NOT NULL, commission_asset TEXT NOT NULL, at_ms INTEGER NOT NULL,
  bar_ts INTEGER NOT NULL, estimated INTEGER NOT NULL, paper_price REAL);
CREATE TABLE IF NOT EXISTS book(symbol TEXT PRIMARY KEY, position REAL NOT NULL,
  cash REAL NOT NULL, fees_other REAL NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS equity(symbol TEXT NOT NULL, ts INTEGER NOT NULL,
  equity REAL NOT NULL, cash REAL NOT NULL, position REAL NOT NULL, target REAL NOT NULL,
  price REAL NOT NULL, paper_equity REAL, PRIMARY KEY(symbol, ts));
CREATE TABLE IF NOT EXISTS state(symbol TEXT PRIMARY KEY, day INTEGER,
  day_start_equity REAL);
CREATE TABLE IF NOT EXISTS halts(symbol TEXT NOT NULL, kind TEXT NOT NULL,
  reason TEXT NOT NULL, by TEXT NOT NULL, at_ms INTEGER NOT NULL,
  PRIMARY KEY(symbol, kind));
CREATE TABLE IF NOT EXISTS commands(id TEXT PRIMARY KEY, action TEXT NOT NULL,
  by TEXT NOT NULL, applied_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL, symbol TEXT, kind TEXT NOT NULL, by TEXT, detail TEXT NOT NULL);
"""

HALT_ORDER = ("reconciliation", "banned", "daily_loss", "flatten", "operator")
"""Halt kinds, most severe first."""
OPEN_STATUSES = ("sending", "new", "partially_filled")
"""Orders whose fate the trader must still learn."""


@dataclass(frozen=True)
class BookEntry:
    """The journal's view of one symbol's account."""

    position: float
    """Base units, signed."""
    cash: float
    """Quote currency of the allocation."""

    def equity(self, price: float) -> float:
        """Allocation value at ``price``."""
        return self.cash + self.position * price


@dataclass(frozen=True)
class Halt:
    """Why a symbol sends no orders."""

    kind: str
    """``operator``, ``flatten``, ``reconciliation``, ``daily_loss`` or ``banned``."""
    reason: str
    by: str
    at_ms: int


@dataclass(frozen=True)
class AppliedFill:
    """A fill the ledger recorded."""

    fill_id: str
    cid: str
    side: str
    qty: float
    price: float
    commission: float
    commission_asset: str
    estimated: bool


class LiveLedger:
    """One live actor's orders journal (module docstring). Use from one thread."""

    def __init__(self, path: str | Path, *, base_asset: str = "", quote_asset: str = "",
                 synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.base_asset = base_asset
        self.quote_asset = quote_asset
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=0.5,
                                      check_same_thread=False)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            if self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise JournalError(f"{self.path}: could not enable WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("COMMIT")
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise JournalError(f"{self.path}: orders journal is corrupt ({check}); "
                                   "refusing to trade")
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise JournalError(f"{self.path}: orders journal is locked by another "
                                   f"process (another live trader?): {exc}") from exc
            raise JournalError(f"{self.path}: cannot open orders journal: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path}: orders journal is corrupt or not SQLite "
                               f"({exc}); refusing to trade") from exc

    def close(self) -> None:
        """Checkpoint and close."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self.db.execute(sql, params)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- meta
    def meta(self, key: str) -> str | None:
        """A stored setting."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self._tx([("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))])

    # ---- book
    def book(self, symbol: str) -> BookEntry | None:
        """The journal's position and cash for ``symbol``; None before a baseline."""
        row = self.db.execute("SELECT position, cash FROM book WHERE symbol=?",
                              (symbol,)).fetchone()
        return None if row is None else BookEntry(float(row[0]), float(row[1]))

    def set_baseline(self, symbol: str, position: float, cash: float, at_ms: int, *,
                     by: str, why: str) -> None:
        """Accept ``position`` (the exchange's) as the book's, with ``cash``; journaled."""
        self._tx([("INSERT OR REPLACE INTO book(symbol, position, cash, updated_ms) "
                   "VALUES(?, ?, ?, ?)", (symbol, position, cash, at_ms)),
                  ("INSERT INTO events(at_ms, symbol, kind, by, detail) VALUES(?,?,?,?,?)",
                   (at_ms, symbol, "baseline", by,
                    f"{why}: position {position:.12g}, cash {cash:.2f}"))])

    # ---- orders
    def intent(self, order: OrderRequest, *, bar_ts: int, version: int | None, leg: int,
               ref_price: float, at_ms: int, status: str = "sending") -> bool:
        """Record an order before it is sent; False if its client id is known already."""
        try:
            self._tx([("INSERT INTO orders(cid, symbol, bar_ts, version, leg, side, qty, "
                       "kind, limit_price, reduce_only, status, sent_ms, updated_ms, "
                       "ref_price) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (order.client_order_id, order.symbol, bar_ts, version, leg,
                        order.side, order.qty, order.kind, order.limit_price,
                        int(order.reduce_only), status, at_ms, at_ms, ref_price))])
        except sqlite3.IntegrityError:
            return False
        return True

    def order(self, cid: str) -> dict[str, Any] | None:
        """One order's row."""
        cur = self.db.execute("SELECT * FROM orders WHERE cid=?", (cid,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def orders(self, *, open_only: bool = False, limit: int | None = None
               ) -> list[dict[str, Any]]:
        """Orders, oldest first (only those of unknown or open fate with ``open_only``)."""
        sql = "SELECT * FROM orders"
        if open_only:
            sql += f" WHERE status IN ({','.join('?' * len(OPEN_STATUSES))})"
        sql += " ORDER BY sent_ms, cid"
        cur = self.db.execute(sql, OPEN_STATUSES if open_only else ())
        rows = [dict(zip([d[0] for d in cur.description], r, strict=True))
                for r in cur.fetchall()]
        return rows[-limit:] if limit else rows

    def set_status(self, cid: str, status: str, reason: str, at_ms: int, *,
                   venue_order_id: str | None = None, ack: bool = False,
                   attempt: bool = False) -> None:
        """An order's new status (fills are applied separately, by ``progress``)."""
        self._tx([("UPDATE orders SET status=?, reason=CASE WHEN ?='' THEN reason ELSE ? END,"
                   " venue_order_id=COALESCE(?, venue_order_id), updated_ms=?,"
                   " ack_ms=CASE WHEN ? THEN COALESCE(ack_ms, ?) ELSE ack_ms END,"
                   " attempts=attempts+? WHERE cid=?",
                   (status, reason, reason, venue_order_id, at_ms, int(ack), at_ms,
                    int(attempt), cid))])

    def acknowledge(self, state: OrderState, at_ms: int) -> None:
        """The exchange's answer to a placement or query: status and venue id. A final
        answer on an order the journal still has open closes it; fills come through
        ``progress``."""
        row = self.order(state.client_order_id)
        if row is None:
            return
        status = state.status
        if row["status"] in ("filled", "canceled", "rejected", "expired", "lost"):
            status = row["status"]  # never reopen a final order
        self.set_status(state.client_order_id, status, state.reason, at_ms,
                        venue_order_id=state.venue_order_id, ack=True)

    def progress(self, cid: str, cum_qty: float, cum_quote: float, at_ms: int, *,
                 fill_id: str, commission: float, commission_asset: str,
                 estimated: bool, paper_price: float | None = None) -> AppliedFill | None:
        """Apply an order's cumulative fill (module docstring); the new fill, or None if
        the journal already had it."""
        row = self.order(cid)
        if row is None:
            return None
        qty = cum_qty - float(row["filled_qty"])
        if qty <= max(1e-12, 1e-9 * cum_qty):
            return None
        price = (cum_quote - float(row["cum_quote"])) / qty
        side = str(row["side"])
        signed = qty if side == "buy" else -qty
        position_change = signed
        cash_change = -signed * price
        other_fee = 0.0
        if commission_asset == self.base_asset:
            position_change -= commission
        elif commission_asset == self.quote_asset:
            cash_change -= commission
        else:
            other_fee = commission  # paid in another asset (BNB): reported, not booked
        symbol = str(row["symbol"])
        self._tx([
            ("INSERT INTO fills VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
             (fill_id, cid, symbol, side, qty, price, commission, commission_asset, at_ms,
              int(row["bar_ts"]), int(estimated), paper_price)),
            ("UPDATE orders SET filled_qty=?, cum_quote=?, updated_ms=? WHERE cid=?",
             (cum_qty, cum_quote, at_ms, cid)),
            ("UPDATE book SET position=position+?, cash=cash+?, fees_other=fees_other+?, "
             "updated_ms=? WHERE symbol=?",
             (position_change, cash_change, other_fee, at_ms, symbol)),
        ])
        return AppliedFill(fill_id, cid, side, qty, price, commission, commission_asset,
                           estimated)

    def fills(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Fills, oldest first."""
        cur = self.db.execute("SELECT * FROM fills ORDER BY at_ms, fill_id")
        rows = [dict(zip([d[0] for d in cur.description], r, strict=True))
                for r in cur.fetchall()]
        return rows[-limit:] if limit else rows

    def set_paper_price(self, symbol: str, bar_ts: int, price: float) -> None:
        """Paper's fill price for fills of orders decided at ``bar_ts`` (the slippage
        reference: what the paper twin paid on the same bar)."""
        self._tx([("UPDATE fills SET paper_price=? WHERE symbol=? AND bar_ts=?",
                   (price, symbol, bar_ts))])

    # ---- equity, halts, events
    def mark(self, symbol: str, ts: int, price: float, target: float,
             paper_equity: float | None) -> float:
        """Record the allocation's equity at a bar close; returns it."""
        book = self.book(symbol)
        if book is None:
            return float("nan")
        equity = book.equity(price)
        self._tx([("INSERT OR REPLACE INTO equity VALUES(?,?,?,?,?,?,?,?)",
                   (symbol, ts, equity, book.cash, book.position, target, price,
                    paper_equity))])
        return equity

    def equity_rows(self, symbol: str) -> list[dict[str, Any]]:
        """Equity marks, oldest first."""
        cur = self.db.execute("SELECT * FROM equity WHERE symbol=? ORDER BY ts", (symbol,))
        return [dict(zip([d[0] for d in cur.description], r, strict=True))
                for r in cur.fetchall()]

    def halts(self, symbol: str) -> list[Halt]:
        """Every reason ``symbol`` is halted, the most severe first (``HALT_ORDER``).
        Halts are kept apart by kind: lifting one (``adopt`` lifts a reconciliation
        halt, ``resume`` an operator's) never lifts another."""
        rows = self.db.execute("SELECT kind, reason, by, at_ms FROM halts WHERE symbol=?",
                               (symbol,)).fetchall()
        halts = [Halt(str(k), str(r), str(b), int(a)) for k, r, b, a in rows]
        return sorted(halts, key=lambda h: (HALT_ORDER.index(h.kind)
                                            if h.kind in HALT_ORDER else len(HALT_ORDER),
                                            h.at_ms))

    def halt(self, symbol: str) -> Halt | None:
        """The most severe reason ``symbol`` is halted, or None."""
        halts = self.halts(symbol)
        return halts[0] if halts else None

    def add_halt(self, symbol: str, halt: Halt, *, detail: str) -> bool:
        """Halt for ``halt.kind`` (journaled with who and why); False if already so."""
        try:
            self._tx([("INSERT INTO halts VALUES(?,?,?,?,?)",
                       (symbol, halt.kind, halt.reason, halt.by, halt.at_ms)),
                      ("INSERT INTO events(at_ms, symbol, kind, by, detail) VALUES(?,?,?,?,?)",
                       (halt.at_ms, symbol, halt.kind, halt.by, detail))])
        except sqlite3.IntegrityError:
            return False
        return True

    def lift_halts(self, symbol: str, kinds: tuple[str, ...], *, event: str, by: str,
                   detail: str, at_ms: int) -> list[str]:
        """Lift the halts of ``kinds`` (journaled); the kinds lifted."""
        present = [h.kind for h in self.halts(symbol) if h.kind in kinds]
        if not present:
            return []
        self._tx([*(("DELETE FROM halts WHERE symbol=? AND kind=?", (symbol, k))
                    for k in present),
                  ("INSERT INTO events(at_ms, symbol, kind, by, detail) VALUES(?,?,?,?,?)",
                   (at_ms, symbol, event, by, f"{detail} (lifted: {', '.join(present)})"))])
        return present

    # ---- operator commands
    def applied_commands(self) -> set[str]:
        """Ids of the operator commands this journal has applied (or set aside)."""
        return {str(r[0]) for r in self.db.execute("SELECT id FROM commands")}

    def command_applied(self, command_id: str, action: str, by: str, at_ms: int) -> None:
        """Record that a command was applied (or set aside), so it never applies twice."""
        self._tx([("INSERT OR IGNORE INTO commands VALUES(?,?,?,?)",
                   (command_id, action, by, at_ms))])

    def day_start_equity(self, symbol: str, day: int) -> float | None:
        """The allocation's equity at the start of UTC day ``day``, if recorded (read
        only: health and exports never set the daily loss limit's baseline)."""
        row = self.db.execute("SELECT day, day_start_equity FROM state WHERE symbol=?",
                              (symbol,)).fetchone()
        if row is not None and row[0] == day and row[1] is not None:
            return float(row[1])
        return None

    def day_start(self, symbol: str, day: int, equity: float) -> float:
        """The allocation's equity at the start of UTC day ``day`` (set on its first
        call that day)."""
        row = self.db.execute("SELECT day, day_start_equity FROM state WHERE symbol=?",
                              (symbol,)).fetchone()
        if row is not None and row[0] == day and row[1] is not None:
            return float(row[1])
        self._tx([("INSERT INTO state(symbol) VALUES(?) ON CONFLICT(symbol) DO NOTHING",
                   (symbol,)),
                  ("UPDATE state SET day=?, day_start_equity=? WHERE symbol=?",
                   (day, equity, symbol))])
        return equity

    def event(self, kind: str, detail: dict[str, Any] | str, symbol: str | None,
              at_ms: int, by: str | None = None) -> None:
        """Journal an event (reconciliation, risk refusal, stream state, alert)."""
        text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
        self._tx([("INSERT INTO events(at_ms, symbol, kind, by, detail) VALUES(?,?,?,?,?)",
                   (at_ms, symbol, kind, by, text))])

    def events(self, limit: int | None = None, kind: str | None = None
               ) -> list[dict[str, Any]]:
        """Events, oldest first."""
        sql = "SELECT at_ms, symbol, kind, by, detail FROM events"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind=?"
            params = (kind,)
        cur = self.db.execute(sql + " ORDER BY id", params)
        rows = [dict(zip([d[0] for d in cur.description], r, strict=True))
                for r in cur.fetchall()]
        return rows[-limit:] if limit else rows
