"""Mirror a training run's local folder to its run store.

RLlib writes checkpoints to a local folder, and the driver appends metrics to local files.
When the run store is that very folder (``file://``, the embedded default) there is
nothing to do. When it is elsewhere (``s3://``), this copies ``metrics/*.jsonl`` (at most
every ``metrics_every_s`` seconds, and on ``flush``) and each checkpoint folder with its
``checkpoints/latest`` pointer written after the folder, so a resume on another machine
never sees a half-uploaded checkpoint. ``pull_latest`` brings the newest checkpoint back
for ``--resume``.
"""

from __future__ import annotations

import time
from pathlib import Path

from raytrade.algos.storage.blobstore import BlobStore, LocalBlobStore, NotFoundError

METRICS = ("metrics/train.jsonl", "metrics/eval.jsonl")


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
        curves = self.local / "metrics" / "eval_curves"
        for path in sorted(curves.glob("*.json")) if curves.is_dir() else []:
            key = f"metrics/eval_curves/{path.name}"
            if key not in self._pushed_curves:  # written once, never changed
                self.blobs.put(key, path.read_bytes())
                self._pushed_curves.add(key)
        self._last_push = now

    def checkpoint(self, name: str) -> None:
        """Upload ``checkpoints/<name>/`` then point ``checkpoints/latest`` at it."""
        if self.same:
            return
        root = self.local / "checkpoints" / name
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.blobs.put(f"checkpoints/{name}/{path.relative_to(root).as_posix()}",
                           path.read_bytes())
        self.blobs.put("checkpoints/latest", name.encode())

    def pull_latest(self) -> str | None:
        """Download the newest checkpoint (and metrics) into the local folder; its name,
        or None if the store has none."""
        if self.same:
            latest = self.local / "checkpoints" / "latest"
            return latest.read_text().strip() if latest.exists() else None
        try:
            name = self.blobs.get("checkpoints/latest").data.decode().strip()
        except NotFoundError:
            return None
        prefix = f"checkpoints/{name}/"
        for key in self.blobs.list(prefix):
            target = self.local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.blobs.get(key).data)
        (self.local / "checkpoints" / "latest").write_text(name)
        for rel in METRICS:
            try:
                data = self.blobs.get(rel).data
            except NotFoundError:
                continue
            (self.local / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.local / rel).write_bytes(data)
        return name
