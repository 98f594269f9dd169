"""``raytrade demo`` prepares both bundled symbols (its training step is ``train()``, covered
by test_train and by the relative-store test there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from raytrade.envs.features import Normalizer
from raytrade.scripts.cli import main


def test_demo_prepares_bundled_symbols(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--run-dir", str(tmp_path), "--time-budget", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    for symbol, info in summary["symbols"].items():
        assert info["features"] == 73
        assert sum(info["splits"].values()) == 25_920
        Normalizer.load(tmp_path / f"{symbol}_normalizer.json")
