"""``raytrade backtest`` on real ETH/BTC bars: the bundle's own rules through the env's
accounting (its equity equals the backtest env driven directly), baselines side by side,
costs on, reproducible from the seed, and a self-contained HTML report; a split (by the
manifest's fractions) or a date range restricts the bars decided on, the first decision
bar and the warm-up are printed, and the reference is optional when it can be found."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from raytrade.algos.backtest import SUMMARY_KEYS, load_policy, run_backtest
from raytrade.algos.backtest_selection import Selection, header_lines, utc
from raytrade.envs.dataset import WarmupWarning
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.features.pipeline import FeaturePipeline
from raytrade.envs.io import load_bars
from raytrade.envs.market import load_markets
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


def test_backtest_without_a_resolvable_reference_names_what_is_missing(
        data: tuple[Path, Path, Path, int], tmp_path: Path) -> None:
    # a policy that never saw data: its manifest names no reference to fall back on
    _, eth_csv, _, _ = data
    _, policy = paper_store(tmp_path / "store", quick=True)
    with pytest.raises(ConfigError, match=r"features need BTCUSDT bars as reference: no "
                       r"traded file is BTCUSDT, and the manifest records no training data.*"
                       r"--reference FILE"):
        run_backtest(policy, [str(eth_csv)])


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

def test_backtest_reference_is_optional_when_the_traded_file_is_the_reference(
        data: tuple[Path, Path, Path, int], tmp_path: Path) -> None:
    _, _, btc_csv, _ = data
    _, policy = paper_store(tmp_path / "store", quick=True)
    result = run_backtest(policy, [str(btc_csv)], selection=Selection(split="all"))
    assert set(result.datasets) == {"BTCUSDT"} and result.config["reference"] is None
    assert result.datasets["BTCUSDT"]["policy"]["bars"] > 0


def test_backtest_reference_from_the_manifest_matches_an_explicit_one(
        data: tuple[Path, Path, Path, int]) -> None:
    # the policy trained on sample:ETHUSDT and sample:BTCUSDT: the manifest's BTC source
    # is the reference when none is given, the same bars as the explicit file
    folder, eth_csv, btc_csv, _ = data
    policy = load_policy((folder / "store").as_uri())
    test = Selection(split="test")
    implicit = run_backtest(policy, [str(eth_csv)], selection=test)
    explicit = run_backtest(policy, [str(eth_csv)], reference=str(btc_csv), selection=test)
    assert implicit.config["reference"].endswith("BTCUSDT_5m_2025-04-03_2025-07-02.csv.gz")
    assert implicit.to_json()["datasets"] == explicit.to_json()["datasets"]


def test_backtest_split_test_decides_on_the_test_bars_and_prints_the_first_one(
        data: tuple[Path, Path, Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    folder, eth_csv, _, first = data
    ts = load_bars(eth_csv).ts
    code = main(["backtest", "--policy", (folder / "store").as_uri(), "--data", str(eth_csv),
                 "--split", "test", "--out", str(folder / "split")])
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    lo = round(N_BARS * 0.85)  # the manifest's fractions: train 0.7, validation 0.15
    d = printed["decisions"]["ETHUSDT"]
    assert (d["first_decision_bar"], d["last_decision_bar"]) == (lo, N_BARS - 2)
    assert (d["first_decision_ms"], d["last_decision_ms"]) == (ts[lo], ts[N_BARS - 2])
    assert d["warmup_bars"] == first and d["warmup_in_selection_bars"] == 0
    assert d["decisions"] == N_BARS - 1 - lo
    report = json.loads((folder / "split" / "backtest.json").read_text())
    assert report["datasets"]["ETHUSDT"]["policy"]["bars"] == d["decisions"]
    assert report["config"]["split"] == "test" and report["decisions"] == printed["decisions"]
    assert f"first decision: bar {lo}, {utc(int(ts[lo]))}" in captured.err
    assert f"warm-up: {first} bars (" in captured.err


def test_backtest_split_where_the_warmup_ends_inside_it_starts_after_the_warmup(
        data: tuple[Path, Path, Path, int]) -> None:
    folder, eth_csv, _, first = data
    policy = load_policy((folder / "store").as_uri())
    result = run_backtest(policy, [str(eth_csv)], selection=Selection(split="validation"))
    d = result.decisions["ETHUSDT"]
    lo, hi = round(N_BARS * 0.7), round(N_BARS * 0.85)
    assert lo < first < hi
    assert (d["first_decision_bar"], d["last_decision_bar"]) == (first, hi - 2)
    assert d["warmup_in_selection_bars"] == first - lo
    assert "went to warm-up" in "\n".join(header_lines(result.decisions))
    # the training split ends before the warm-up does: nothing to decide on, said so
    with pytest.raises(DataError, match="ETHUSDT: the train split has no bar with a "
                       "complete 16-row window"):
        run_backtest(policy, [str(eth_csv)], selection=Selection(split="train"))


def test_backtest_date_range_restricts_the_decisions(
        data: tuple[Path, Path, Path, int], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, eth_csv, btc_csv, _ = data
    store, _ = paper_store(tmp_path / "store", quick=True)
    start, end = "2025-04-10", "2025-04-12T06:00"
    start_ms = 1_744_243_200_000  # 2025-04-10 00:00 UTC
    end_ms = start_ms + (2 * 24 + 6) * 3_600_000
    for given in ((start, end), (str(start_ms), str(end_ms))):
        code = main(["backtest", "--policy", store.uri, "--data", str(eth_csv), "--reference",
                     str(btc_csv), "--start", given[0], "--end", given[1],
                     "--out", str(tmp_path / "range")])
        assert code == 0
        d = json.loads(capsys.readouterr().out)["decisions"]["ETHUSDT"]
        # every decision's fill bar lies inside the range too
        assert (d["first_decision_ms"], d["last_decision_ms"]) == (start_ms,
                                                                   end_ms - 2 * 300_000)
        assert d["decisions"] == (end_ms - start_ms) // 300_000 - 1
        assert d["selection"] == "range"


@pytest.mark.parametrize(("flags", "message"), [
    (["--start", "2025-04-12", "--end", "2025-04-10"], "--start (2025-04-12 00:00 UTC) must "
     "be before --end (2025-04-10 00:00 UTC)"),
    (["--start", "2025-03-01"], "--start 2025-03-01 00:00 UTC is outside the data: ETHUSDT "
     "holds 2025-04-03 17:05 UTC .. 2025-04-21 01:45 UTC"),
    (["--end", "2025-05-01"], "--end 2025-05-01 00:00 UTC is outside the data"),
    (["--start", "yesterday"], "--start 'yesterday': expected an ISO date"),
    (["--split", "test", "--start", "2025-04-10"], "--split test and --start/--end both "
     "select bars: give one of them"),
    (["--split", "test"], "--split test: the policy's manifest records no split fractions"),
])
def test_backtest_bad_selection_flags_are_refused_naming_the_flag(
        data: tuple[Path, Path, Path, int], tmp_path: Path, flags: list[str], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, eth_csv, btc_csv, _ = data
    store, _ = paper_store(tmp_path / "store", quick=True)
    code = main(["backtest", "--policy", store.uri, "--data", str(eth_csv), "--reference",
                 str(btc_csv), *flags, "--out", str(tmp_path / "bad")])
    assert code == 1
    assert message in capsys.readouterr().err


def test_load_markets_split_mostly_eaten_by_the_warmup_warns_naming_the_file(
        data: tuple[Path, Path, Path, int]) -> None:
    folder, eth_csv, btc_csv, first = data
    policy = load_policy((folder / "store").as_uri())
    # validation = bars 3750..4149; the warm-up runs to bar `first` (about 4,094)
    with pytest.warns(WarmupWarning) as caught:
        markets, _ = load_markets([str(eth_csv)], spec=policy.feature_spec,
                                  split="validation", reference=str(btc_csv), train=0.75,
                                  validation=0.08, window=16, normalizer=policy.normalizer)
    assert markets[0].first == first and markets[0].last == 4148
    message = next(str(w.message) for w in caught if "validation split" in str(w.message))
    assert message == (f"ETHUSDT: the feature warm-up (until bar {first}) takes "
                       f"{first - 3750} of the validation split's 400 bars, leaving "
                       f"{4148 - first + 1} decisions (file {eth_csv})")
