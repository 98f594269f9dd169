"""The selection score every chooser shares (``algos/selection.py``)."""

from __future__ import annotations

import math

import pytest
from raytrade.algos.selection import beats_flat, score
from raytrade.envs.errors import ConfigError


def _record(split: str, greedy: float, flat: float, sharpe: float | None = 1.0) -> dict:
    per = {"greedy": {"final_equity": greedy, "sharpe": sharpe},
           "flat": {"final_equity": flat, "sharpe": None}}
    return {"split": split, "datasets": {"A": per, "B": per}}


def test_score_excess_log_growth_is_greedy_minus_flat() -> None:
    rec = _record("validation", 11_000.0, 10_000.0)
    assert score(rec, "excess_log_growth", 10_000.0) == pytest.approx(math.log(1.1))
    assert score(rec, "log_growth", 10_000.0) == pytest.approx(math.log(1.1))
    assert score(rec, "sharpe", 10_000.0) == 1.0


def test_score_nan_sharpe_or_ruin_ranks_last() -> None:
    assert score(_record("validation", 10_000.0, 10_000.0, None), "sharpe", 1e4) == -math.inf
    assert score(_record("validation", 0.0, 10_000.0), "log_growth", 1e4) == -math.inf


def test_score_test_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="validation evaluations only"):
        score(_record("test", 11_000.0, 10_000.0), "log_growth", 10_000.0)
    with pytest.raises(ConfigError, match="validation evaluations only"):
        beats_flat(_record("test", 11_000.0, 10_000.0), 10_000.0)
    with pytest.raises(ConfigError, match="metric"):
        score(_record("validation", 1.0, 1.0), "profit", 10_000.0)


def test_beats_flat_needs_every_dataset_above_flat() -> None:
    assert beats_flat(_record("validation", 10_001.0, 10_000.0), 10_000.0)
    assert not beats_flat(_record("validation", 9_999.0, 10_000.0), 10_000.0)
    assert not beats_flat({"split": "validation", "datasets": {}}, 10_000.0)
