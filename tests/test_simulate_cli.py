"""``raytrade simulate``: a signal file through the shared accounting, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.costs import CostModel
from raytrade.envs.execution import simulate
from raytrade.envs.metrics import performance
from raytrade.envs.sample import sample_path
from raytrade.scripts.cli import main

DATA = str(sample_path("BTCUSDT"))


def write_signals(path: Path, bars: BarTable, position: np.ndarray) -> Path:
    frame = bars.to_frame()[["timestamp"]].copy()
    frame["position"] = position
    frame.to_csv(path, index=False)
    return path


def momentum(bars: BarTable) -> np.ndarray:
    r = pd.Series(bars.close).pct_change(48)
    return np.where(r > 0, 1.0, np.where(r < 0, -1.0, 0.0))


@pytest.mark.parametrize("extra", [[], ["--no-slippage"], ["--slippage-bps", "3"],
                                   ["--borrow-bps-per-bar", "0.05", "--latency-bars", "2"]])
def test_simulate_cli_matches_library_and_shared_metrics(tmp_path: Path, btc: BarTable,
                                                         extra: list[str]) -> None:
    signals = write_signals(tmp_path / "s.csv", btc, momentum(btc))
    out = tmp_path / "out" / "result.json"
    assert main(["simulate", "--data", DATA, "--signals", str(signals), "--json", str(out),
                 "--fee-bps", "7.5", *extra]) == 0
    summary = json.loads(out.read_text())
    fixed = 0.0 if "--no-slippage" in extra else (3.0 if "--slippage-bps" in extra else None)
    borrow = 0.05 if "--borrow-bps-per-bar" in extra else 0.0
    latency = 2 if "--latency-bars" in extra else 1
    r = simulate(btc, momentum(btc), costs=CostModel(fee_bps=7.5, fixed_slippage_bps=fixed,
                                                     borrow_bps_per_bar=borrow),
                 latency_bars=latency)
    assert summary["final_equity"] == pytest.approx(r.equity[-1], rel=1e-9)
    assert summary["trades"] == r.trades[-1] > 100
    assert summary["fees"] == pytest.approx(r.fees[-1], rel=1e-9)
    perf = performance(r.equity, r.target, btc.interval_ms).to_dict()
    assert summary["metrics"]["sharpe"] == pytest.approx(perf["sharpe"], rel=1e-9)
    assert summary["metrics"]["max_drawdown"] == pytest.approx(perf["max_drawdown"], rel=1e-9)
    if fixed == 0.0:
        assert summary["slippage"] == 0.0
    else:
        assert summary["slippage"] > 0


def test_signal_rows_must_match_bars(tmp_path: Path, btc: BarTable,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pos = momentum(btc)
    short = write_signals(tmp_path / "short.csv", btc.slice(0, 100), pos[:100])
    assert main(["simulate", "--data", DATA, "--signals", str(short), "--json",
                 str(tmp_path / "o.json")]) == 1
    assert "100 signal rows for 25920 bars" in capsys.readouterr().err
    frame = btc.to_frame()[["timestamp"]].copy()
    frame["position"] = pos
    frame.loc[500, "timestamp"] = frame.loc[500, "timestamp"] + pd.Timedelta(minutes=1)
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    assert main(["simulate", "--data", DATA, "--signals", str(tmp_path / "shifted.csv"),
                 "--json", str(tmp_path / "o.json")]) == 1
    assert "line 502" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_bad_position_value_names_the_line(tmp_path: Path, btc: BarTable,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    frame = btc.to_frame()[["timestamp"]].copy()
    frame["position"] = momentum(btc).astype(object)
    frame.loc[9, "position"] = "long"
    frame.to_csv(tmp_path / "s.csv", index=False)
    assert main(["simulate", "--data", DATA, "--signals", str(tmp_path / "s.csv"),
                 "--json", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert "line 11" in err and "'long'" in err


def test_signal_file_without_position_column(tmp_path: Path, btc: BarTable,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    btc.to_frame().to_csv(tmp_path / "s.csv", index=False)
    assert main(["simulate", "--data", DATA, "--signals", str(tmp_path / "s.csv"),
                 "--json", str(tmp_path / "o.json")]) == 1
    assert "'position' column" in capsys.readouterr().err
