"""Reads every live actor's record from the run store: ``live/<actor>/`` (typed in
``live_records``) and the operator commands under ``live/commands/``.

The JSON-lines files grow for as long as an actor trades, so each is read incrementally
(``JsonlTail``: only appended bytes are parsed) and every new line is checked against its
record class as it is parsed. A line that is not JSON, not an object, or misses or
mistypes a field is skipped and named (object key, line number, field and rule) in the
record's ``errors``; the page shows those beside the rest of the record, so one bad write
neither hides an actor nor shows a wrong number.

No broker, journal or actor internals, and neither torch nor Ray: the dashboard only reads
what the actors publish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore, NotFoundError
from raytrade.algos.storage.live_commands import LiveCommand, read_commands
from raytrade.dashboard.jsonl_tail import JsonlTail
from raytrade.dashboard.live_records import (
    LiveEquity,
    LiveEvent,
    LiveFill,
    LiveHealth,
    LiveOrder,
    parse_record,
)
from raytrade.envs.errors import ConfigError, DataError

R = TypeVar("R")


class RecordTail(JsonlTail, Generic[R]):
    """A ``JsonlTail`` whose lines are ``kind`` records: ``records`` holds them typed (and
    ``rows`` stays empty); a line that does not fit ``kind`` is skipped and named in
    ``errors``."""

    def __init__(self, key: str, kind: type[R]) -> None:
        self.kind = kind
        self.records: list[R] = []
        super().__init__(key)

    def read_records(self, blobs: BlobStore) -> list[R]:
        """The records now in the object (``[]`` if it does not exist yet)."""
        self.read(blobs)
        return self.records

    def _keep(self, row: dict[str, Any], where: str) -> None:
        self.records.append(parse_record(self.kind, row, where))

    def _reset(self) -> None:
        super()._reset()
        self.records = []


@dataclass(frozen=True)
class LiveRecord:
    """One live actor's exported record, as read now."""

    actor: str
    health: LiveHealth | None
    """None until the actor wrote its first ``health.json`` (or when it is malformed:
    then ``errors`` says why)."""
    orders: tuple[LiveOrder, ...]
    """Every order state written, in file order."""
    fills: tuple[LiveFill, ...]
    equity: tuple[LiveEquity, ...]
    events: tuple[LiveEvent, ...]
    errors: tuple[str, ...]
    """Skipped lines and a malformed health object, named."""


class LiveReader:
    """Reads the live records of one store; keep one per store (it reads incrementally)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._tails: dict[str, RecordTail[Any]] = {}

    def actors(self) -> tuple[list[str], list[str]]:
        """The actors that exported something under ``live/`` (sorted), and an error for
        each folder there whose name is not a valid actor name (skipped)."""
        names: set[str] = set()
        bad: dict[str, str] = {}
        for key in self.blobs.list(keys.LIVE):
            parts = key.split("/")
            if len(parts) != 3 or key.startswith(keys.LIVE_COMMANDS):
                continue
            try:
                keys.live_prefix(parts[1])
            except ConfigError as exc:
                bad[parts[1]] = f"{keys.LIVE}{parts[1]}/: {exc}"
                continue
            names.add(parts[1])
        return sorted(names), [bad[name] for name in sorted(bad)]

    def record(self, actor: str) -> LiveRecord:
        """``actor``'s health, orders, fills, equity and events."""
        errors: list[str] = []
        orders = self._records(actor, keys.LIVE_ORDERS, LiveOrder, errors)
        fills = self._records(actor, keys.LIVE_FILLS, LiveFill, errors)
        equity = self._records(actor, keys.LIVE_EQUITY, LiveEquity, errors)
        events = self._records(actor, keys.LIVE_EVENTS, LiveEvent, errors)
        return LiveRecord(actor, self._health(actor, errors), orders, fills, equity, events,
                          tuple(errors))

    def commands(self) -> tuple[list[LiveCommand], list[str]]:
        """Every operator command issued (oldest first), and the stored objects that are
        not valid commands, named."""
        return read_commands(self.blobs)

    def _records(self, actor: str, name: str, kind: type[R], errors: list[str]
                 ) -> tuple[R, ...]:
        key = keys.live_key(actor, name)
        tail = self._tails.get(key)
        if tail is None:
            tail = self._tails[key] = RecordTail(key, kind)
        records = cast(list[R], tail.read_records(self.blobs))
        errors.extend(tail.errors)
        return tuple(records)

    def _health(self, actor: str, errors: list[str]) -> LiveHealth | None:
        key = keys.live_key(actor, keys.LIVE_HEALTH)
        try:
            data = self.blobs.get(key).data
        except NotFoundError:
            return None
        try:
            return parse_record(LiveHealth, json.loads(data), key)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            errors.append(f"{key}: not JSON ({exc})")
        except DataError as exc:
            errors.append(str(exc))
        return None
