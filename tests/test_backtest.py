"""``raytrade backtest`` on real ETH/BTC bars: the bundle's own rules through the env's
accounting (its equity equals the backtest env driven directly), baselines side by side,
costs on, reproducible from the seed, and a self-contained HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from raytrade.algos.backtest import SUMMARY_KEYS, load_policy, run_backtest
from raytrade.envs.features.pipeline import FeaturePipeline
from raytrade.envs.io import load_bars
from raytrade.scripts.cli import main

from tests.live_setup import backtest, bars, experiment, paper_store, write_csv

N_BARS = 5_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, int]:
    folder = tmp_path_factory.mktemp("bt")
    eth, btc = bars(N_BARS)
    eth_csv, btc_csv = write_csv(eth, folder), write_csv(btc, folder)
    paper_store(folder / "store")
    first = FeaturePipeline(experiment().features).compute(eth, btc).first_valid \
        + experiment().env.window - 1
    return folder, eth_csv, btc_csv, first


def test_backtest_cli_matches_the_env_and_writes_json_and_html(
        data: tuple[Path, Path, Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    folder, eth_csv, btc_csv, first = data
    out = folder / "report"
    code = main(["backtest", "--policy", f"{(folder / 'store').as_uri()}@1", "--data",
                 str(eth_csv), "--reference", str(btc_csv), "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "backtest.json").read_text())
    per = report["datasets"]["ETHUSDT"]
    assert set(per) == {"policy", "buy_and_hold", "flat", "random", "momentum"}
    assert printed["datasets"]["ETHUSDT"]["policy"]["sharpe"] == per["policy"]["sharpe"]
    # the same policy through the backtest env driven directly, from the first bar whose
    # window is complete: same decisions, same equity
    policy = load_policy(f"{(folder / 'store').as_uri()}@1")
    path = backtest(policy, eth_csv, btc_csv, first)
    targets, equity = path.targets, path.equity
    assert per["policy"]["final_equity"] == pytest.approx(equity[-1], rel=1e-9)
    assert per["policy"]["bars"] == len(equity)
    assert len(per["policy"]["trade_list"]) == int(np.sum(np.diff([0.0, *targets]) != 0))
    # costs are on; flat never pays them; buy-and-hold trades once
    assert report["config"]["fee_bps"] > 0 and per["policy"]["fees"] > 0
    assert per["flat"]["final_equity"] == 10_000.0 and per["flat"]["fees"] == 0.0
    assert len(per["buy_and_hold"]["trade_list"]) == 1
    assert per["momentum"]["trades"] > 0
    # one self-contained file: Plotly inlined, nothing fetched
    page = (out / "backtest.html").read_text()
    assert "<script src=" not in page and "Plotly.newPlot" in page
    assert "ETHUSDT" in page and "momentum" in page and "v000001" in page


def test_backtest_is_reproducible_from_the_seed(data: tuple[Path, Path, Path, int]) -> None:
    folder, eth_csv, btc_csv, _ = data
    policy = load_policy((folder / "store").as_uri())
    runs = [run_backtest(policy, [str(eth_csv)], reference=str(btc_csv), seed=s).to_json()
            for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0]["datasets"]["ETHUSDT"]["random"] != runs[2]["datasets"]["ETHUSDT"]["random"]


def test_backtest_needs_the_reference_the_features_use(
        data: tuple[Path, Path, Path, int]) -> None:
    folder, eth_csv, _, _ = data
    from raytrade.envs.errors import ConfigError

    with pytest.raises(ConfigError, match="BTCUSDT bars"):
        run_backtest(load_policy((folder / "store").as_uri()), [str(eth_csv)])


def test_backtest_reports_costs_and_marks_a_halted_baseline(
        data: tuple[Path, Path, Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    folder, eth_csv, btc_csv, _ = data
    out = folder / "report-costs"
    assert main(["backtest", "--policy", f"{(folder / 'store').as_uri()}@1", "--data",
                 str(eth_csv), "--reference", str(btc_csv), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)["datasets"]["ETHUSDT"]
    per = json.loads((out / "backtest.json").read_text())["datasets"]["ETHUSDT"]
    for name, run in per.items():
        assert set(SUMMARY_KEYS) <= set(printed[name]), name
        assert printed[name]["cost_drag"] == run["cost_drag"] == pytest.approx(
            (run["fees"] + run["slippage"] + run["borrow"]) / 10_000)
        assert run["gross_return"] == pytest.approx(run["total_return"] + run["cost_drag"])
    # slippage is reported beside the fees; flat pays nothing
    assert per["policy"]["slippage"] > 0 and per["policy"]["slippage_fraction"] > 0
    assert per["flat"]["cost_drag"] == 0.0 and per["flat"]["trades_per_day"] == 0.0
    # the random baseline trades away half its equity and hits the drawdown halt: marked,
    # with the bar and time it stopped (its curve ends there)
    random = per["random"]
    assert random["halted"] is True
    assert random["halted_ts"] == int(load_bars(eth_csv).ts[random["halted_bar"]])
    assert random["bars"] < per["flat"]["bars"], "it stopped before the end"
    assert per["buy_and_hold"]["halted"] is False and per["buy_and_hold"]["halted_bar"] is None
    page = (out / "backtest.html").read_text()
    assert "random (halted)" in page and "cost_drag" in page and "slippage_fraction" in page
