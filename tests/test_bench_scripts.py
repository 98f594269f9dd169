"""The benchmark scripts of the cost targets run and print every field (their reduced
forms: tiny budgets, CI-sized data); what they measure is checked on real evaluations
of the scenario markets, not on fabricated numbers."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from raytrade.algos.evaluation import evaluate
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.envs.errors import ConfigError
from raytrade.scripts import (
    bench_features,
    bench_learning,
    bench_paper_actors,
    bench_replay,
    bench_training,
    bench_walkforward,
)
from raytrade.scripts.bench_walkforward import cost_fields, fold_rows, targets
from raytrade.scripts.learning_scenarios import (
    SCENARIOS,
    cost_aware_filter,
    scenario,
    scenario_experiment,
    scenario_metrics,
)

POLICY_FIELDS = {"net_return", "log_growth", "changes_per_1000", "bars", "sharpe",
                 "fees_fraction"}


def _small(name: str) -> ExperimentConfig:
    """The scenario's experiment on a 6,000-bar version of its market."""
    chosen = scenario(name)
    exp = scenario_experiment(chosen, ExperimentConfig.load(experiment_path(chosen.experiment)))
    (src,) = exp.data.sources
    return scenario_experiment(chosen, exp, src.replace("n=30000", "n=6000"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_metrics_every_scenario_reports_every_field(name: str) -> None:
    exp = _small(name)
    # an always-long "policy": buy-and-hold through the same env
    record = evaluate(lambda obs: np.tile([0.0, 0.0, 1.0], (len(obs), 1)), exp, "test")
    filters = cost_aware_filter(exp, "test")
    (row,) = scenario_metrics(record, exp, filters).values()
    assert row["decisions"] > 500
    for policy in ("greedy", "random", "flat", "buy_and_hold", "oracle", "bayes_filter"):
        assert set(row[policy]) - {"filter_share"} == POLICY_FIELDS, policy
    assert "filter_share" in row["greedy"]
    assert row["greedy"]["net_return"] == pytest.approx(row["buy_and_hold"]["net_return"])
    assert row["flat"]["changes_per_1000"] == 0 and row["flat"]["net_return"] == 0
    # random changes position on about 2 of every 3 decisions it makes (3 actions,
    # uniform; at 10 bp the drawdown halt ends its episode early, and its rate is per bar
    # played), and it decides every ``every_bars`` bars
    every = exp.env.decision.every_bars
    assert 600 / every < row["random"]["changes_per_1000"] < 730 / every
    assert row["flat"]["bars"] == row["decisions"] >= row["random"]["bars"]
    if name in ("planted", "regime-costly", "weak-drift"):
        aware = row["bayes_filter_costs"]
        assert set(aware) == {"net_return", "log_growth", "changes_per_1000", "bars",
                              "fees_fraction", "switch_cost"}
        # the switch cost is the fee plus the slippage of a full-equity trade (modelled
        # at 10 bp: a few bp on this volume; fixed at 0 in the 1 bp planted experiment)
        fee = exp.env.costs.fee_bps / 1e4
        assert fee <= aware["switch_cost"] < fee + 10e-4
        assert (aware["switch_cost"] > fee) == (name != "planted")
    else:  # nothing to filter on a random walk: the planted baselines hold flat
        assert "bayes_filter_costs" not in row and row["filter_log_growth"] == 0.0
        assert row["greedy"]["filter_share"] is None  # no share of nothing
        assert row["oracle"]["changes_per_1000"] == row["bayes_filter"]["changes_per_1000"] == 0
    if name == "regime-costly":
        # the cost-aware filter trades far less than the cost-blind one and keeps more
        assert aware["changes_per_1000"] < 0.5 * row["bayes_filter"]["changes_per_1000"]
        assert aware["log_growth"] > row["bayes_filter"]["log_growth"] > 0
        assert row["filter_log_growth"] == aware["log_growth"]
        assert row["greedy"]["filter_share"] == pytest.approx(
            row["greedy"]["log_growth"] / aware["log_growth"])
    if name == "weak-drift":  # no band pays the costs: the filter never trades
        assert aware["changes_per_1000"] == 0
    assert "deployed" not in row  # only with the run's publication decision
    for published, source in ((True, "greedy"), (False, "flat")):
        (row,) = scenario_metrics(record, exp, filters, published).values()
        assert row["published"] is published
        assert {k: v for k, v in row["deployed"].items() if k != "filter_share"} == \
            {k: v for k, v in row[source].items() if k != "filter_share"}
    if name == "regime-costly":  # published: the greedy policy's share; not: flat's, 0
        (row,) = scenario_metrics(record, exp, filters, True).values()
        assert row["deployed"]["filter_share"] == row["greedy"]["filter_share"]
        (row,) = scenario_metrics(record, exp, filters, False).values()
        assert row["deployed"]["filter_share"] == 0.0


def test_scenario_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no-signal"):
        scenario("sideways")


def test_scenario_targets_check_the_summary_statistic() -> None:
    (median, worst) = scenario("regime-costly").targets
    summary = {"scenario/test/X/deployed/filter_share": {"median": 0.92, "min": 0.75}}
    assert median.check(summary, "scenario/test/X/")["met"] is True
    checked = worst.check(summary, "scenario/test/X/")
    assert checked["met"] is False and checked["value"] == 0.75
    assert checked["metric"] == "scenario/test/X/deployed/filter_share"
    assert median.check({}, "scenario/test/X/") == {**checked, "statistic": "median",
                                                    "threshold": 0.9, "value": None,
                                                    "met": False}


def test_cost_fields_prefer_the_records_own_and_add_back_what_was_paid() -> None:
    own = {"final_equity": 9_900.0, "gross_return": 0.01, "cost_drag": 0.02, "fees": 150.0}
    assert cost_fields(own, 10_000.0) == {"gross_return": 0.01, "cost_drag": 0.02,
                                          "cost_parts": ["fees"]}
    paid = {"final_equity": 9_900.0, "fees": 150.0, "slippage": 50.0}
    out = cost_fields(paid, 10_000.0)
    assert out["cost_drag"] == pytest.approx(0.02)
    assert out["gross_return"] == pytest.approx(0.01)  # 9,900 + 200 paid = 10,100
    assert out["cost_parts"] == ["fees", "slippage"]


@pytest.mark.slow
def test_bench_learning_reduced_run_prints_every_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    bench_learning.main(["--scenario", "no-signal", "--budget-s", "1", "--eval-every",
                         "1000", "--num-env-runners", "1", "--seed", "7", "--source",
                         "synthetic:randomwalk:seed=1:n=6000:volume=1000"])
    out = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in out["runs"]] == [7]
    assert out["scenario"] == "no-signal" and out["sources"] == [
        "synthetic:randomwalk:seed=1:n=6000:volume=1000"]
    (run,) = out["runs"]
    row = run["scenario"]["test"]["SYNTHUSDT"]
    for policy in ("greedy", "random", "flat"):
        assert set(row[policy]) >= POLICY_FIELDS
    assert {t["metric"] for t in out["targets"]} == {
        "scenario/test/SYNTHUSDT/deployed/net_return",
        "scenario/test/SYNTHUSDT/deployed/changes_per_1000"}
    # what is deployed is the selected policy when its run published it, else flat
    assert row["deployed"] == {**row["greedy" if run["published"] else "flat"],
                               "filter_share": None}
    assert run["decision"]["cost_multiple"] in (0.5, 1.0, 2.0, 4.0, 8.0)
    assert out["published_runs"] == int(run["published"]) and run["publication"]
    for target in out["targets"]:
        assert set(target) == {"metric", "statistic", "op", "threshold", "value", "met"}
        assert out["summary"][target["metric"]]["n"] == 1
    assert run["iterations"] >= 1 and run["env_steps_sampled"] > 0
    # runs made in parallel processes (one seed each) merge into one summary
    other = {**out, "runs": [{**run, "seed": 8}]}
    merged = bench_learning.combine([out, other])
    assert merged["repeats"] == 2 and [r["seed"] for r in merged["runs"]] == [7, 8]
    assert all(merged["summary"][t["metric"]]["n"] == 2 for t in merged["targets"])
    with pytest.raises(SystemExit, match="seed repeated"):
        bench_learning.combine([out, out])


@pytest.mark.slow
def test_bench_walkforward_quick_prints_every_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    bench_walkforward.main(["--quick"])
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["symbols"] == ["ETHUSDT"] and out["config"]["reference"] == "BTCUSDT"
    (row,) = out["folds"]  # one fold, one dataset
    assert row["dataset"] == "ETHUSDT" and row["iterations"] == 1
    for policy in ("policy", "deployed", "flat", "buy_and_hold", "momentum", "random"):
        assert set(row[policy]) == {"net_return", "gross_return", "cost_drag", "cost_parts",
                                    "sharpe", "turnover_per_year", "changes_per_1000",
                                    "max_drawdown"}, policy
        assert row[policy]["cost_drag"] >= 0 and "fees" in row[policy]["cost_parts"]
    assert row["flat"]["cost_drag"] == 0 and row["flat"]["net_return"] == 0
    assert row["deployed"] == row["policy" if row["deployed_policy"] else "flat"]
    assert row["deploy_reason"]
    t = out["targets_policy"]
    assert t["agent"] == "policy" and t["max_fold_cost_drag_policy"] == row["policy"]["cost_drag"]
    assert t["cost_drag_met"] == (t["max_fold_cost_drag_policy"] <= 0.02)
    d = out["targets"]  # judged on what would have been deployed
    assert d["agent"] == "deployed" and d["max_fold_cost_drag_deployed"] == \
        row["deployed"]["cost_drag"]
    assert t["median_fold_sharpe_buy_and_hold"] == row["buy_and_hold"]["sharpe"]
    assert set(t["per_dataset"]) == {"ETHUSDT"}
    assert out["timing"][0]["train_s"] > 0


def test_walkforward_targets_over_folds_and_datasets() -> None:
    def perf(ret: float, sharpe: float | None, fees: float) -> dict[str, object]:
        return {"total_return": ret, "final_equity": 10_000.0 * (1 + ret), "sharpe": sharpe,
                "fees": fees, "turnover_per_year": 1.0, "trades": 4, "bars": 400,
                "max_drawdown": -0.01}

    folds = [{"index": k, "test_start": k, "test_end": k + 1, "iterations": 1,
              "env_steps_trained": 10,
              "out_of_sample": {d: {"policy": perf(0.01, s, fee),
                                    "flat": {**perf(0, None, 0), "trades": 0},
                                    "buy_and_hold": perf(0.02, 1.0, 10.0)}
                                for d, s, fee in (("A", 0.5 + k, 100.0 * (k + 1)),
                                                  ("B", 2.0, 50.0))}}
             for k in range(3)]
    rows = fold_rows(folds, 10_000.0)
    assert len(rows) == 6 and rows[0]["policy"]["changes_per_1000"] == 10.0
    t = targets(rows)
    assert t["max_fold_cost_drag_policy"] == pytest.approx(0.03) and not t["cost_drag_met"]
    # agent Sharpes 0.5, 1.5, 2.5 (A) and 2.0 x 3 (B): median 2.0 >= buy-and-hold's 1.0
    assert t["median_fold_sharpe_policy"] == 2.0 and t["sharpe_met"]
    assert t["per_dataset"]["A"]["median_sharpe_policy"] == 1.5
    assert math.isclose(t["per_dataset"]["B"]["max_cost_drag_policy"], 0.005)
    # what was deployed: fold 0 stayed flat (Sharpe 0, no costs), folds 1 and 2 traded
    for row in rows:
        row["deployed"] = row["flat"] if row["fold"] == 0 else row["policy"]
    for row in rows:
        row["deployed_policy"] = row["fold"] != 0
    d = targets(rows, "deployed")
    assert (d["rows"], d["deployed_rows"], d["vacuous"]) == (6, 4, False)
    assert d["max_fold_cost_drag_deployed"] == pytest.approx(0.03)
    # Sharpes 0, 1.5, 2.5 (A) and 0, 2.0, 2.0 (B): median 1.75 (a flat fold counts as 0)
    assert d["median_fold_sharpe_deployed"] == 1.75 and d["sharpe_met"]
    assert d["per_dataset"]["A"]["median_sharpe_deployed"] == 1.5
    # nothing deployed: flat everywhere meets the drag target, and says so
    for row in rows:
        row["deployed"], row["deployed_policy"] = row["flat"], False
    d = targets(rows, "deployed")
    assert d["vacuous"] and d["cost_drag_met"] and d["median_fold_sharpe_deployed"] == 0.0


@pytest.mark.slow
def test_bench_training_reduced_run_prints_every_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The throughput script in CI form: one short run of the stock and compact modes
    with one runner; it checks every field is reported (not the speed)."""
    bench_training.main(["--seconds", "2", "--runners", "1", "--envs", "trading",
                         "--modes", "stock,compact"])
    text = capsys.readouterr().out  # a line per run, then the whole record
    out = json.loads(text[text.index('{\n  "benchmark"'):])
    assert out["benchmark"] == "training" and out["batch"] == 256 and out["gpus"] == 0.0
    for key in ("trading/stock/runners=1", "trading/compact/runners=1"):
        run = out["results"][key]["runs"][0]
        assert run["sampled_per_s"] > 0 and run["trained_per_s"] > 0 and run["iterations"] > 0
        assert out["results"][key]["summary"]["sampled_per_s"]["n"] == 1
    stock = out["results"]["trading/stock/runners=1"]["runs"][0]
    assert {"env_runner_sampling_timer", "learner_update_timer"} <= set(stock["mean_timer_s"])
    compact = out["results"]["trading/compact/runners=1"]["runs"][0]
    assert {"apex_ingest_s", "apex_replay_sample_s", "apex_learner_update_s",
            "apex_weights_sync_s", "apex_wait_s"} <= set(compact["mean_timer_s"])
    assert 0.0 <= compact["learner_idle_fraction"] <= 1.0
    assert compact["learner_updates_per_s"] > 0
    assert compact["replay_ratio"] == pytest.approx(1.0, abs=0.3)


def test_bench_replay_quick_prints_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    affinity = os.sched_getaffinity(0)
    try:
        bench_replay.main(["--quick", "--batches", "3", "--repeats", "2"])
    finally:
        os.sched_setaffinity(0, affinity)  # the script pins itself to one core
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["features"] == 73 and out["config"]["window"] == 16
    assert out["identical_samples"] is True and len(out["config"]["cpus"]) == 1
    for name in ("compact", "plain"):
        row = out[name]
        assert row["bytes_per_transition"] > 0 and row["max_capacity_8gib"] > 0
        for key in ("sample_ms_p50", "sample_ms_p99"):
            assert row[key]["n"] == 2 and row[key]["median"] > 0, (name, key)
    assert out["memory_ratio"] == pytest.approx(
        out["plain"]["bytes_per_transition"] / out["compact"]["bytes_per_transition"])
    assert set(out["targets"]) == {"memory_ratio_at_least_10", "compact_p50_under_2ms"}
    rllib = out["rllib"]
    assert rllib["transitions"] == 1024 and rllib["bytes_per_transition"] > 4 * 73 * 16
    assert rllib["max_capacity_8gib"] > 0 and rllib["nstep3_sample_ms_p50"] > 0
    assert out["memory_ratio_vs_rllib"] > 1
    compact = out["compact"]
    assert out["config"]["fragment_envs"] == 64 and out["config"]["fragment_steps"] == 32
    assert compact["ingest_ms_per_fragment"]["n"] == 2
    assert compact["ingest_ms_per_fragment"]["median"] > 0
    assert set(compact["nstep3_sample_ms_p50"]) == {"512", "256"}
    for row in compact["nstep3_sample_ms_p50"].values():
        assert row["n"] == 2 and row["median"] > 0


def test_bench_features_quick_prints_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    bench_features.main(["--quick"])
    out = json.loads(capsys.readouterr().out)
    assert out["spec"]["features"] == 73 and out["batch"]["bars_per_second"] > 0
    assert len(out["machine"]["loadavg_1_5_15_before"]) == 3
    stream = out["streaming_update_us"]
    assert (stream["bars"], stream["repeats"]) == (200, 3)
    for key in ("p50", "p90", "p99", "max"):
        row = stream[key]
        assert row["n"] == 3 and 0 < row["min"] <= row["median"] <= row["max"], key
    assert stream["p50"]["median"] <= stream["p99"]["median"] <= stream["max"]["median"]
    assert set(out["targets"]) == {"streaming_p99_under_50us"}
    assert out["reference_talib_rsi_atr_bbands_macd"]["seconds"] >= 0


def test_bench_paper_actors_reduced_run_prints_every_field(
        capsys: pytest.CaptureFixture[str]) -> None:
    # the baselines (the same run with one actor; the sessions in this process, measured
    # by the same code) are left out for time: each costs seconds of process start-up
    # 5 bars/s, not faster: under a loaded CI machine an actor stalled for a few bars
    # would take them by REST catch-up (not live) and the run would not be complete
    bench_paper_actors.main(["--symbols", "2", "--bars-per-s", "5", "--live-bars", "3",
                             "--settle-bars", "1", "--repeats", "1", "--baselines", ""])
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["symbols"] == 2 and out["config"]["synchronous"] == "FULL"
    assert set(out["target"]) == {"p99_close_to_journal_ms_below", "bars_per_s", "met"}
    expected = {"actors": 2}
    assert set(out["runs"]) == set(out["summary"]) == set(expected)
    for kind, symbols in expected.items():
        (run,) = out["runs"][kind]
        assert run["completed"] and run["bars"] == 3 * symbols, (kind, run)
        assert run["processes"] == (1 if kind == "in_process" else symbols), kind
        assert run["actor_cpu_ms_per_bar"] > 0, kind
        if kind == "actors":  # the actor's own threads, and Ray's, each counted
            threads = run["actor_thread_cpu_ms_per_bar"]
            assert {"event_loop", "trader", "ray_main", "ray_other"} <= set(threads), threads
            total = run["actor_cpu_ms_per_bar"]
            # threads that ended are not counted (the low bound). The high bound allows
            # for the clocks: /proc's schedstat of a thread running on another core lags
            # by up to a scheduler tick (milliseconds), against about 25 ms of an actor's
            # CPU over this 3-bar run; sums of 0.82x-1.11x the process clock were measured
            # (1.05 failed once in CI-like runs)
            assert 0.5 * total <= sum(threads.values()) <= 1.3 * total, (threads, total)
        for measure in ("close_to_journal_ms", "arrival_to_journal_ms"):
            stats = run[measure]
            assert set(stats) == {"p50", "p90", "p99", "max"}, (kind, measure)
            assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
            summary = out["summary"][kind][measure]
            assert summary["p99"]["median"] == stats["p99"], (kind, measure)
        # every bar's wait from the close on the replay clock includes its arrival's
        assert run["close_to_journal_ms"]["p50"] >= run["arrival_to_journal_ms"]["p50"]
    assert out["runs"]["actors"][0]["torch_threads"] == [1]
