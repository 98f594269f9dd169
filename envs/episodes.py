"""Where an episode starts: one rule for the scalar, multi-dataset and vector envs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from raytrade.envs.decision import decision_bars
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import MarketData


def draw_start(rng: np.random.Generator, markets: Sequence[MarketData], config: EnvConfig,
               dataset: int | None = None, start: int | None = None) -> tuple[int, int]:
    """Pick ``(dataset index, first decision bar)`` for a new episode.

    The dataset is drawn uniformly when there are several and none is given; the start is
    drawn uniformly so that a full ``max_episode_steps`` fits before the split ends (or is
    the split's first bar when ``random_start`` is off). ``start`` forces a bar. With a
    decision interval (``config.decision.every_bars > 1``) the start moves forward to the
    first decision bar at or after it (``decision.py``).
    """
    if dataset is None:
        dataset = 0 if len(markets) == 1 else int(rng.integers(len(markets)))
    if not 0 <= dataset < len(markets):
        raise ConfigError(f"dataset {dataset} out of range (0..{len(markets) - 1})")
    m = markets[dataset]
    if start is not None:
        if not m.first <= start <= m.last:
            raise ConfigError(f"start {start} outside {m.name}'s decision range "
                              f"{m.first}..{m.last}")
        return dataset, first_decision_bar(m, int(start), config.decision.every_bars)
    if not config.random_start:
        return dataset, first_decision_bar(m, m.first, config.decision.every_bars)
    every = config.decision.every_bars
    steps = None if config.max_episode_steps is None else config.max_episode_steps * every
    hi = m.last if steps is None else max(m.first, m.last - steps + 1)
    return dataset, first_decision_bar(m, int(rng.integers(m.first, hi + 1)), every)


def bar_interval_ms(market: MarketData) -> int:
    """The market's bar interval (ms): the median spacing of its first bars."""
    head = market.ts[:1024]
    return int(np.median(np.diff(head))) if len(head) > 1 else 0


def first_decision_bar(market: MarketData, t: int, every_bars: int) -> int:
    """The first decision bar at or after ``t`` within the decision range; ``t`` itself
    when every bar decides. Raises ``ConfigError`` when the range has none left."""
    if every_bars == 1:
        return t
    ahead = market.ts[t:market.last + 1]
    flags = decision_bars(ahead, bar_interval_ms(market), every_bars)
    hits = np.flatnonzero(flags)
    if not len(hits):
        raise ConfigError(f"{market.name}: no decision bar (every {every_bars} bars) between "
                          f"bar {t} and the end of the {market.split} split ({market.last})")
    return t + int(hits[0])
