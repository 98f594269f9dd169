"""Trading metrics of every finished training episode, through RLlib's metrics logger.

Each env step's info carries the marked equity, the held position and the cumulative
fills; at the end of an episode (all its chunks, when sampling split it) this callback
computes the shared metrics (``envs/metrics.py``) and logs them as
``episode_sharpe``, ``episode_max_drawdown``, ``episode_total_return``,
``episode_turnover`` (fills per bar) and ``episode_trades``, averaged over the last 100
episodes. Sharpe is annualized with the env's trading calendar (the ``env.calendar`` of
the env spec RLlib hands the runners, ``envs/env_spec.py``) and the bar interval is the
median spacing of the episode's bars, so a weekend inside an episode changes neither.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from ray.rllib.callbacks.callbacks import RLlibCallback
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import ConfigError
from raytrade.envs.metrics import interval_of, performance
from raytrade.envs.typed_json import decode

WINDOW = 100


def episode_infos(episode: Any, prev_chunks: list[Any] | None) -> list[dict[str, Any]]:
    """Every step's info of an episode, across the chunks sampling split it into."""
    infos: list[dict[str, Any]] = []
    for chunk in [*(prev_chunks or []), episode]:
        infos.extend(chunk.get_infos())
    return infos


def episode_metrics(infos: list[dict[str, Any]], calendar: TradingCalendar = ALWAYS,
                    every_bars: int = 1) -> dict[str, float] | None:
    """Shared metrics of one episode from its infos (None if it is too short); one step
    is one decision, ``every_bars`` bars (the env's decision interval)."""
    if len(infos) < 3 or "equity" not in infos[0]:
        return None
    return trading_metrics(np.array([i["equity"] for i in infos], dtype=np.float64),
                           np.array([i["position"] for i in infos], dtype=np.float64),
                           np.array([i["ts"] for i in infos], dtype=np.int64),
                           int(infos[-1]["trades"]) - int(infos[0]["trades"]),
                           calendar, every_bars)


def trading_metrics(equity: npt.NDArray[np.float64], position: npt.NDArray[np.float64],
                    ts: npt.NDArray[np.int64], trades: int,
                    calendar: TradingCalendar = ALWAYS,
                    every_bars: int = 1) -> dict[str, float] | None:
    """``episode_metrics`` from the episode's per-step arrays (marked equity, held
    position, bar open time in ms; one entry per info, the reset's first) and its fills
    (``trades``), for samplers that keep infos as arrays."""
    if len(equity) < 3:
        return None
    perf = performance(equity, position, interval_of(ts), fills=trades, calendar=calendar,
                       every_bars=every_bars)
    return {"episode_sharpe": perf.sharpe, "episode_max_drawdown": perf.max_drawdown,
            "episode_total_return": perf.total_return,
            "episode_turnover": trades / (len(equity) - 1), "episode_trades": float(trades)}


def runner_rules(env_runner: Any) -> tuple[TradingCalendar, int]:
    """The trading calendar and decision interval (bars) of the env spec an env runner
    builds its envs from (``env_config["env_spec"]["env"]``); the 24/7 calendar and every
    bar when there is none (a runner without an env spec, as in unit tests)."""
    config = getattr(getattr(env_runner, "config", None), "env_config", None)
    try:
        env = config["env_spec"]["env"]  # type: ignore[index]
        every = int(env["decision"]["every_bars"])
        return decode(TradingCalendar, env["calendar"], "env_spec.env.calendar"), every
    except (KeyError, TypeError, ValueError, ConfigError):
        return ALWAYS, 1


class TradingMetricsCallback(RLlibCallback):
    """Logs the shared trading metrics of each finished episode."""

    def on_episode_end(self, *, episode: Any, prev_episode_chunks: list[Any] | None = None,
                       metrics_logger: Any = None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        calendar, every_bars = runner_rules(kwargs.get("env_runner"))
        values = episode_metrics(episode_infos(episode, prev_episode_chunks), calendar,
                                 every_bars)
        if values is None:
            return
        for key, value in values.items():
            if np.isfinite(value):
                metrics_logger.log_value(key, float(value), reduce="mean", window=WINDOW)
