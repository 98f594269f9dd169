"""The reading half of the DWX client (``dwx_client.py``): what the EA writes, polled.

``EaReader.poll`` reads each of the EA's files that changed (``dwx_files.JsonFile``:
change detection, half-written files held, a lasting invalid one reported naming it) and
keeps the latest validated state (``dwx_records.py``): the account and open orders, the
ticks, the last closed bar per pair, and the messages in the order they arrived, each
with a sequence number (a command's reply is a message after the command's number).

Messages are keyed by the EA's millisecond counter and text: the EA rewrites its last
50 each time, and a key seen once is never taken again; the messages already there when
the client starts are marked seen (they answer nobody's command).

The EA rewrites ``DWX_Orders.txt`` at least once a second: ``alive`` is False when it has
not rewritten it *validly* for ``stale_after_s`` (``EaState.orders_valid_at``). The stock EA
does not escape comments, so a manual order with ``"`` in its comment breaks the file for as
long as the order is open, and an MT5 pending type this client does not know fails the
record checks: while the file is invalid or rejected ``orders_error`` says why (the last
good state is never used as current) and once it has stayed so for ``invalid_after_s``
(timed from the last valid read, however often the broken content changes) it is reported
once as a fault. The file vanishing and coming back is the EA restarting (it
deletes its files at start and stop): what its other files said is dropped, the change
counted (``faults["ea_restart"]``) and ``on_restart`` called. The ticks are what
``DWX_Market_Data.txt`` holds now: a symbol it stops listing calls ``on_ticks_lost`` (an EA
restart the orders file did not show, the poll having missed the gap: the restarted EA
writes ``{}``, having forgotten its subscriptions), and each tick's age is kept
(``tick_age``) so that a price check never uses a bid/ask the EA stopped updating.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues import dwx_files as f
from raytrade.actors.venues import dwx_records as r
from raytrade.envs.bars import Bar

log = logging.getLogger(__name__)


@dataclass
class EaState:
    """What the reader has read (mutable, owned by the reader)."""

    orders: r.OrdersFile | None = None
    """The last valid orders file (current only while ``EaReader.orders_error`` is empty)."""
    orders_valid_at: float = -1e18
    """When ``DWX_Orders.txt`` was last read valid (rewritten or not changed)."""
    orders_seen: float = -1e18
    """When ``DWX_Orders.txt`` was last seen rewritten, valid or not."""
    ticks: dict[str, r.Tick] = field(default_factory=dict)
    """What ``DWX_Market_Data.txt`` holds now (replaced on every change, never merged)."""
    tick_at: dict[str, float] = field(default_factory=dict)
    """When each symbol's bid/ask last changed (reader ``clock`` seconds)."""
    bars: dict[tuple[str, str], Bar] = field(default_factory=dict)
    messages: deque[tuple[int, r.Message]] = field(default_factory=lambda: deque(maxlen=500))
    seen: set[tuple[int, str]] = field(default_factory=set)
    seq: int = 0


