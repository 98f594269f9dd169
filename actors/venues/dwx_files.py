"""The DWX Connect file layer: command files written atomically into the EA's slots, and
the EA's JSON files read tolerantly.

DWX Connect (Darwinex, BSD-3; ``github.com/darwinex/dwxconnect``: ``mql/DWX_Server_MT4.mq4``,
``mql/DWX_Server_MT5.mq5``, ``python/api/dwx_client.py``) is a bridge between a program and
a MetaTrader 4/5 terminal through plain files in the terminal's data folder
(``MQL4/Files`` or ``MQL5/Files``), sub-folder ``DWX``. Its Expert Advisor (EA), on a
millisecond timer:

- scans ``DWX_Commands_0.txt``, ``DWX_Commands_1.txt``, ... up to ``_49``, *stopping at the
  first slot that does not exist*, and for each file reads it, deletes it and executes it.
  A command is one line ``<:ID|COMMAND|CONTENT:>``; the EA checks both markers (a file
  read while half written fails them and is reported as ``WRONG_FORMAT_*``), splits on
  ``|`` into exactly three parts and skips an ID it has executed among its last 1000
  (``RESET_COMMAND_IDS`` clears that memory). So the writer must fill the *lowest free*
  slot, and must never let the EA see a partial file;
- rewrites ``DWX_Orders.txt`` (account and open orders), ``DWX_Messages.txt`` (its last 50
  INFO/ERROR messages keyed by a rising millisecond counter), ``DWX_Market_Data.txt``
  (bid/ask per subscribed symbol), ``DWX_Bar_Data.txt`` (the last closed bar per subscribed
  symbol and timeframe) and, on request, ``DWX_Historic_Data.txt`` and
  ``DWX_Historic_Trades.txt``. It rewrites them in place (truncate, then write), so a
  reader can catch one half written.

Here:

- ``CommandSlots.write`` writes the command to a temporary name the EA never scans, then
  *links* it to the lowest free slot name (``os.link`` fails if the name exists, so two
  writers can never overwrite each other's command, and the EA sees the whole file or
  nothing); where the file system has no hard links it falls back to an existence check
  and ``os.replace``. ``withdraw`` renames a slot's file away (the EA can no longer find it)
  and says whether it was still there.
- ``JsonFile.poll`` reads one EA file when its (mtime, size) changed, or its content hash
  did: unchanged content is not parsed twice; content that does not parse is *held*: it is
  retried on the next poll (the EA was mid-write) and never acted on, and once the file
  has stayed invalid for ``invalid_after_s`` since its last valid read (whatever the
  invalid content: the EA rewrites a broken orders file every second with a new equity)
  it is reported (``InvalidFileError`` naming the file and the parse error) once.

Text: the MT4 EA writes ANSI text, the MT5 EA may write UTF-16 with a byte-order mark;
both are decoded, trailing line breaks dropped. Commands are written as ASCII.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrade.envs.errors import ConfigError, DataError, TemporaryError

FOLDER = "DWX"
"""The EA's sub-folder of ``MQL4/Files`` / ``MQL5/Files``."""
ORDERS = "DWX_Orders.txt"
MESSAGES = "DWX_Messages.txt"
MARKET_DATA = "DWX_Market_Data.txt"
BAR_DATA = "DWX_Bar_Data.txt"
HISTORIC_DATA = "DWX_Historic_Data.txt"
HISTORIC_TRADES = "DWX_Historic_Trades.txt"
COMMAND_PREFIX = "DWX_Commands_"
COMMAND_SLOTS = 50
"""The EA scans this many command files (``maxCommandFiles``)."""
COMMAND_ID_MODULUS = 100_000
"""Command ids cycle below this (the EA remembers the last 1000 it executed)."""
_FORBIDDEN = ("|", "\n", "\r", "<:", ":>")


class CommandSlotsFullError(TemporaryError):
    """Every command slot is taken: the EA is not reading (stopped, detached, or its
    AutoTrading switched off)."""


class InvalidFileError(DataError):
    """An EA file stayed unparseable: ``path`` names it, ``reason`` says why."""

    def __init__(self, path: Path, reason: str, snippet: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason} (content starts {snippet[:120]!r})")


