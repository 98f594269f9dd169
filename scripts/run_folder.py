"""Where a command's run lives: the experiment, its store and the local run folder.

``raytrade train`` and ``raytrade tune`` both write into a run store (a folder or an S3
prefix) from a local folder: the folder is the store itself when the store is local,
else ``--work-dir`` or ``runs/<name><suffix>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.storage.blobstore import BlobStore, LocalBlobStore, open_blobstore


def open_run(args: argparse.Namespace, suffix: str = ""
             ) -> tuple[ExperimentConfig, BlobStore, Path]:
    """The experiment of ``--config``, the blob store of ``--store`` (default
    ``runs/<name><suffix>``) and the local run folder (``--work-dir``, or the store's own
    folder when it is local)."""
    exp = ExperimentConfig.load(args.config)
    blobs = open_blobstore(args.store or f"runs/{exp.name}{suffix}",
                           endpoint_url=args.s3_endpoint_url)
    if isinstance(blobs, LocalBlobStore):
        run_dir = Path(args.work_dir or blobs.root)  # the folder is the store
    else:
        run_dir = Path(args.work_dir or Path("runs") / f"{exp.name}{suffix}")
    return exp, blobs, run_dir
