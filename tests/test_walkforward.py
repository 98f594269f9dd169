"""Walk-forward on real ETH/BTC bars with a small budget: folds that never leak, each
fold's policy trained on its window only, published, and tested on the unseen window
against the baselines; JSON, HTML and the dashboard summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.walkforward import duration_ms, make_folds
from raytrade.envs.errors import ConfigError
from raytrade.envs.io import load_bars
from raytrade.scripts.cli import main

from tests.live_setup import bars, write_csv

DAY = 86_400_000
CONFIG = """
name = "wf_test"
seed = 3
[data]
sources = ["{eth}", "{btc}"]
[features]
higher_timeframes = []
pivot_levels = 2
smc_level = 1
regime_vol_long = 96
[env]
window = 8
max_episode_steps = 256
[network]
hidden = [32, 32]
[dqn]
train_batch_size = 64
learning_starts = 64
[resources]
num_env_runners = 1
num_envs_per_env_runner = 4
rollout_fragment_length = 16
"""


def test_folds_roll_forward_without_overlap() -> None:
    folds = make_folds(0, 100 * DAY, duration_ms("60d"), duration_ms("15d"),
                       duration_ms("15d"))
    assert [(f.train_start // DAY, f.test_start // DAY, f.test_end // DAY) for f in folds] \
        == [(0, 60, 75), (15, 75, 90)]
    for f in folds:
        assert f.train_end <= f.test_start < f.test_end
    with pytest.raises(ConfigError, match="shorter than one"):
        make_folds(0, 10 * DAY, duration_ms("60d"), duration_ms("15d"), duration_ms("15d"))
    with pytest.raises(ConfigError, match="bad duration"):
        duration_ms("15 days")


@pytest.mark.slow
def test_walkforward_on_real_bars_never_leaks_and_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eth, btc = bars(9 * 288)  # 9 days of 5m bars
    config = tmp_path / "wf.toml"
    config.write_text(CONFIG.format(eth=write_csv(eth, tmp_path), btc=write_csv(btc, tmp_path)))
    out = tmp_path / "out"
    code = main(["walkforward", "--config", str(config), "--train", "5d", "--test", "2d",
                 "--step", "2d", "--iterations", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "walkforward.json").read_text())
    folds = report["folds"]
    assert len(folds) == 2
    store = PolicyStore((out / "store").as_uri())
    assert [f["version"] for f in folds] == store.versions() == [1, 2]
    assert store.channel("candidate").version == 2  # type: ignore[union-attr]
    for f in folds:
        # training saw only its window: the files it trained on, and the normalizer's fit
        fold_dir = out / "folds" / f"fold_{f['index']:02d}"
        trained_on = list(fold_dir.glob("train_data_*/**/*.csv"))
        assert len(trained_on) == 2
        for path in trained_on:
            ts = load_bars(path).ts
            assert ts[0] >= f["train_start"] and ts[-1] < f["train_end"], path
        assert f["train_start"] <= f["normalizer_fit"][0] <= f["normalizer_fit"][1] \
            < f["test_start"]
        # decisions out of sample lie in the test window only; baselines side by side
        # what the system would have traded: the policy when its own validation passed
        # the publication gate, flat otherwise
        assert isinstance(f["deployed"], bool) and f["deploy_reason"]
        for played in (f["out_of_sample"], f["in_sample"]):
            for per in played.values():
                assert per["deployed"] == per["policy" if f["deployed"] else "flat"]
        for dataset, per in f["out_of_sample"].items():
            assert set(per) == {"policy", "deployed", "buy_and_hold", "flat", "random",
                                "momentum"}
            ts = np.array(per["policy"]["curves"]["ts"])
            assert ts.min() >= f["test_start"] and ts.max() < f["test_end"], dataset
            assert per["flat"]["final_equity"] == 10_000.0
            for name, run in per.items():  # every fold reports its costs beside the return
                assert run["gross_return"] == pytest.approx(run["total_return"]
                                                            + run["cost_drag"]), name
                assert {"slippage_fraction", "turnover", "trades_per_day",
                        "avg_holding_bars", "halted"} <= set(run), name
    # the aggregate chains the test windows: as many bars as the folds together
    agg = report["aggregate"]["ETHUSDT"]["policy"]
    assert np.isfinite(agg["final_equity"]) and "sharpe_gap_in_minus_out" in agg
    assert agg["max_fold_cost_drag"] == max(f["out_of_sample"]["ETHUSDT"]["policy"]
                                            ["cost_drag"] for f in folds)
    page = (out / "walkforward.html").read_text()
    assert "<script src=" not in page and "Plotly.newPlot" in page and "Fold 1" in page
    # the dashboard's walk-forward page reads the summary from the store
    key = store.blobs.list("reports/walk_forward/")[0]
    summary = json.loads(store.blobs.get(key).data)
    rows = pd.DataFrame(summary["folds"])
    assert set(rows["fold"]) == {0, 1} and set(rows["dataset"]) == {"ETHUSDT", "BTCUSDT"}
    assert rows["oos_cost_drag"].notna().all() and "oos_gross_return" in rows
    assert json.loads(capsys.readouterr().out)["report"].endswith("walkforward.html")
