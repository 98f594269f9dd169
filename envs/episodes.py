"""Where an episode starts: one rule for the scalar, multi-dataset and vector envs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.market import MarketData


def draw_start(rng: np.random.Generator, markets: Sequence[MarketData], config: EnvConfig,
               dataset: int | None = None, start: int | None = None) -> tuple[int, int]:
    """Pick ``(dataset index, first decision bar)`` for a new episode.

    The dataset is drawn uniformly when there are several and none is given; the start is
    drawn uniformly so that a full ``max_episode_steps`` fits before the split ends (or is
    the split's first bar when ``random_start`` is off). ``start`` forces a bar.
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
        return dataset, int(start)
    if not config.random_start:
        return dataset, m.first
    hi = m.last if config.max_episode_steps is None else \
        max(m.first, m.last - config.max_episode_steps + 1)
    return dataset, int(rng.integers(m.first, hi + 1))
