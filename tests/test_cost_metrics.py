"""Cost metrics (net and gross return, cost drag, fees, slippage, borrow, turnover, trades
per day, holding time, halts) through the real environment, on tiny markets whose costs are
computed by hand, and the Q-gap summary of the greedy policy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from raytrade.algos.evaluation import play
from raytrade.algos.run_metrics import (
    COST_COLUMNS,
    QGapRecorder,
    q_gap_summary,
    record_performance,
    run_performance,
)
from raytrade.algos.walkforward import WalkForwardResult, aggregate, dashboard_summary
from raytrade.envs.costs import CostModel
from raytrade.envs.decision import unit_switch_cost
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.market import MarketData
from raytrade.envs.metrics import average_holding_bars, holding_runs, performance
from raytrade.envs.risk import RiskConfig
from raytrade.envs.splits import split_by_fraction

from tests.dashboard_seed import demo_evaluation
from tests.live_setup import quick_experiment

BAR = 300_000
FEE, SLIP, BORROW = 10e-4, 5e-4, 1e-4  # 10 bp fee, 5 bp fixed slippage, 1 bp borrow/bar


def tiny_market(opens: npt.ArrayLike, closes: npt.ArrayLike) -> MarketData:
    """A market of the given prices with one all-zero feature and a 1-bar window, every bar
    a decision bar but the last."""
    o = np.asarray(opens, dtype=np.float64)
    c = np.asarray(closes, dtype=np.float64)
    n = len(c)
    ts = np.arange(n, dtype=np.int64) * BAR
    market = np.vstack([o, c, np.full(n, 1e12), np.full(n, 0.01)])
    return MarketData("TINY", ts, np.zeros((n, 1), dtype=np.float32), market, 0, n - 2,
                      "all", split_by_fraction(ts, BAR), 0)


def config(max_drawdown: float = 1.0) -> EnvConfig:
    return EnvConfig(window=1, positions=(-1.0, 0.0, 1.0), random_start=False,
                     max_episode_steps=None,
                     costs=CostModel(fee_bps=FEE * 1e4, fixed_slippage_bps=SLIP * 1e4,
                                     borrow_bps_per_bar=BORROW * 1e4),
                     risk=RiskConfig(max_drawdown=max_drawdown))


def hand_costs(targets: list[float], price: float, equity: float
               ) -> tuple[float, float, float, float, float]:
    """Fees, slippage, borrow, traded notional and final equity of trading to each target
    in turn at a constant ``price``, re-derived from the sizing rule (units = target *
    equity / (fill * (1 + fee)), fill = price * (1 +/- slippage)) and borrow on short
    notional and negative cash at each close."""
    cash, units = equity, 0.0
    fees = slip = borrow = traded = 0.0
    held = 0.0
    for target in targets:
        if target != held:
            e = cash + units * price
            side = 1.0 if target * e / price > units else -1.0
            fill = price * (1 + SLIP * side)
            want = target * e / (fill * (1 + FEE))
            delta = want - units
            fee = abs(delta) * fill * FEE
            cash -= delta * fill + fee
            fees += fee
            slip += abs(delta) * abs(fill - price)
            traded += abs(delta) * fill
            units, held = want, target
        charge = (max(0.0, -units) * price + max(0.0, -cash)) * BORROW
        cash -= charge
        borrow += charge
    return fees, slip, borrow, traded, cash + units * price


def test_run_performance_flipping_every_bar_costs_what_the_hand_computation_says() -> None:
    n = 12
    market = tiny_market(np.full(n, 100.0), np.full(n, 100.0))
    # long, short, long, ... decided at every close: a reversal fills at every open
    run = play([market], config(), 0, lambda obs, bar, held: 2 if bar % 2 == 0 else 0)
    perf = run_performance(run, BAR)
    targets = [1.0 if t % 2 == 0 else -1.0 for t in range(n - 1)]
    fees, slip, borrow, traded, final = hand_costs(targets, 100.0, 10_000.0)
    assert perf["final_equity"] == pytest.approx(final, rel=1e-12)
    assert perf["fees"] == pytest.approx(fees, rel=1e-12)
    assert perf["slippage"] == pytest.approx(slip, rel=1e-12)
    assert perf["borrow"] == pytest.approx(borrow, rel=1e-9) and borrow > 0
    assert perf["fees_fraction"] == pytest.approx(fees / 10_000, rel=1e-12)
    assert perf["slippage_fraction"] == pytest.approx(slip / 10_000, rel=1e-12)
    assert perf["borrow_fraction"] == pytest.approx(borrow / 10_000, rel=1e-9)
    drag = (fees + slip + borrow) / 10_000
    assert perf["cost_drag"] == pytest.approx(drag, rel=1e-9)
    # prices never move: every cent lost is a cost, so before costs nothing was made
    assert perf["total_return"] == pytest.approx(-drag, rel=1e-9)
    assert perf["gross_return"] == pytest.approx(0.0, abs=1e-12)
    # the first trade (flat to long): its fee and slippage leave 1 / ((1 + s)(1 + f))
    assert run["equity"][1] == pytest.approx(10_000 / ((1 + SLIP) * (1 + FEE)), rel=1e-12)
    assert perf["trades"] == n - 1
    assert perf["trades_per_day"] == pytest.approx((n - 1) / ((n - 1) * BAR / 86_400_000))
    assert perf["avg_holding_bars"] == 1.0  # a new side every bar
    assert perf["turnover"] == pytest.approx(traded / np.mean(run["equity"]), rel=1e-12)
    assert perf["halted"] is False and perf["halted_bar"] is None


def test_run_performance_holding_is_cheaper_and_counts_its_holding_time() -> None:
    n = 12
    market = tiny_market(np.full(n, 100.0), np.full(n, 100.0))
    # long for 3 decisions, flat for 2, short for 4, then flat
    path = [2, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1]
    run = play([market], config(), 0, lambda obs, bar, held: path[bar])
    perf = run_performance(run, BAR)
    fees, slip, borrow, _, _ = hand_costs([[-1.0, 0.0, 1.0][a] for a in path], 100.0,
                                          10_000.0)
    assert perf["cost_drag"] == pytest.approx((fees + slip + borrow) / 10_000, rel=1e-9)
    assert perf["trades"] == 4
    assert perf["avg_holding_bars"] == pytest.approx((3 + 4) / 2)


def test_holding_time_and_trades_per_day_on_a_known_position_path() -> None:
    position = [0, 1, 1, 1, 0, -1, -1, 1, 0.5, 0.5, 0, 0, -2]
    assert holding_runs(position).tolist() == [3, 2, 3, 1]  # 1,0.5,0.5 is one long run
    assert average_holding_bars(position) == pytest.approx(9 / 4)
    assert math.isnan(average_holding_bars([0, 0, 0]))
    equity = np.full(len(position), 100.0)
    perf = performance(equity, position, 3_600_000, fills=6)  # hourly bars: 12 steps
    assert perf.trades_per_day == pytest.approx(6 / 0.5)
    assert perf.avg_holding_bars == pytest.approx(9 / 4)


def test_run_performance_halted_by_the_drawdown_rule_is_marked_with_its_bar() -> None:
    n = 20
    price = 100.0 * 0.95 ** np.arange(n)  # 5 % lower every bar
    market = tiny_market(price, price)
    run = play([market], config(max_drawdown=0.12), 0, lambda obs, bar, held: 2)
    perf = run_performance(run, BAR)
    assert perf["halted"] is True
    # long from the open of bar 1 (its peak equity is marked at that close): equity is
    # 0.95^3 = 85.7 % of it at the close of bar 4, past the 12 % limit; the halt decided
    # there flattens at the open of bar 5 and ends the episode at its close
    assert perf["halted_bar"] == 5 == run["bar"][-1] < market.last
    assert run["position"][-1] == 0.0 and run["position"][-2] == 1.0
    assert len(run["equity"]) < n - 1
    # the same run without the halt is an ordinary run
    full = run_performance(play([market], config(), 0, lambda obs, bar, held: 2), BAR)
    assert full["halted"] is False and full["halted_bar"] is None


def test_q_gap_recorder_measures_best_minus_held_against_the_switch_cost() -> None:
    cfg = config()
    q_rows = {0.0: [0.0, 0.001, 0.0016], 1.0: [0.0, 0.0, 0.003], -1.0: [0.0, 0.0, 0.004]}

    def q(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return np.array([q_rows[float(o[-4])] for o in obs])  # by the held position

    recorder = QGapRecorder(q, cfg)
    obs = np.zeros((3, 5), dtype=np.float32)  # window x features, then the position state
    obs[:, -4] = [0.0, 1.0, -1.0]
    recorder(obs)
    q_rows[1.0] = [0.0, 0.0025, 0.0]  # long held, flat now better by 0.0025
    recorder(obs[1:2])
    unit = cfg.reward_scale * (FEE + SLIP)
    assert unit_switch_cost(cfg) == pytest.approx(unit)
    # flat -> long wanted by 0.0006; long held and best; short -> long by 0.004 (a switch
    # of 2); long -> flat by 0.0025
    assert recorder.gaps == pytest.approx([0.0006, 0.0, 0.004, 0.0025])
    assert recorder.costs == pytest.approx([unit, 0.0, 2 * unit, unit])
    s = recorder.summary()
    assert s["decisions"] == 4 and s["switch_cost"] == pytest.approx(unit)
    assert s["mean"] == pytest.approx((0.0006 + 0.004 + 0.0025) / 4)
    assert s["p50"] == pytest.approx((0.0006 + 0.0025) / 2)
    assert s["wants_switch_share"] == pytest.approx(3 / 4)
    assert s["below_cost_share"] == pytest.approx(2 / 4)  # 0.0006 and 0 below 0.0015
    assert s["unpaid_switch_share"] == pytest.approx(1 / 3)  # only flat -> long
    recorder.reset()
    assert recorder.summary()["decisions"] == 0


def test_q_gap_summary_percentiles_and_shares() -> None:
    gaps = np.arange(101) / 1000.0  # 0 .. 0.1
    costs = np.full(101, 0.05)
    s = q_gap_summary(gaps.tolist(), costs.tolist(), 0.05)
    assert s["p50"] == pytest.approx(0.05) and s["p90"] == pytest.approx(0.09)
    assert s["p99"] == pytest.approx(0.099) and s["mean"] == pytest.approx(0.05)
    assert s["below_cost_share"] == pytest.approx(50 / 101)
    assert s["wants_switch_share"] == pytest.approx(100 / 101)
    assert s["unpaid_switch_share"] == pytest.approx(49 / 100)
    empty = q_gap_summary([], [], 0.05)
    assert empty["decisions"] == 0 and empty["p50"] is None


def test_record_performance_takes_costs_of_a_slice_from_the_counters() -> None:
    rows = [{"ts": i * BAR, "equity": e, "position": p, "fees": f, "slippage": s,
             "borrow": b, "traded_notional": t, "trades": k, "halted": h}
            for i, (e, p, f, s, b, t, k, h) in enumerate([
                (10_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, False),
                (9_980.0, 1.0, 10.0, 5.0, 0.0, 10_000.0, 1, False),
                (10_100.0, 1.0, 10.0, 5.0, 0.0, 10_000.0, 1, False),
                (10_070.0, 0.0, 20.0, 10.0, 0.0, 20_100.0, 2, False),
                (10_070.0, 0.0, 20.0, 10.0, 0.0, 20_100.0, 2, True)])]
    perf = record_performance(rows)
    assert perf["cost_drag"] == pytest.approx(30.0 / 10_000)
    assert perf["gross_return"] == pytest.approx(0.007 + 0.003)
    assert perf["trades"] == 2 and perf["halted"] is True and perf["halted_bar"] == 4
    assert perf["halted_ts"] == 4 * BAR
    part = record_performance(rows[1:4])  # from the first fill on: its costs not counted
    assert part["fees"] == pytest.approx(10.0) and part["trades"] == 1
    assert part["cost_drag"] == pytest.approx(15.0 / 9_980)
    assert part["halted"] is False
    old = record_performance([{k: r[k] for k in ("ts", "equity", "position")} for r in rows])
    assert old["cost_drag"] is None and old["gross_return"] is None and old["fees"] is None
    assert old["total_return"] == pytest.approx(0.007) and old["halted"] is False


def test_evaluation_record_reports_costs_for_every_policy_and_q_gaps_for_greedy() -> None:
    record, curves = demo_evaluation(10, seed=1)
    markets = {m.name: m for m in quick_experiment().fit_env_spec().markets("validation")}
    halted_any = False
    for dataset, per in record["datasets"].items():
        market = markets[dataset]
        for name, perf in per.items():
            if not isinstance(perf, dict):
                continue
            assert set(COST_COLUMNS) | {"fees", "slippage", "borrow", "halted_bar"} <= set(perf)
            assert perf["gross_return"] == pytest.approx(perf["total_return"]
                                                         + perf["cost_drag"])
            assert perf["cost_drag"] == pytest.approx(
                (perf["fees"] + perf["slippage"] + perf["borrow"]) / 10_000)
            if perf["halted"]:  # the curve stops at the bar the halt ended the run
                halted_any = True
                assert curves["ts"][dataset][name][-1] == int(market.ts[perf["halted_bar"]])
            else:
                assert perf["halted_bar"] is None
                assert curves["ts"][dataset][name][-1] == int(market.ts[market.last + 1])
            assert ("q_gap" in perf) == (name == "greedy")
        assert per["flat"]["cost_drag"] == 0.0 and per["flat"]["halted"] is False
        assert per["greedy"]["slippage"] > 0 and per["greedy"]["trades_per_day"] > 0
        gap = per["greedy"]["q_gap"]
        end = per["greedy"]["halted_bar"] or market.last + 1
        assert gap["decisions"] == end - market.first  # one per greedy decision
        assert 0 <= gap["p50"] <= gap["p90"] <= gap["p99"]
        assert gap["switch_cost"] == pytest.approx(
            unit_switch_cost(quick_experiment().env))
    assert halted_any, "the demo's random baseline hits the drawdown halt"


def test_walkforward_aggregate_and_summary_report_fold_costs() -> None:
    def fold(index: int, drag: float, halted: bool) -> dict[str, Any]:
        curves = {"equity": [10_000.0, 10_000.0 * (1 - drag)], "position": [0.0, 1.0],
                  "ts": [0, BAR]}
        rec = {"sharpe": 1.0, "total_return": -drag, "gross_return": 0.0, "cost_drag": drag,
               "turnover": 1.0, "trades_per_day": 288.0, "halted": halted, "curves": curves}
        per = {"policy": rec, "buy_and_hold": {**rec, "cost_drag": 0.0}}
        return {"index": index, "version": index + 1, "test_start": 0, "test_end": BAR,
                "out_of_sample": {"X": per}, "in_sample": {"X": per}}

    folds = [fold(0, 0.01, False), fold(1, 0.03, True), fold(2, 0.02, False)]
    agg = aggregate(folds, BAR)["X"]["policy"]
    assert agg["max_fold_cost_drag"] == 0.03 and agg["median_fold_cost_drag"] == 0.02
    assert agg["halted_folds"] == 1
    summary = dashboard_summary(WalkForwardResult({"experiment": "x"}, folds, {}), "x")
    assert [r["oos_cost_drag"] for r in summary["folds"]] == [0.01, 0.03, 0.02]
    assert [r["oos_halted"] for r in summary["folds"]] == [False, True, False]
