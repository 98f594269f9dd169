"""Mirror a training run's local folder to its run store.

RLlib writes checkpoints to a local folder, and the driver appends metrics to local files.
When the run store is that very folder (``file://``, the embedded default) there is
nothing to do. When it is elsewhere (``s3://``), this copies ``metrics/*.jsonl`` (at most
every ``metrics_every_s`` seconds, and on ``flush``) and each checkpoint folder with its
``checkpoints/latest`` pointer written after the folder, so a resume on another machine
never sees a half-uploaded checkpoint. ``pull_latest`` brings the newest checkpoint back
for ``--resume``.

The name in ``checkpoints/latest`` is data from the store, not trusted: it must be one
plain path component (``keys.checkpoint_name``), and every downloaded file must land
inside the local ``checkpoints/<name>/`` folder, so a tampered pointer or key can never
make a resume read or write outside the run.
"""

from __future__ import annotations

import time
from pathlib import Path

from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore, LocalBlobStore, NotFoundError
from raytrade.envs.errors import ConfigError

METRICS = (keys.TRAIN_METRICS, keys.EVAL_METRICS, keys.SELECTION_METRICS)


class RunMirror:
    """Copies a local run folder's metrics and checkpoints to ``blobs``."""

    def __init__(self, blobs: BlobStore, local: str | Path, *,
                 metrics_every_s: float = 10.0) -> None:
        self.blobs = blobs
        self.local = Path(local).resolve()
        self.metrics_every_s = metrics_every_s
        self.same = isinstance(blobs, LocalBlobStore) and blobs.root == self.local
        self._last_push = float("-inf")
        self._pushed_curves: set[str] = set()

    def metrics(self, force: bool = False) -> None:
        """Upload the metrics files if due (or ``force``)."""
        if self.same:
            return
        now = time.monotonic()
        if not force and now - self._last_push < self.metrics_every_s:
            return
        for rel in METRICS:
            path = self.local / rel
            if path.is_file():
                self.blobs.put(rel, path.read_bytes())
        curves = self.local / keys.EVAL_CURVES
        for path in sorted(curves.glob("*.json")) if curves.is_dir() else []:
            key = f"{keys.EVAL_CURVES}{path.name}"
            if key not in self._pushed_curves:  # written once, never changed
                self.blobs.put(key, path.read_bytes())
                self._pushed_curves.add(key)
        self._last_push = now

    def checkpoint(self, name: str) -> None:
        """Upload ``checkpoints/<name>/`` then point ``checkpoints/latest`` at it."""
        if self.same:
            return
        prefix = keys.checkpoint_prefix(name)
        root = self.local / prefix
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.blobs.put(f"{prefix}{path.relative_to(root).as_posix()}", path.read_bytes())
        self.blobs.put(keys.LATEST_CHECKPOINT, name.encode())

    def pull_latest(self) -> str | None:
        """Download the newest checkpoint (and metrics) into the local folder; its name,
        or None if the store has none."""
        if self.same:
            return read_latest_checkpoint(self.local)
        where = f"{self.blobs.uri}/{keys.LATEST_CHECKPOINT}"
        try:
            raw = self.blobs.get(keys.LATEST_CHECKPOINT).data
        except NotFoundError:
            return None
        name = keys.checkpoint_name(_text(raw, where), source=where)
        prefix = keys.checkpoint_prefix(name)
        root = (self.local / prefix).resolve()
        for key in self.blobs.list(prefix):
            target = (self.local / key).resolve()
            if not target.is_relative_to(root):
                raise ConfigError(f"{self.blobs.uri}/{key}: a checkpoint file outside "
                                  f"{prefix}; refusing to resume from it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.blobs.get(key).data)
        (self.local / keys.LATEST_CHECKPOINT).write_text(name)
        for rel in METRICS:
            try:
                data = self.blobs.get(rel).data
            except NotFoundError:
                continue
            (self.local / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.local / rel).write_bytes(data)
        return name


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not text: {exc}") from exc


def read_latest_checkpoint(run_dir: str | Path) -> str | None:
    """The validated checkpoint name in a local run folder's ``checkpoints/latest``
    (None when there is none yet)."""
    run = Path(run_dir).resolve()
    latest = run / keys.LATEST_CHECKPOINT
    if not latest.exists():
        return None
    name = keys.checkpoint_name(_text(latest.read_bytes(), str(latest)), source=str(latest))
    if not (run / keys.checkpoint_prefix(name)).resolve().is_relative_to(run / keys.CHECKPOINTS):
        raise ConfigError(f"{latest}: checkpoint {name} resolves outside {run / keys.CHECKPOINTS}"
                          " (a link?); refusing to resume from it")
    return name
