"""Trading metrics of every finished training episode, through RLlib's metrics logger.

Each env step's info carries the marked equity, the held position and the cumulative
fills; at the end of an episode (all its chunks, when sampling split it) this callback
computes the shared metrics (``envs/metrics.py``) and logs them as
``episode_sharpe``, ``episode_max_drawdown``, ``episode_total_return``,
``episode_turnover`` (fills per bar) and ``episode_trades``, averaged over the last 100
episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from raytrade.envs.metrics import performance

WINDOW = 100


def episode_infos(episode: Any, prev_chunks: list[Any] | None) -> list[dict[str, Any]]:
    """Every step's info of an episode, across the chunks sampling split it into."""
    infos: list[dict[str, Any]] = []
    for chunk in [*(prev_chunks or []), episode]:
        infos.extend(chunk.get_infos())
    return infos


def episode_metrics(infos: list[dict[str, Any]]) -> dict[str, float] | None:
    """Shared metrics of one episode from its infos (None if it is too short)."""
    if len(infos) < 3 or "equity" not in infos[0]:
        return None
    equity = np.array([i["equity"] for i in infos], dtype=np.float64)
    position = np.array([i["position"] for i in infos], dtype=np.float64)
    interval = int(infos[1]["ts"] - infos[0]["ts"])
    trades = int(infos[-1]["trades"]) - int(infos[0]["trades"])
    perf = performance(equity, position, interval, fills=trades)
    return {"episode_sharpe": perf.sharpe, "episode_max_drawdown": perf.max_drawdown,
            "episode_total_return": perf.total_return,
            "episode_turnover": trades / (len(infos) - 1), "episode_trades": float(trades)}


class TradingMetricsCallback(RLlibCallback):
    """Logs the shared trading metrics of each finished episode."""

    def on_episode_end(self, *, episode: Any, prev_episode_chunks: list[Any] | None = None,
                       metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        values = episode_metrics(episode_infos(episode, prev_episode_chunks))
        if values is None:
            return
        for key, value in values.items():
            if np.isfinite(value):
                metrics_logger.log_value(key, float(value), reduce="mean", window=WINDOW)
