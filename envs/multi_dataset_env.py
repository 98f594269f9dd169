"""MultiDatasetTradingEnv: a TradingEnv that plays a different dataset each episode.

## Description
Same dynamics, spaces, rewards and episode end as :class:`TradingEnv`; at every reset the
dataset (a symbol, or a period held in its own file) is drawn uniformly with
``self.np_random`` from the list or glob given as ``data``. All datasets share one
FeatureSpec and one normalizer (fitted on their training splits together), so the
observation space is the same for all of them.

## Arguments
As TradingEnv; ``data`` is typically several paths or a glob such as
``"data/*_5m_*.csv"``. ``reset(options={"dataset": i})`` plays dataset ``i``.
``info["dataset"]`` names the dataset of the episode.

## Version History
- v0: initial version.
"""

from __future__ import annotations

from typing import Any

from raytrade.envs.trading_env import TradingEnv


class MultiDatasetTradingEnv(TradingEnv):
    """TradingEnv over several datasets, one drawn per episode."""

    multi_dataset = True

    def _choose_dataset(self, options: dict[str, Any] | None) -> int | None:
        if options is not None and "dataset" in options:
            return int(options["dataset"])
        return None

    def _info(self, dd: float) -> dict[str, Any]:
        info = super()._info(dd)
        info["dataset"] = self._market.name
        return info
