"""The benchmarks' ``--repeats`` summaries: median, min and max over runs, per number."""

from __future__ import annotations

import math

from raytrade.scripts.bench_learning import final_shares
from raytrade.scripts.bench_stats import spread, summarize


def test_spread_of_runs_skips_unknown_values_but_keeps_them_listed() -> None:
    assert spread([3.0, 1.0, None, 2.0, math.nan]) == {
        "median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "values": [3.0, 1.0, None, 2.0,
                                                                   math.nan]}
    assert spread([None])["median"] is None


def test_summarize_runs_per_nested_number_with_missing_leaves_as_none() -> None:
    runs = [{"final": {"test": {"X": {"filter_fraction": 0.8, "name": "a"}}}, "steps": 10},
            {"final": {"test": {"X": {"filter_fraction": 0.6}}}, "steps": 30},
            {"final": {"test": {"X": {"filter_fraction": 0.7}}}}]
    out = summarize(runs)
    assert set(out) == {"final/test/X/filter_fraction", "steps"}
    frac = out["final/test/X/filter_fraction"]
    assert (frac["median"], frac["min"], frac["max"], frac["n"]) == (0.7, 0.6, 0.8, 3)
    assert out["steps"]["values"] == [10, 30, None] and out["steps"]["median"] == 20.0


def test_final_shares_takes_the_last_evaluation_of_each_split() -> None:
    def evaluation(split: str, it: int, frac: float) -> dict[str, object]:
        return {"split": split, "iteration": it, "datasets": {"SYNTHUSDT": {
            "greedy": {"sharpe": frac}, "oracle_fraction": frac / 2,
            "filter_fraction": frac}}}

    out = final_shares([evaluation("validation", 5, 0.1), evaluation("validation", 9, 0.7),
                        evaluation("test", 9, 0.6)])
    assert out == {"validation": {"SYNTHUSDT": {"oracle_fraction": 0.35,
                                                "filter_fraction": 0.7,
                                                "greedy_sharpe": 0.7}},
                   "test": {"SYNTHUSDT": {"oracle_fraction": 0.3, "filter_fraction": 0.6,
                                          "greedy_sharpe": 0.6}}}
