"""The bundled forex experiment end to end on real EURUSD hourly bars: trained briefly on a
private local Ray, published, and backtested (``algos/backtest.py``, what ``raytrade
backtest`` runs). The bundle carries the forex calendar, the data loads without repair,
and the backtest annualizes with the calendar's bars per year (about 6223 hourly bars,
not 8760)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from raytrade.algos.backtest import run_backtest
from raytrade.algos.backtest_selection import Selection
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.algos.train import train
from raytrade.envs.calendar import TradingCalendar

H = 3_600_000
FX = TradingCalendar(kind="forex", holidays=("12-25", "01-01"))


def _brief(exp: ExperimentConfig) -> ExperimentConfig:
    """The shipped file with one small runner and a short warm-up of the learner; one
    iteration neither beats flat nor shows evidence: publish anyway, the test reads the
    bundle's rules and the backtest's annualization, not its merit."""
    return dataclasses.replace(
        exp,
        dqn=dataclasses.replace(exp.dqn, learning_starts=128, train_batch_size=32,
                                replay_ratio=0.25),
        resources=dataclasses.replace(exp.resources, num_env_runners=1,
                                      num_envs_per_env_runner=4, rollout_fragment_length=64),
        selection=dataclasses.replace(exp.selection, require_beat_flat=False,
                                      min_evidence_t=0.0, calibrate_cost_multiples=()))


@pytest.mark.slow
def test_eurusd_experiment_trains_publishes_the_forex_calendar_and_backtests_with_it(
        tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("eurusd_1h"))
    assert exp.env.calendar == FX and exp.data.sources == ("backtesting:EURUSD",)
    assert exp.env.costs.fee_bps == 0.0 and exp.env.positions == (-1.0, 0.0, 1.0)
    store = tmp_path / "store"
    result = train(_brief(exp), store, iterations=1, eval_every=100, checkpoint_every=100,
                   final_splits=(), progress=lambda _: None)
    [version] = result.published
    policy = Policy(PolicyStore(store.as_uri()).files(version))
    assert policy.manifest.env.calendar == FX
    assert policy.manifest.format == "raytrade.policy/4"
    [dataset] = policy.manifest.data.datasets if policy.manifest.data else ()
    assert dataset.name == "EURUSD" and dataset.train.bars == 3000  # all 5000 bars, unrepaired
    backtest = run_backtest(policy, ["backtesting:EURUSD"], selection=Selection(split="test"))
    assert backtest.decisions["EURUSD"]["every_bars"] == 4
    held = backtest.datasets["EURUSD"]["buy_and_hold"]
    equity = np.asarray(held["curves"]["equity"])          # every decision's equity point
    assert len(equity) > 200
    r = equity[1:] / equity[:-1] - 1.0
    # one point per 4-hour decision: the forex calendar's hourly bars a year (counted by
    # hand: 1461 weeks of 120 hours over 28 years, less Christmas and New Year on
    # weekdays), over 4; not 8760 / 4
    periods = (1461 * 120 - 960) / 10227 * 365 / 4
    assert periods == pytest.approx(1555.72, abs=0.01)
    assert held["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(periods))
