"""Time splits never overlap, keep time order and honour the embargo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from raytrade.envs.errors import ConfigError
from raytrade.envs.splits import split_by_fraction, split_by_time

IV = 300_000


@given(n=st.integers(50, 5000), train=st.floats(0.2, 0.8), val=st.floats(0.05, 0.15),
       embargo=st.integers(0, 5))
def test_fraction_splits_are_disjoint_ordered_and_embargoed(n: int, train: float, val: float,
                                                            embargo: int) -> None:
    ts = 1_700_000_000_000 + IV * np.arange(n, dtype=np.int64)
    a, b = round(n * train), round(n * (train + val))
    if min(a, b - a - embargo, n - b - embargo) <= 0:
        with pytest.raises(ConfigError, match="empty"):
            split_by_fraction(ts, IV, train=train, validation=val, embargo_bars=embargo)
        return
    s = split_by_fraction(ts, IV, train=train, validation=val, embargo_bars=embargo)
    assert s.train.start == 0 and s.test.stop == n
    assert s.train.stop + embargo == s.validation.start
    assert s.validation.stop + embargo == s.test.start
    assert s.train.end_ts <= s.validation.start_ts and s.validation.end_ts <= s.test.start_ts
    covered = sum(len(p) for p in s)
    assert covered == n - 2 * embargo


def test_time_splits_cut_at_the_given_times() -> None:
    ts = 1_700_000_000_000 + IV * np.arange(1000, dtype=np.int64)
    s = split_by_time(ts, IV, validation_start_ms=int(ts[600]), test_start_ms=int(ts[800]))
    assert (len(s.train), len(s.validation), len(s.test)) == (600, 200, 200)
    assert s.train.end_ts == s.validation.start_ts


@pytest.mark.parametrize("kwargs", [{"train": 0.9, "validation": 0.2}, {"train": 0.0},
                                    {"embargo_bars": -1}])
def test_bad_fractions_are_rejected(kwargs: dict) -> None:
    ts = 1_700_000_000_000 + IV * np.arange(100, dtype=np.int64)
    with pytest.raises(ConfigError):
        split_by_fraction(ts, IV, **kwargs)


def test_empty_split_is_rejected() -> None:
    ts = 1_700_000_000_000 + IV * np.arange(10, dtype=np.int64)
    with pytest.raises(ConfigError, match="empty"):
        split_by_fraction(ts, IV, train=0.8, validation=0.15, embargo_bars=3)