@dataclass(frozen=True)
class DwxPaths:
    """Where the EA's files are, under a terminal's ``MQL4/Files`` or ``MQL5/Files``."""

    files_dir: Path

    @property
    def folder(self) -> Path:
        """``<files_dir>/DWX``."""
        return self.files_dir / FOLDER

    def file(self, name: str) -> Path:
        """One of the EA's files by name (``ORDERS``, ``MESSAGES``, ...)."""
        return self.folder / name

    def command(self, slot: int) -> Path:
        """Command slot ``slot`` (0 .. ``COMMAND_SLOTS - 1``)."""
        return self.folder / f"{COMMAND_PREFIX}{slot}.txt"

    def check(self) -> None:
        """``ConfigError`` unless ``files_dir`` is an existing folder (the EA creates
        ``DWX`` inside it when it starts; it is created here when missing)."""
        if not self.files_dir.is_dir():
            raise ConfigError(f"DWX files folder {self.files_dir} does not exist: point "
                              "--files-dir at the terminal's MQL4/Files or MQL5/Files")
        self.folder.mkdir(exist_ok=True)


def command_text(command_id: int, command: str, content: str) -> str:
    """One command line ``<:ID|COMMAND|CONTENT:>``; ``ConfigError`` when a part would
    break the EA's parsing (a ``|`` splits it into more than three parts, a line break
    ends the line early, a marker, or a non-ASCII character)."""
    if not 0 <= command_id < COMMAND_ID_MODULUS:
        raise ConfigError(f"DWX command id {command_id} outside [0, {COMMAND_ID_MODULUS})")
    for part, name in ((command, "command"), (content, "content")):
        bad = [s for s in _FORBIDDEN if s in part]
        if bad or not part.isascii():
            raise ConfigError(f"DWX {name} {part!r}: must be ASCII without "
                              f"{' '.join(repr(s) for s in _FORBIDDEN)}")
    if not command or not command.replace("_", "").isalnum():
        raise ConfigError(f"DWX command name {command!r} is not an upper-case word")
    return f"<:{command_id}|{command}|{content}:>"


