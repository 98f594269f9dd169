"""The market simulation: data loading and validation, resampling, causal features,
accounting, risk, metrics and the trading environments. Nothing here imports Ray.

Numba kernels are cached on disk. Numba checks only the source file of the function it
caches, not the files of the functions it inlined, so after an upgrade a cached kernel
could silently keep old accounting. We therefore key numba's cache folder on a hash of
every source file of this package: any change to any kernel gives a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba


def kernel_cache_dir(root: Path | None = None, base: str | None = None) -> str:
    """Numba cache folder for the package sources under ``root`` (default: this package)."""
    root = root or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    base = base or os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "raytrade", "numba")
    return os.path.join(base, digest.hexdigest()[:16])


numba.config.CACHE_DIR = kernel_cache_dir()  # type: ignore[attr-defined]
