"""The dashboard's hyperparameter-search page through Streamlit's AppTest, on a store
holding a ``tune/trials.json`` document of the shape ``algos/tune.py`` writes (its empty
state is covered with every page in ``test_dashboard.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from raytrade.algos.storage import keys
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.dashboard.navigation import VIEWS
from raytrade.dashboard.tune_table import trials_frame, winner_test_frame
from streamlit.testing.v1 import AppTest


def _perf(final: float, sharpe: float) -> dict[str, Any]:
    return {"total_return": final / 10_000 - 1, "sharpe": sharpe, "max_drawdown": 0.02,
            "final_equity": final}


def _document() -> dict[str, Any]:
    trials = [
        {"trial_id": "a_00000", "overrides": {"dqn.lr": 3e-4, "network.hidden": [16]},
         "status": "finished", "iterations": 4, "reports": 2, "best_score": 0.05,
         "best_iteration": 4, "env_steps_sampled": 4096, "wall_s": 20.0, "error": None},
        {"trial_id": "a_00001", "overrides": {"dqn.lr": 1e-3, "network.hidden": [32, 32]},
         "status": "finished", "iterations": 4, "reports": 2, "best_score": 0.12,
         "best_iteration": 2, "env_steps_sampled": 4096, "wall_s": 22.0, "error": None},
        {"trial_id": "a_00002", "overrides": {"dqn.lr": 2e-4, "network.hidden": [16]},
         "status": "stopped", "iterations": 2, "reports": 1, "best_score": -0.3,
         "best_iteration": 2, "env_steps_sampled": 2048, "wall_s": 9.0, "error": None},
        {"trial_id": "a_00003", "overrides": {"dqn.lr": 5e-4, "network.hidden": [16]},
         "status": "error", "iterations": 0, "reports": 0, "best_score": None,
         "best_iteration": None, "env_steps_sampled": 0, "wall_s": 1.0,
         "error": "RayTaskError: boom"}]
    test = {"split": "test", "datasets": {"regime_1": {
        "greedy": _perf(10_300.0, 1.5), "flat": _perf(10_000.0, 0.0),
        "buy_and_hold": _perf(9_900.0, -0.4), "random": _perf(9_500.0, -3.0)}}}
    return {"name": "synthetic_regime", "metric": "excess_log_growth", "scheduler": "asha",
            "num_samples": 4, "max_iterations": 4, "space": {}, "trials": trials,
            "winner": {**trials[1], "checkpoint_iteration": 2, "version": 7, "test": test}}


def test_trials_frame_sorts_by_validation_score_and_marks_the_winner() -> None:
    frame = trials_frame(_document())
    assert list(frame["trial_id"]) == ["a_00001", "a_00000", "a_00002", "a_00003"]
    assert list(frame["winner"]) == [True, False, False, False]
    assert frame["overrides"].iloc[0] == 'dqn.lr=0.001, network.hidden=[32, 32]'
    test = winner_test_frame(_document())
    assert list(test["policy"]) == ["greedy", "flat", "buy_and_hold", "random"]
    assert test["final_equity"].iloc[0] == 10_300.0


def test_tune_page_lists_every_trial_the_winner_and_its_test_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PolicyStore((tmp_path / "s").as_uri())
    store.blobs.put(keys.TUNE_TRIALS, json.dumps(_document()).encode())
    monkeypatch.setenv("RAYTRADE_DASHBOARD_STORE", store.uri)
    at = AppTest.from_file(str(VIEWS / "tune.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Winner"] == "a_00001" and metrics["Published"] == "v000007"
    assert metrics["Validation excess_log_growth"] == "0.12"
    trials = at.dataframe[0].value
    assert len(trials) == 4 and trials["status"].tolist()[-1] == "error"
    assert at.dataframe[1].value["final_equity"].tolist()[:2] == [10_300.0, 10_000.0]
