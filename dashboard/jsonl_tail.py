"""Incremental reads of append-only JSON-lines objects in the run store.

Training appends to ``metrics/train.jsonl`` for days; the dashboard re-reads it every few
seconds. ``JsonlTail`` keeps what it parsed and, when the object changed, parses only the
bytes after the last complete line it saw (the earlier bytes are checked to be unchanged,
else the object was rewritten and is parsed again from the start). An unchanged entity tag
costs one ``get`` and no parsing.

A malformed line is not fatal: it is skipped and reported in ``errors`` with the object's
key and line number, so one bad write never hides a run's history. A subclass may check
each object further (``_keep``: e.g. against a record schema) and skip it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from raytrade.algos.storage.blobstore import BlobStore, NotFoundError
from raytrade.envs.errors import DataError


@dataclass
class JsonlTail:
    """The parsed rows of one JSON-lines object, refreshed by ``read``."""

    key: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    parsed_lines: int = 0
    """Lines parsed so far, over every read (shows the reads are incremental)."""
    _etag: str | None = None
    _consumed: int = 0
    _tail: bytes = b""  # the last complete line consumed, to detect a rewrite
    _lines: int = 0

    def read(self, blobs: BlobStore) -> list[dict[str, Any]]:
        """The rows now in the object (``[]`` if it does not exist yet)."""
        try:
            blob = blobs.get(self.key)
        except NotFoundError:
            self._reset()
            return self.rows
        if blob.etag == self._etag and self._etag is not None:
            return self.rows
        data = blob.data
        start = self._consumed
        if start > len(data) or data[start - len(self._tail):start] != self._tail:
            self._reset()
            start = 0
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next read
        if end > start:
            for raw in data[start:end].splitlines():
                self._lines += 1
                self._parse(raw)
            self._tail = data[data.rfind(b"\n", 0, end - 1) + 1:end]
            self._consumed = end
        self._etag = blob.etag
        return self.rows

    def _parse(self, raw: bytes) -> None:
        if not raw.strip():
            return
        self.parsed_lines += 1
        try:
            row = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.errors.append(f"{self.key} line {self._lines}: not JSON ({exc})")
            return
        if not isinstance(row, dict):
            self.errors.append(f"{self.key} line {self._lines}: not a JSON object")
            return
        try:
            self._keep(row, f"{self.key} line {self._lines}")
        except DataError as exc:
            self.errors.append(str(exc))

    def _keep(self, row: dict[str, Any], where: str) -> None:
        """Keep one parsed object (``where``: its key and line, for errors); raise
        ``DataError`` to skip it, naming ``where``. Subclasses check their schema here."""
        self.rows.append(row)

    def _reset(self) -> None:
        self.rows, self.errors = [], []
        self._etag, self._consumed, self._tail, self._lines = None, 0, b"", 0
