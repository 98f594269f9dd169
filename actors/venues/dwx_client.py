"""An asyncio client for one DWX Connect terminal folder (the file protocol:
``dwx_files.py``; the records: ``dwx_records.py``; the EA sources and Darwinex's own
client: ``github.com/darwinex/dwxconnect``, ``mql/`` and ``python/api/dwx_client.py``).

One ``DwxClient`` per folder (``shared_client`` in a process; ``dwx_files.FolderLock``
refuses a second client, in this process or another): two writers numbering commands
independently would collide in the EA's de-duplication memory, and their subscriptions
would overwrite each other (``SUBSCRIBE_SYMBOLS`` *replaces* the EA's list). The
market-data feed and the order side of one folder share it: subscriptions are the union
of everything asked for, sent whole every time.

- One poll task reads the EA's files every ``poll_s`` (``dwx_reader.EaReader``): the
  account and open orders, new messages, ticks, closed bars; a file that stays invalid is
  counted in ``faults`` and logged, naming it.
- ``send`` writes a command with the next id (ids cycle below 100000; ``RESET_COMMAND_IDS``
  is sent first, as the EA expects of a client that starts) and confirms delivery: the EA
  deletes a command file once it has read it. One command is in the slots at a time (the
  EA's scan stops at the first free slot, which could strand a second one). A command
  still unread after
  ``command_timeout_s`` is withdrawn (renamed away, so it can never run late) and
  reported: ``CommandNotReadError``, never dropped in silence.
- ``request`` sends and waits for the EA's reply: the first message written after the
  command that the caller's matcher accepts (the EA writes its INFO/ERROR messages with
  no command id; commands that expect a reply are serialized, so a reply is the next
  message of its kind). No reply within ``reply_timeout_s`` raises ``ReplyTimeoutError``;
  the family's next command then first waits (up to ``reply_timeout_s``) for that late
  answer, so that it cannot be taken as the next command's reply.
- The EA restarting (it deletes its files, command slots included, and forgets its
  subscriptions and command ids; ``EaReader`` notices, from the orders file vanishing or
  from the market-data file no longer listing a subscribed symbol when the poll missed the
  gap) makes the client send the subscriptions again until the EA confirms them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raytrade.actors.venues import dwx_files as f
from raytrade.actors.venues import dwx_records as r
from raytrade.actors.venues.dwx_reader import EaReader
from raytrade.envs.errors import ConfigError, TemporaryError

log = logging.getLogger(__name__)


class CommandNotReadError(TemporaryError):
    """The EA did not read a command within ``command_timeout_s``; it was withdrawn and
    will not run."""


class ReplyTimeoutError(TemporaryError):
    """The EA read a command but wrote no reply to it in time: its effect is unknown."""


class EaError(Exception):
    """The EA answered a command with an ERROR message (``message``)."""

    def __init__(self, message: r.Message) -> None:
        super().__init__(f"{message.error_type}: {message.text}")
        self.message = message


@dataclass(frozen=True)
class ClientConfig:
    """Timing of a ``DwxClient``. Seconds."""

    poll_s: float = 0.02
    """How often the EA's files are read (the EA's own timer is 25 ms)."""
    command_timeout_s: float = 5.0
    """A command file still unread after this is withdrawn and reported."""
    reply_timeout_s: float = 10.0
    """A command read but unanswered after this is reported (``ReplyTimeoutError``)."""
    invalid_after_s: float = 2.0
    """An EA file invalid (half written) for this long is reported."""
    stale_after_s: float = 5.0
    """``DWX_Orders.txt`` not rewritten for this long: the EA is not running."""
    tick_stale_s: float = 60.0
    """A bid/ask unchanged for this long is not used to check a limit order's price."""
    server_utc_offset_s: int = 0
    """The broker's server time minus UTC (``dwx_records.server_time_ms``)."""

    def __post_init__(self) -> None:
        for name in ("poll_s", "command_timeout_s", "reply_timeout_s", "invalid_after_s",
                     "stale_after_s", "tick_stale_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"DWX ClientConfig.{name} must be > 0")
        if abs(self.server_utc_offset_s) > 14 * 3600:
            raise ConfigError(f"DWX server UTC offset {self.server_utc_offset_s} s is beyond "
                              "+-14 h")


@dataclass(frozen=True)
class Sent:
    """A delivered command."""

    command_id: int
    command: str
    content: str
    seq: int
    """The message sequence number when it was written: its reply comes after."""


class DwxClient:
    """One terminal folder's client (module docstring)."""

    def __init__(self, files_dir: str | Path, config: ClientConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or ClientConfig()
        self.paths = f.DwxPaths(Path(files_dir))
        self.clock = clock
        self.slots = f.CommandSlots(self.paths)
        self.lock = f.FolderLock(self.paths)
        self.reader = EaReader(self.paths, clock=clock,
                               invalid_after_s=self.config.invalid_after_s,
                               stale_after_s=self.config.stale_after_s,
                               offset_s=self.config.server_utc_offset_s,
                               on_restart=self._on_restart,
                               on_ticks_lost=self._on_ticks_lost)
        self.files = self.reader.files
        self.state = self.reader.state
        self.faults = self.reader.faults
        """``invalid_file``, ``command_not_read``, ``reply_timeout``, ``ea_restart``,
        ``rejected_record``, ``subscriptions_lost``, ``lots_mismatch``."""
        self.listeners: list[Callable[[], None]] = []
        """Called after every poll that changed something."""
        self.tick_symbols: set[str] = set()
        self.bar_pairs: set[tuple[str, str]] = set()
        self._next_id = random.SystemRandom().randrange(f.COMMAND_ID_MODULUS)
        """Ids start at random: another process writing to the folder (which it should
        not) rarely collides with this one in the EA's memory of the last 1000."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._polled: asyncio.Event | None = None
        self._send_lock: asyncio.Lock | None = None
        self._reply_locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._resubscribing: asyncio.Task[None] | None = None
        self._late: dict[str, tuple[Sent, Callable[[r.Message], bool]]] = {}
        """Per family: the command whose reply timed out (``_await_late``)."""

    # ---- lifetime
    async def start(self) -> None:
        """Start (or restart on this event loop) the poll task; the first start marks
        the messages already there as seen and resets the EA's command ids."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self.paths.check()
        self.lock.acquire()
        self._loop = loop
        self._polled = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._reply_locks = {}
        first = not self._started
        self._started = True
        self._poll_once(initial=first)
        self._task = loop.create_task(self._run(), name=f"dwx-poll {self.paths.files_dir}")
        if first:
            await self.send("RESET_COMMAND_IDS", "")

    async def stop(self) -> None:
        """Stop the poll task (the EA keeps running)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.lock.release()

    async def _run(self) -> None:
        while True:
            try:
                self._poll_once()
            except Exception as exc:  # the poll loop must never die
                log.exception("DWX poll of %s failed: %s", self.paths.files_dir, exc)
            assert self._polled is not None
            self._polled.set()
            self._polled = asyncio.Event()
            await asyncio.sleep(self.config.poll_s)

    async def wait_poll(self, timeout: float | None = None) -> None:
        """Until the next poll has run (or ``timeout`` s)."""
        await self.start()
        event = self._polled
        assert event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout or self.config.reply_timeout_s)

    @property
    def alive(self) -> bool:
        """The EA rewrote ``DWX_Orders.txt`` validly within ``stale_after_s``."""
        return self.reader.alive

    @property
    def running(self) -> bool:
        """The EA rewrote ``DWX_Orders.txt`` within ``stale_after_s``, valid or not."""
        return self.reader.running

    def report_fault(self, kind: str, detail: str) -> None:
        """Count and log one fault (``faults``)."""
        self.reader.report_fault(kind, detail)

    def _poll_once(self, initial: bool = False) -> None:
        if self.reader.poll(initial=initial):
            for listener in list(self.listeners):
                listener()

    def _on_restart(self) -> None:
        if self._loop is not None and (self.tick_symbols or self.bar_pairs):
            if self._resubscribing is not None:
                self._resubscribing.cancel()
            self._resubscribing = self._loop.create_task(self._resubscribe())

    def _on_ticks_lost(self, symbols: set[str]) -> None:
        lost = symbols & self.tick_symbols
        if not lost or (self._resubscribing is not None and not self._resubscribing.done()):
            return
        self.report_fault("subscriptions_lost", f"the EA in {self.paths.folder} stopped "
                          f"sending {', '.join(sorted(lost))}: subscribing again")
        self._on_restart()

    async def _resubscribe(self) -> None:
        """Send the subscriptions again until the EA has read them (back-off doubling to
        30 s): the feed and the order side rely on them."""
        delay = self.config.poll_s
        while True:
            try:
                if self.tick_symbols:
                    await self._subscribe_ticks(self.tick_symbols)
                if self.bar_pairs:
                    await self._subscribe_bars(self.bar_pairs)
                return
            except (TemporaryError, EaError) as exc:
                log.warning("DWX: subscribing again failed (%s); retrying in %.1f s", exc,
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # ---- commands
    def new_id(self) -> int:
        """The next command id (ids cycle below 100000)."""
        self._next_id = (self._next_id + 1) % f.COMMAND_ID_MODULUS
        return self._next_id

    async def send(self, command: str, content: str, *, command_id: int | None = None
                   ) -> Sent:
        """Write one command and wait until the EA has read it (module docstring);
        ``command_id`` reuses an id (a resend the EA must skip if it ran the first)."""
        if self._send_lock is None or self._loop is not asyncio.get_running_loop():
            await self.start()
        assert self._send_lock is not None
        # one command in the slots at a time: the EA stops its scan at the first missing
        # slot, so a second command could be stranded behind a consumed first one
        async with self._send_lock:
            cid = self.new_id() if command_id is None else command_id
            text = f.command_text(cid, command, content)
            seq = self.state.seq
            slot = await asyncio.to_thread(self.slots.write, text)
            deadline = self.clock() + self.config.command_timeout_s
            while self.slots.read(slot) == text:
                if self.clock() >= deadline:
                    if await asyncio.to_thread(self.slots.withdraw, slot, text):
                        detail = (f"the EA did not read command {cid} {command} within "
                                  f"{self.config.command_timeout_s:g} s "
                                  f"({self.paths.command(slot)}); withdrawn, it will not "
                                  "run: is the EA attached and AutoTrading on?")
                        self.report_fault("command_not_read", detail)
                        raise CommandNotReadError(detail)
                    break  # read just now
                await asyncio.sleep(self.config.poll_s)
        return Sent(cid, command, content, seq)

    async def request(self, command: str, content: str,
                      match: Callable[[r.Message], bool], *, family: str,
                      command_id: int | None = None, timeout_s: float | None = None
                      ) -> r.Message:
        """Send and return the EA's INFO reply; ``EaError`` for its ERROR reply;
        ``ReplyTimeoutError`` without one. Requests of one ``family`` (the EA's message
        prefix, e.g. ``OPEN_ORDER``) run one at a time so that replies pair up."""
        async with self.exclusive(family):
            await self._await_late(family)
            sent = await self.send(command, content, command_id=command_id)
            try:
                return await self.reply(sent, match, timeout_s=timeout_s)
            except ReplyTimeoutError:
                self._late[family] = (sent, match)
                raise

    async def _await_late(self, family: str) -> None:
        """After a ``ReplyTimeoutError`` the EA may still answer: the family's next
        command waits until that late answer is in (it then comes before the new
        command's sequence number and cannot be taken as its reply), at most
        ``reply_timeout_s`` (no answer by then: the EA restarted or lost it)."""
        late = self._late.pop(family, None)
        if late is None:
            return
        sent, match = late
        marker = f"{sent.command_id}|{sent.command}"
        deadline = self.clock() + self.config.reply_timeout_s
        while self.clock() < deadline:
            if any(match(m) or marker in m.text for _, m in self.reader.messages_after(sent.seq)):
                return
            await self.wait_poll(max(0.0, deadline - self.clock()))
        log.warning("DWX: no late answer to command %s %s; sending the next %s",
                    sent.command_id, sent.command, family)

    def exclusive(self, name: str) -> asyncio.Lock:
        """A lock by name on this event loop (requests of a family, an answer file)."""
        return self._reply_locks.setdefault(name, asyncio.Lock())

    async def reply(self, sent: Sent, match: Callable[[r.Message], bool], *,
                    timeout_s: float | None = None) -> r.Message:
        """The first message after ``sent`` accepted by ``match`` (module docstring)."""
        deadline = self.clock() + (timeout_s or self.config.reply_timeout_s)
        marker = f"{sent.command_id}|{sent.command}"
        while True:
            for _, m in self.reader.messages_after(sent.seq):
                if m.kind == "ERROR" and m.error_type.startswith("WRONG_FORMAT") \
                        and marker in m.text:
                    raise EaError(m)
                if match(m):
                    if m.kind == "ERROR":
                        raise EaError(m)
                    return m
            if self.clock() >= deadline:
                detail = (f"no reply from the EA to command {sent.command_id} "
                          f"{sent.command} {sent.content!r} within "
                          f"{timeout_s or self.config.reply_timeout_s:g} s")
                self.report_fault("reply_timeout", detail)
                raise ReplyTimeoutError(detail)
            await self.wait_poll(max(0.0, deadline - self.clock()))

    # ---- subscriptions
    async def subscribe_ticks(self, symbols: tuple[str, ...]) -> None:
        """Add ``symbols`` to the tick subscription: the whole union is sent and kept once
        the EA has confirmed it (a command deleted unread by an EA starting up gets no
        reply: ``ReplyTimeoutError``, and the next call sends it again)."""
        wanted = self.tick_symbols | set(symbols)
        if wanted != self.tick_symbols:
            await self._subscribe_ticks(wanted)
            self.tick_symbols = wanted

    async def subscribe_bars(self, pairs: tuple[tuple[str, str], ...]) -> None:
        """Add (symbol, timeframe) pairs to the bar subscription (as ``subscribe_ticks``)."""
        wanted = self.bar_pairs | set(pairs)
        if wanted != self.bar_pairs:
            await self._subscribe_bars(wanted)
            self.bar_pairs = wanted

    async def _subscribe_ticks(self, symbols: set[str]) -> None:
        content = ",".join(sorted(symbols))

        def match(m: r.Message) -> bool:
            return (m.kind == "INFO" and m.text.startswith("Successfully subscribed to: ")) \
                or m.error_type == "SUBSCRIBE_SYMBOL"

        await self.request("SUBSCRIBE_SYMBOLS", content, match, family="SUBSCRIBE_SYMBOLS")

    async def _subscribe_bars(self, pairs: set[tuple[str, str]]) -> None:
        content = _pairs(pairs)

        def match(m: r.Message) -> bool:
            return (m.kind == "INFO" and m.text == f"Successfully subscribed to bar data: "
                    f"{content}") or m.error_type in ("SUBSCRIBE_BAR_DATA",
                                                      "BAR_DATA_WRONG_FORMAT")

        await self.request("SUBSCRIBE_SYMBOLS_BAR_DATA", content, match,
                           family="SUBSCRIBE_SYMBOLS_BAR_DATA")


def _pairs(pairs: set[tuple[str, str]]) -> str:
    return ",".join(f"{s},{tf}" for s, tf in sorted(pairs))


_CLIENTS: dict[Path, DwxClient] = {}


def shared_client(files_dir: str | Path, config: ClientConfig | None = None) -> DwxClient:
    """The process's one client for ``files_dir`` (module docstring). The first caller's
    ``config`` makes it (the live trader builds its order side, with the order timeout,
    before its market-data venue); a later caller asking for another server time offset
    is refused (``ConfigError``): both would read the same files."""
    key = Path(files_dir).resolve()
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = DwxClient(key, config)
    elif config is not None and config.server_utc_offset_s != \
            client.config.server_utc_offset_s:
        raise ConfigError(f"DWX folder {key} is already read with server UTC offset "
                          f"{client.config.server_utc_offset_s} s, not "
                          f"{config.server_utc_offset_s} s")
    return client
