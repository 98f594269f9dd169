"""The numba cache folder follows every source file, so no stale kernel survives an edit."""

from __future__ import annotations

from pathlib import Path

from raytrade.envs import kernel_cache_dir


def test_cache_dir_changes_when_any_source_file_changes(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = kernel_cache_dir(tmp_path, base="/cache")
    assert first == kernel_cache_dir(tmp_path, base="/cache")
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")  # an inlined callee changed
    assert kernel_cache_dir(tmp_path, base="/cache") != first
    assert first.startswith("/cache/")