class CommandSlots:
    """Writes command files into the EA's lowest free slot (module docstring)."""

    def __init__(self, paths: DwxPaths) -> None:
        self.paths = paths
        self._tmp = itertools.count()
        self._link = True

    def write(self, text: str) -> int:
        """Place ``text`` in the lowest free slot; the slot, or ``CommandSlotsFullError``
        when all ``COMMAND_SLOTS`` are taken."""
        folder = self.paths.folder
        tmp = folder / f".raytrade-{os.getpid()}-{next(self._tmp)}.tmp"
        with open(tmp, "w", encoding="ascii", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            for slot in range(COMMAND_SLOTS):
                target = self.paths.command(slot)
                if self._place(tmp, target):
                    return slot
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise CommandSlotsFullError(f"all {COMMAND_SLOTS} DWX command slots in {folder} "
                                    "are taken: the EA is not reading its commands (is it "
                                    "attached to a chart, with AutoTrading on?)")

    def _place(self, tmp: Path, target: Path) -> bool:
        if self._link:
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here: check, then rename (a narrow race)
                self._link = False
        if target.exists():
            return False
        os.replace(tmp, target)
        return True

    def read(self, slot: int) -> str | None:
        """The text in ``slot`` now, or None when it is free (the EA consumed it)."""
        try:
            return self.paths.command(slot).read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None

    def withdraw(self, slot: int, text: str) -> bool:
        """Take ``text`` back out of ``slot`` before the EA reads it: True if it was still
        there (now renamed away, never to be executed), False if the slot no longer holds
        it (the EA consumed it, or the rename was refused because the EA has it open)."""
        target = self.paths.command(slot)
        if self.read(slot) != text:
            return False
        aside = self.paths.folder / f".raytrade-withdrawn-{os.getpid()}-{next(self._tmp)}"
        try:
            os.rename(target, aside)
        except OSError:
            return False
        if aside.read_text(encoding="ascii", errors="replace") != text:
            with contextlib.suppress(OSError):  # not ours after all: put it back as it was
                os.link(aside, target)
            aside.unlink()
            return False
        aside.unlink()
        return True


class FolderLock:
    """This process's claim on an EA folder: ``DWX/raytrade-client.lock`` under an
    exclusive ``flock``. The EA keeps *one* list of tick and bar subscriptions, which
    every ``SUBSCRIBE_*`` command replaces, so two clients on one folder would unsubscribe
    each other: a second one (another process, or a second client in this one) is
    refused with ``ConfigError`` naming the holder. Released by ``release`` or when the
    process ends. Where ``fcntl`` does not exist (Windows) the claim is not enforced."""

    def __init__(self, paths: DwxPaths) -> None:
        self.path = paths.folder / "raytrade-client.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Claim the folder (idempotent)."""
        if self._fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"{self.path.parent} is already used by another raytrade "
                              f"client (process {holder}): the EA keeps one subscription "
                              "list, so each terminal folder takes one raytrade process "
                              "(trade several symbols from one process, or give each its "
                              "own terminal)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the folder up."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def decode(raw: bytes) -> str:
    """EA file bytes as text: UTF-16 (with BOM), UTF-8 (with or without BOM) or ANSI;
    trailing line breaks and NULs removed."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", errors="replace")
    elif raw.startswith(b"\xef\xbb\xbf"):
        text = raw[3:].decode("utf-8", errors="replace")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    return text.rstrip("\r\n\x00 ")


@dataclass(frozen=True)
class FileChange:
    """A new, valid content of an EA file."""

    data: Any
    """The parsed JSON."""
    text: str
    digest: str
    """SHA-256 of the text (change detection and logs)."""


class JsonFile:
    """Change detection and tolerant parsing of one EA file (module docstring).

    Args:
        path: the file.
        invalid_after_s: how long the file may stay invalid (timed from its last valid
            read, whatever the invalid content) before it is reported.
        clock: monotonic seconds.
    """

    def __init__(self, path: Path, *, invalid_after_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.invalid_after_s = invalid_after_s
        self.clock = clock
        self._stat: tuple[int, int] | None = None
        self._digest = ""
        self._bad: tuple[str, float, bool] | None = None  # digest, since, reported
        self.exists = False
        self.rewrites = 0
        """Times the file was seen rewritten (new mtime or size), valid or not."""
        self.invalid = 0
        """Reads that did not parse (a half-written file counts once per read)."""
        self.error = ""
        """Why the last invalid read did not parse."""

    def forget(self) -> None:
        """Treat the next read as new even if unchanged (after the EA restarted)."""
        self._stat = None
        self._digest = ""

    def poll(self) -> FileChange | None:
        """The file's content if it changed and parses; None if unchanged, absent or not
        (yet) valid; ``InvalidFileError`` once when invalid content has stayed for
        ``invalid_after_s``."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.exists = False
            self._stat = None
            self._bad = None
            return None
        self.exists = True
        stat = (st.st_mtime_ns, st.st_size)
        if stat == self._stat and self._bad is None:
            return None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.exists = False
            return None
        except PermissionError:  # the EA has it open for writing (Windows): next poll
            return None
        if stat != self._stat:
            self.rewrites += 1
        self._stat = stat
        text = decode(raw)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            self._bad = None
            return None
        try:
            data = json.loads(text) if text.strip() else _EMPTY
        except json.JSONDecodeError as exc:
            self._invalid(digest, f"not valid JSON: {exc.msg} at character {exc.pos}", text)
            return None
        if data is _EMPTY:
            self._invalid(digest, "empty", text)
            return None
        self._bad = None
        self._digest = digest
        return FileChange(data, text, digest)

    def _invalid(self, digest: str, reason: str, text: str) -> None:
        # timed from the last valid parse, not from this content: the EA rewrites its
        # orders file every second with a new equity, so a broken file (an unescaped quote
        # in a ticket's comment) changes all the time and never "stays" the same
        self.invalid += 1
        self.error = reason
        now = self.clock()
        if self._bad is None:
            self._bad = (digest, now, False)
            return
        _, since, reported = self._bad
        self._bad = (digest, since, reported)
        if not reported and now - since >= self.invalid_after_s:
            self._bad = (digest, since, True)
            raise InvalidFileError(self.path, f"{reason}, invalid for "
                                   f"{now - since:.1f} s", text)

    @property
    def invalid_since(self) -> float | None:
        """``clock`` time since when every read was invalid (None: the last read parsed)."""
        return None if self._bad is None else self._bad[1]


_EMPTY: Any = object()
