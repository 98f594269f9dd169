"""Best-so-far tracking and early stopping on scripted validation scores
(``algos/early_stopping.py``)."""

from __future__ import annotations

import math

import pytest
from raytrade.algos.early_stopping import EarlyStopping
from raytrade.envs.errors import ConfigError


def _run(tracker: EarlyStopping, scores: list[float]) -> int | None:
    """Feed ``scores`` (one evaluation every 10 iterations) until the tracker says stop;
    the iteration at which it did, or None."""
    for i, value in enumerate(scores, 1):
        tracker.observe(10 * i, value)
        if tracker.should_stop:
            return 10 * i
    return None


def test_early_stopping_keeps_the_best_not_the_last() -> None:
    tracker = EarlyStopping(patience=2)
    stopped = _run(tracker, [0.01, 0.03, 0.02, 0.025, 0.5])
    assert stopped == 40  # two evaluations without improvement after iteration 20
    assert tracker.best_iteration == 20 and tracker.best_score == 0.03
    assert [o.improved for o in tracker.history] == [True, True, False, False]


def test_early_stopping_patience_zero_never_stops_and_tracks_the_maximum() -> None:
    tracker = EarlyStopping(patience=0)
    assert _run(tracker, [0.0, -1.0, -2.0, 0.4, -3.0, 0.1] * 5) is None
    assert tracker.best_iteration == 40 and tracker.best_score == 0.4


def test_early_stopping_small_gains_below_min_improvement_do_not_count() -> None:
    tracker = EarlyStopping(patience=3, min_improvement=0.01)
    stopped = _run(tracker, [0.100, 0.105, 0.109, 0.108])
    assert stopped == 40 and tracker.best_iteration == 10 and tracker.best_score == 0.100
    again = EarlyStopping(patience=3, min_improvement=0.01)
    assert _run(again, [0.100, 0.105, 0.111, 0.0, 0.0]) is None  # 0.111 > 0.100 + 0.01
    assert again.best_iteration == 30 and again.since_improvement == 2


def test_early_stopping_equal_score_keeps_the_earlier_policy() -> None:
    tracker = EarlyStopping(patience=5)
    _run(tracker, [0.2, 0.2, 0.2])
    assert tracker.best_iteration == 10 and tracker.since_improvement == 2


def test_early_stopping_nan_and_ruin_never_improve_but_a_first_score_is_kept() -> None:
    tracker = EarlyStopping(patience=2)
    tracker.observe(1, -math.inf)  # the first evaluation is the best so far, however bad
    assert tracker.best_iteration == 1 and tracker.best_score == -math.inf
    tracker.observe(2, math.nan)
    assert tracker.best_iteration == 1 and tracker.since_improvement == 1
    tracker.observe(3, -5.0)
    assert tracker.best_iteration == 3 and not tracker.should_stop


@pytest.mark.parametrize("kwargs", [{"patience": -1}, {"min_improvement": -0.1},
                                    {"min_improvement": math.inf}])
def test_early_stopping_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="patience >= 0"):
        EarlyStopping(**kwargs)  # type: ignore[arg-type]
