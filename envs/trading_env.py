"""TradingEnv: one symbol, target-position actions, costs and risk rules of the real broker.

## Description
Each step is one decision: one closed bar, or with a decision interval
(``config.decision.every_bars = k``) the bars up to the next decision bar, the target
held through them and their rewards summed (``decision.py``). The agent sees the recent
normalized features and its own position state, and picks a target position. The
decision fills at the next bar's open (plus the configured latency) through the same
accounting, cost model and risk rules the backtest and the live paper broker use; the
account is marked at that bar's close.

## Action Space
``Discrete(len(positions))``: action ``i`` means target position ``positions[i]`` as a
fraction of equity (default ``[-1, 0, 1]``: short, flat, long). A target is reached by one
trade when it changes; an unchanged target holds the units (no rebalancing).

## Observation Space
``Box(float32, window * F + 4)``: the last ``window`` rows of normalized features (oldest
first, row by row, clipped to +/- the normalizer's clip), then position, unrealized return
(%), bars in position (log-scaled) and drawdown (see ``observation.py``).

## Rewards
``log_return`` (default) ``log(E_t / E_{t-1})`` of marked equity, net of every cost;
``differential_sharpe``; ``drawdown_penalized``; ``turnover_penalty`` (see ``rewards.py``);
all multiplied by ``reward_scale`` (default 1).

## Episode End
``terminated``: equity gone (ruin) or the drawdown halt fired (the account is flattened
first). ``truncated``: no next bar in the split, or ``max_episode_steps`` reached.

## Arguments
``markets`` (prepared data, see ``market.py``) or ``data`` (paths, globs or
``"sample:SYMBOL"``) with ``split`` and ``reference``; ``config`` an :class:`EnvConfig`
or a dict of its fields; ``spec`` the FeatureSpec. ``reset(options={"start": t})`` starts
at bar ``t`` (evaluation).

## Info
``equity``, ``position``, ``fees``, ``slippage``, ``borrow`` (cumulative costs paid, quote
currency), ``traded_notional``, ``trades``, ``halted`` (the drawdown halt fired),
``drawdown``, ``bar`` (index of the bar just closed) and ``ts`` (its open time).

## Version History
- v0: initial version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from raytrade.envs.accounting import (
    ACCOUNT_SIZE,
    BORROW,
    EQUITY,
    FEES,
    HALTED,
    SLIPPAGE,
    TARGET,
    TRADES,
    TURNOVER,
    drawdown,
    new_account,
)
from raytrade.envs.decision import decision_bars
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_kernel import DONE_TERMINATED, pack_params, scalar_state, scalar_step
from raytrade.envs.episodes import bar_interval_ms, draw_start
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.market import M_CLOSE, MarketData, load_markets
from raytrade.envs.observation import observation_space, write_observation


def build_markets(markets: Sequence[MarketData] | None, data: Sequence[str] | str | None,
                  split: str, reference: str | None, config: EnvConfig,
                  spec: FeatureSpec | None) -> tuple[list[MarketData], float]:
    """The markets an env plays on, and the normalizer clip that bounds its features."""
    if markets is not None:
        if not markets:
            raise ConfigError("markets is empty")
        return list(markets), 10.0
    if data is None:
        raise ConfigError("give markets= or data=")
    loaded, norm = load_markets(data, spec=spec, split=split, reference=reference,
                                window=config.window, costs=config.costs,
                                calendar=config.calendar)
    return loaded, norm.clip


def as_config(config: EnvConfig | Mapping[str, Any] | None) -> EnvConfig:
    """An EnvConfig from an EnvConfig, a dict of its fields, or None (defaults)."""
    if config is None:
        return EnvConfig()
    if isinstance(config, EnvConfig):
        return config
    return EnvConfig.from_dict(config)


_INFO_FIELDS = np.array([EQUITY, TARGET, FEES, TRADES, TURNOVER, SLIPPAGE, BORROW, HALTED])


class TradingEnv(gym.Env[npt.NDArray[np.float32], np.int64]):
    """A single-symbol trading environment (full spec in the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium API
    multi_dataset = False

    def __init__(self, markets: Sequence[MarketData] | None = None, *,
                 data: Sequence[str] | str | None = None, split: str = "train",
                 reference: str | None = None,
                 config: EnvConfig | Mapping[str, Any] | None = None,
                 spec: FeatureSpec | None = None) -> None:
        self.config = as_config(config)
        self.markets, clip = build_markets(markets, data, split, reference, self.config, spec)
        self._check_markets(self.markets)
        cfg = self.config
        n_features = self.markets[0].z.shape[1]
        self.action_space = gym.spaces.Discrete(len(cfg.positions))
        self.observation_space = observation_space(cfg.window, n_features, clip,
                                                   cfg.positions, cfg.risk.position_fraction)
        self._params = pack_params(cfg)
        self._obs_dim = int(self.observation_space.shape[0])
        self._state = scalar_state(cfg.latency_bars)
        self._acct = self._state[:ACCOUNT_SIZE]  # views into the one state vector
        self._position_list = [float(p) for p in cfg.positions]
        self._window = cfg.window
        self._limit = cfg.max_episode_steps
        self._market = self.markets[0]
        self._decide_at = [decision_bars(m.ts, bar_interval_ms(m), cfg.decision.every_bars)
                           for m in self.markets]
        self._flags = self._decide_at[0]
        self._t = self._market.first
        self._steps = 0

    def _check_markets(self, markets: list[MarketData]) -> None:
        if len(markets) > 1 and not self.multi_dataset:
            raise ConfigError(f"TradingEnv plays one dataset, got {len(markets)}: use "
                              "MultiDatasetTradingEnv")
        widths = {m.z.shape[1] for m in markets}
        if len(widths) != 1:
            raise ConfigError(f"markets have different feature counts {sorted(widths)}")
        for m in markets:
            if m.first < self.config.window - 1:
                raise ConfigError(f"{m.name}: first decision {m.first} leaves no room for a "
                                  f"{self.config.window}-row window")

    def _choose_dataset(self, options: dict[str, Any] | None) -> int | None:
        return None if options is None else options.get("dataset")

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None
              ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        start = None if options is None else options.get("start")
        d, t0 = draw_start(self.np_random, self.markets, self.config,
                           self._choose_dataset(options), start)
        self._market = self.markets[d]
        self._flags = self._decide_at[d]
        self._t = t0
        self._steps = 0
        self._state[:] = 0.0
        self._acct[:] = new_account(self.config.initial_equity)
        obs = np.empty(self._obs_dim, dtype=np.float32)
        write_observation(self._market.z, t0, self.config.window, self._acct,
                          self._market.market[M_CLOSE, t0], obs)
        return obs, self._info(drawdown(self._acct))

    def step(self, action: np.int64 | int
             ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < len(self._position_list):
            raise ValueError(f"action {action!r} outside Discrete({len(self._position_list)})")
        m = self._market
        obs = np.empty(self._obs_dim, dtype=np.float32)
        reward, done, dd, bars = scalar_step(self._state, m.market, m.z, self._params,
                                             self._position_list[a], self._t, self._window,
                                             obs, self._flags, m.last)
        self._t += bars
        self._steps += 1
        terminated = done == DONE_TERMINATED
        truncated = not terminated and (self._t > m.last or (
            self._limit is not None and self._steps >= self._limit))
        return obs, reward, terminated, truncated, self._info(dd)

    def _info(self, dd: float) -> dict[str, Any]:
        """``dd`` is ``accounting.drawdown`` of the account, computed by the step kernel."""
        equity, position, fees, trades, traded, slippage, borrow, halted = \
            self._acct[_INFO_FIELDS].tolist()
        return {"equity": equity, "position": position, "fees": fees, "trades": int(trades),
                "traded_notional": traded, "slippage": slippage, "borrow": borrow,
                "halted": halted != 0.0,
                "drawdown": dd, "bar": self._t, "ts": int(self._market.ts[self._t])}
