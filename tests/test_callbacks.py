"""Episode trading metrics come from the shared metrics module."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.algos.callbacks import episode_infos, episode_metrics
from raytrade.envs.metrics import performance


class Chunk:
    def __init__(self, infos: list[dict]) -> None:
        self._infos = infos

    def get_infos(self) -> list[dict]:
        return self._infos


def test_episode_metrics_join_chunks_and_use_shared_metrics() -> None:
    equity = [100.0, 101.0, 99.0, 103.0, 102.0, 104.0]
    position = [0.0, 1.0, 1.0, -1.0, -1.0, 0.0]
    infos = [{"equity": e, "position": p, "trades": k, "ts": 300_000 * i}
             for i, (e, p, k) in enumerate(zip(equity, position, [0, 1, 1, 2, 2, 3],
                                               strict=True))]
    joined = episode_infos(Chunk(infos[3:]), [Chunk(infos[:3])])
    assert joined == infos
    m = episode_metrics(joined)
    assert m is not None
    perf = performance(np.array(equity), np.array(position), 300_000, fills=3)
    assert m["episode_sharpe"] == pytest.approx(perf.sharpe)
    assert m["episode_max_drawdown"] == pytest.approx(99 / 101 - 1)
    assert m["episode_total_return"] == pytest.approx(0.04)
    assert m["episode_trades"] == 3 and m["episode_turnover"] == pytest.approx(3 / 5)
    assert episode_metrics(infos[:2]) is None
