"""Comparing two evaluation records of the same policy computed by two forward passes."""

from __future__ import annotations

from typing import Any

import pytest


def assert_same_evaluation(replayed: dict[str, Any], recorded: dict[str, Any]) -> None:
    """The bundle's network (``qnetwork.py``) and RLlib's module compute the same Q-values
    to float32 rounding: every decision, equity and cost must be identical; only the Q-gap
    statistics (differences of Q-values) may differ in their last float32 digits."""
    assert replayed.keys() == recorded.keys()
    for name, per in replayed.items():
        theirs = recorded[name]
        assert per.keys() == theirs.keys(), name
        for policy, record in per.items():
            if not isinstance(record, dict):
                assert record == theirs[policy], (name, policy)
                continue
            ours = {k: v for k, v in record.items() if k != "q_gap"}
            assert ours == {k: v for k, v in theirs[policy].items() if k != "q_gap"}, \
                (name, policy)
            if "q_gap" in record:
                assert record["q_gap"] == pytest.approx(theirs[policy]["q_gap"], rel=1e-5,
                                                        abs=1e-6), (name, policy)