class EaReader:
    """Polls one EA folder's files (module docstring). Times: ``clock`` seconds."""

    def __init__(self, paths: f.DwxPaths, *, clock: Callable[[], float],
                 invalid_after_s: float, stale_after_s: float, offset_s: int,
                 on_restart: Callable[[], None],
                 on_ticks_lost: Callable[[set[str]], None] = lambda symbols: None) -> None:
        self.paths = paths
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.offset_s = offset_s
        self.on_restart = on_restart
        self.on_ticks_lost = on_ticks_lost
        """Called with the symbols ``DWX_Market_Data.txt`` stopped listing."""
        self.files = {name: f.JsonFile(paths.file(name), invalid_after_s=invalid_after_s,
                                       clock=clock)
                      for name in (f.ORDERS, f.MESSAGES, f.MARKET_DATA, f.BAR_DATA)}
        self.state = EaState()
        self.faults: Counter[str] = Counter()
        self.last_fault = ""
        self.invalid_after_s = invalid_after_s
        self._orders_gone = False
        self._rejected: tuple[str, float, bool] | None = None  # reason, since, reported

    @property
    def alive(self) -> bool:
        """The EA rewrote ``DWX_Orders.txt`` validly within ``stale_after_s``."""
        return self.clock() - self.state.orders_valid_at < self.stale_after_s

    @property
    def running(self) -> bool:
        """The EA rewrote ``DWX_Orders.txt`` within ``stale_after_s``, valid or not (the EA
        runs: its bars and ticks are good even while an unescaped comment breaks that
        file)."""
        return self.clock() - self.state.orders_seen < self.stale_after_s

    @property
    def orders_error(self) -> str:
        """Why ``DWX_Orders.txt`` is not usable now (invalid JSON or a rejected record),
        naming the file; empty when its last read was valid."""
        orders_file = self.files[f.ORDERS]
        if orders_file.exists and orders_file.invalid_since is not None:
            return f"{orders_file.path}: {orders_file.error}"
        if self._rejected is not None:
            return self._rejected[0]
        return ""

    # ---- reading
    def _read(self, name: str) -> f.FileChange | None:
        try:
            return self.files[name].poll()
        except f.InvalidFileError as exc:
            self.report_fault("invalid_file", str(exc))
            return None

    def report_fault(self, kind: str, detail: str) -> None:
        """Count and log one fault (``faults``)."""
        self.faults[kind] += 1
        self.last_fault = detail
        log.warning("DWX %s: %s", kind, detail)

    def poll(self, *, initial: bool = False) -> bool:
        """Read what changed; True if anything did. ``initial``: the first poll of a
        client (its messages are marked seen)."""
        changed = False
        changed |= self._poll_orders()
        change = self._read(f.MESSAGES)
        if change is not None:
            changed |= self._apply(change, lambda d: self._add_messages(
                r.parse_messages(d, str(self.paths.file(f.MESSAGES))), initial))
        change = self._read(f.MARKET_DATA)
        if change is not None:
            changed |= self._apply(change, lambda d: self._set_ticks(
                r.parse_market_data(d, str(self.paths.file(f.MARKET_DATA)))))
        change = self._read(f.BAR_DATA)
        if change is not None:
            changed |= self._apply(change, lambda d: self.state.bars.update(
                r.parse_bar_data(d, self.offset_s, str(self.paths.file(f.BAR_DATA)))))
        return changed

    def _poll_orders(self) -> bool:
        orders_file = self.files[f.ORDERS]
        before = orders_file.rewrites
        change = self._read(f.ORDERS)
        now = self.clock()
        if orders_file.rewrites != before:
            self.state.orders_seen = now
        if not orders_file.exists and self.state.orders is not None:
            self._orders_gone = True
        if change is None:
            if orders_file.rewrites != before and orders_file.invalid_since is None \
                    and self._rejected is None:
                self.state.orders_valid_at = now  # rewritten unchanged: still valid
            elif self._rejected is not None:
                self._still_rejected(now)
            return False
        try:
            orders = r.parse_orders(change.data, self.offset_s, str(orders_file.path))
        except MessageRejectedError as exc:
            # timed from the first rejected read after a valid one, whatever changes since
            since, reported = (now, False) if self._rejected is None else self._rejected[1:]
            self._rejected = (exc.reason, since, reported)
            self._still_rejected(now)
            return False
        self._rejected = None
        self.state.orders = orders
        self.state.orders_valid_at = now
        if self._orders_gone:
            self._orders_gone = False
            self._restarted()
        return True

    def _still_rejected(self, now: float) -> None:
        assert self._rejected is not None
        reason, since, reported = self._rejected
        if not reported and now - since >= self.invalid_after_s:
            self._rejected = (reason, since, True)
            self.report_fault("rejected_record", f"{reason} (for {now - since:.1f} s)")

    def _apply(self, change: f.FileChange, use: Callable[[object], object]) -> bool:
        try:
            use(change.data)
        except MessageRejectedError as exc:
            self.report_fault("rejected_record", exc.reason)
            return False
        return True

    def _set_ticks(self, ticks: dict[str, r.Tick]) -> None:
        st, now = self.state, self.clock()
        lost = set(st.ticks) - set(ticks)
        for symbol, tick in ticks.items():
            if st.ticks.get(symbol) != tick:
                st.tick_at[symbol] = now
        st.ticks = ticks
        st.tick_at = {s: t for s, t in st.tick_at.items() if s in ticks}
        if lost:
            # the EA dropped symbols it was sending: an EA restart the orders file did not
            # show (the poll missed the gap) or another writer's subscription
            self.on_ticks_lost(lost)

    def tick_age(self, symbol: str) -> float | None:
        """Seconds since ``symbol``'s bid/ask last changed; None without a tick."""
        at = self.state.tick_at.get(symbol)
        return None if at is None else self.clock() - at

    def _add_messages(self, messages: list[r.Message], initial: bool) -> None:
        st = self.state
        for m in messages:
            key = (m.millis, str(m))
            if key in st.seen:
                continue
            st.seen.add(key)
            if initial:
                continue  # from before this client: never a reply to its commands
            st.seq += 1
            st.messages.append((st.seq, m))
            if m.kind == "ERROR":
                log.warning("DWX EA: %s", m)
        if len(st.seen) > 5000:  # the EA keeps its last 50: older keys never return
            st.seen = {(m.millis, str(m)) for m in messages}

    def _restarted(self) -> None:
        self.report_fault("ea_restart", f"the EA in {self.paths.folder} restarted")
        for name in (f.MESSAGES, f.MARKET_DATA, f.BAR_DATA):
            self.files[name].forget()
        self.state.ticks = {}  # the EA deleted its files: what they said is gone
        self.state.tick_at = {}
        self.state.bars.clear()
        self.on_restart()

    def messages_after(self, seq: int) -> list[tuple[int, r.Message]]:
        """Messages read after sequence number ``seq``, oldest first."""
        return [(s, m) for s, m in self.state.messages if s > seq]
