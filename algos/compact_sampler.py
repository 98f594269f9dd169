"""CompactSampler: steps a vector env epsilon-greedily and emits CompactFragments.

The hot loop of an Ape-X env runner, written for throughput: one batched greedy call per
step for all sub-envs, epsilon-greedy in numpy, and everything the learner needs packed
as :class:`~raytrade.algos.compact_fragment.CompactFragment` (the rows each step adds,
not whole observation pairs). Per step the work is a fixed number of array operations,
whatever the number of sub-envs; Python runs per sub-env only when an episode ends.

Rows pushed per step: the decision interval ``k`` (bars between consecutive observations
of a continuing episode, from ``infos["bar"]``) clipped to ``1..window``. The sampler
checks that the new observation's first ``window - k`` rows equal the previous one's last
``window - k`` rows (bit for bit) and pushes the whole window where they do not, so the
rebuilt observations are always exactly the env's.

The env must be a gymnasium ``VectorEnv`` with ``NEXT_STEP`` autoreset whose infos are a
dict of per-sub-env arrays with ``bar``, ``ts``, ``equity``, ``position`` and ``trades``
(``envs/vector_env.py``). Its observations use the layout of ``envs/observation.py``:
``window`` rows of features, oldest first, then the position state.

Finished episodes are reported in ``fragment.episodes``: return (sum of rewards), length
(transitions) and the trading metrics of ``callbacks.trading_metrics`` over the episode's
infos (the reset's first), the same numbers RLlib's runner and ``TradingMetricsCallback``
report for the episode.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numba
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode
from raytrade.algos.callbacks import trading_metrics
from raytrade.algos.compact_fragment import F32, I64, B, CompactFragment, EpisodeStats
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.observation import N_POSITION_STATE

F64 = npt.NDArray[np.float64]
Greedy = Callable[[F32], I64]
INFO_KEYS = ("bar", "ts", "equity", "position", "trades")


class CompactSampler:
    """Epsilon-greedy sampler of a vector env that keeps its place across calls.

    ``greedy`` maps a batch of observations ``(n_envs, obs_dim)`` to greedy actions; it is
    not called when ``epsilon >= 1``. ``seed`` seeds both the env's first reset and the
    exploration generator. ``source`` names this sampler in its fragments (a fresh id by
    default: a rebuilt sampler is a new source).
    """

    def __init__(self, env: gym.vector.VectorEnv[Any, Any, Any], greedy: Greedy, *,
                 window: int, seed: int | None = None, source: str | None = None,
                 calendar: TradingCalendar = ALWAYS, every_bars: int = 1) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.NEXT_STEP.value):
            raise ValueError(f"CompactSampler needs NEXT_STEP autoreset, the env has {mode!r}")
        space = env.single_observation_space
        dim = int(np.prod(space.shape or (0,)))
        if window < 1 or (dim - N_POSITION_STATE) % window or dim <= N_POSITION_STATE:
            raise ValueError(f"observation of {dim} values is not {window} feature rows "
                             f"plus {N_POSITION_STATE} state values")
        action_space = env.single_action_space
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"CompactSampler needs a Discrete action space, not "
                             f"{action_space}")
        self.env = env
        self.greedy = greedy
        self.window = window
        self.n_features = (dim - N_POSITION_STATE) // window
        self.n_envs = int(env.num_envs)
        self.n_actions = int(action_space.n)
        self.source = source or uuid.uuid4().hex[:12]
        self.calendar = calendar
        self.every_bars = every_bars
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._sequence = 0
        self._broken = False
        self._clear()

    def _clear(self) -> None:
        """Forget the env's place: the next ``sample`` resets every sub-env."""
        self._obs: F32 | None = None
        self._bar = np.zeros(self.n_envs, dtype=np.int64)
        self._done = np.zeros(self.n_envs, dtype=bool)
        # episode bookkeeping: running return and length, the first info row of the
        # ongoing episode in this fragment's info rows, earlier fragments' rows
        self._ret = np.zeros(self.n_envs, dtype=np.float64)
        self._len = np.zeros(self.n_envs, dtype=np.int64)
        self._first_row = np.zeros(self.n_envs, dtype=np.int64)
        self._carry: list[list[tuple[F64, F64, I64, I64]]] = [[] for _ in range(self.n_envs)]
        self._last_info: tuple[F64, F64, I64, I64] | None = None
        self._began = np.zeros(self.n_envs, dtype=np.float64)
        self.episode_seconds: tuple[float, ...] = ()
        """Wall-clock seconds of each episode the last ``sample`` finished (in the order of
        ``fragment.episodes.returns``), for RLlib's ``episode_duration_sec_mean``."""

    @property
    def started(self) -> bool:
        """Whether the env has been reset (the first ``sample`` does it)."""
        return self._obs is not None

    def _info_arrays(self, infos: dict[str, Any]) -> tuple[F64, F64, I64, I64, I64]:
        missing = [k for k in INFO_KEYS if k not in infos]
        if missing:
            raise ValueError(f"env infos lack {missing}: CompactSampler needs per-sub-env "
                             f"arrays {list(INFO_KEYS)}")
        return (np.asarray(infos["equity"], dtype=np.float64),
                np.asarray(infos["position"], dtype=np.float64),
                np.asarray(infos["ts"], dtype=np.int64),
                np.asarray(infos["trades"], dtype=np.int64),
                np.asarray(infos["bar"], dtype=np.int64))

    def restart(self) -> None:
        """Become a new source: a fresh id, sequence 0, and every sub-env reset by the next
        ``sample`` (after a failed step, or when the learner lost a fragment)."""
        self.source = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._broken = False
        self._seed = None  # a restart must not replay the first episodes
        self._clear()

    def sample(self, num_steps: int, epsilon: float, weights_version: int = -1
               ) -> CompactFragment:
        """Step every sub-env ``num_steps`` times; return the fragment of those steps.

        If a previous call raised (e.g. the env failed mid-step), this sampler's place is
        unknown: it restarts first (a new source), so no transition ever joins
        observations across the failure."""
        if self._broken:
            self.restart()
        try:
            fragment = self._sample(num_steps, epsilon, weights_version)
        except BaseException:
            self._broken = True
            raise
        self._sequence += 1
        return fragment

    def _sample(self, num_steps: int, epsilon: float, weights_version: int
                ) -> CompactFragment:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        n, w, f = self.n_envs, self.window, self.n_features
        wf = w * f
        t_steps = num_steps
        start_step: list[I64] = []
        start_env: list[I64] = []
        start_windows: list[F32] = []
        start_states: list[F32] = []
        # info rows: row 0 is the observation current before step 0, row t + 1 step t's
        eq = np.empty((t_steps + 1, n))
        pos = np.empty((t_steps + 1, n))
        ts = np.empty((t_steps + 1, n), dtype=np.int64)
        trades = np.empty((t_steps + 1, n), dtype=np.int64)
        if self._obs is None:
            obs, infos = self.env.reset(seed=self._seed)
            obs = np.asarray(obs, dtype=np.float32).reshape(n, -1)
            e0, p0, ts0, tr0, self._bar = self._info_arrays(infos)
            self._last_info = (e0, p0, ts0, tr0)
            self._done[:] = False
            self._first_row[:] = 0
            self._began[:] = time.perf_counter()
            start_step.append(np.full(n, -1, dtype=np.int64))
            start_env.append(np.arange(n, dtype=np.int64))
            start_windows.append(obs[:, :wf].reshape(n, w, f).copy())
            start_states.append(obs[:, wf:].copy())
            self._obs = obs
        assert self._last_info is not None
        eq[0], pos[0], ts[0], trades[0] = self._last_info
        actions = np.empty((t_steps, n), dtype=np.int64)
        rewards = np.empty((t_steps, n), dtype=np.float32)
        terminated = np.empty((t_steps, n), dtype=bool)
        truncated = np.empty((t_steps, n), dtype=bool)
        valid = np.empty((t_steps, n), dtype=bool)
        push_counts = np.zeros((t_steps, n), dtype=np.int64)
        next_states = np.empty((t_steps, n, N_POSITION_STATE), dtype=np.float32)
        push_rows: list[F32] = []
        rows = np.arange(w, dtype=np.int64)
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        ep_trading: list[dict[str, float]] = []
        ep_seconds: list[float] = []
        explore = epsilon > 0.0
        obs = self._obs
        for t in range(t_steps):
            if epsilon >= 1.0:
                act = self._rng.integers(self.n_actions, size=n)
            else:
                act = np.asarray(self.greedy(obs), dtype=np.int64).reshape(n)
                if explore:
                    rand = self._rng.random(n) < epsilon
                    if rand.any():
                        act = np.where(rand, self._rng.integers(self.n_actions, size=n), act)
            new_obs, rew, term, trunc, infos = self.env.step(act)
            new_obs = np.asarray(new_obs, dtype=np.float32).reshape(n, -1)
            e1, p1, ts1, tr1, bar = self._info_arrays(infos)
            ok = ~self._done
            actions[t] = act
            rewards[t] = rew
            terminated[t] = term
            truncated[t] = trunc
            valid[t] = ok
            next_states[t] = new_obs[:, wf:]
            eq[t + 1], pos[t + 1], ts[t + 1], trades[t + 1] = e1, p1, ts1, tr1
            k = self._verified_push(obs, new_obs, bar, ok)
            push_counts[t] = k
            if ok.all():
                if (k == k[0]).all():  # the common case: one block copy
                    push_rows.append(new_obs[:, (w - int(k[0])) * f:wf].reshape(-1, f).copy())
                else:
                    mask = rows[None, :] >= (w - k)[:, None]
                    push_rows.append(new_obs[:, :wf].reshape(n, w, f)[mask])
            else:
                mask = (rows[None, :] >= (w - k)[:, None]) & ok[:, None]
                push_rows.append(new_obs[:, :wf].reshape(n, w, f)[mask])
                reset = np.flatnonzero(~ok)
                start_step.append(np.full(len(reset), t, dtype=np.int64))
                start_env.append(reset)
                start_windows.append(new_obs[reset, :wf].reshape(-1, w, f))
                start_states.append(new_obs[reset, wf:])
                self._first_row[reset] = t + 1
                self._began[reset] = time.perf_counter()
            self._ret += np.where(ok, rew, 0.0)
            self._len += ok
            done = np.asarray(term, dtype=bool) | np.asarray(trunc, dtype=bool)
            if done.any():
                for e in np.flatnonzero(done & ok):
                    ep_seconds.append(time.perf_counter() - float(self._began[e]))
                    self._finish(int(e), t + 1, eq, pos, ts, trades, ep_returns, ep_lengths,
                                 ep_trading)
            self._done = done & ok
            self._bar = bar
            obs = new_obs
        self._obs = obs
        self._last_info = (eq[-1].copy(), pos[-1].copy(), ts[-1].copy(), trades[-1].copy())
        self._roll_episodes(t_steps, eq, pos, ts, trades)
        self.episode_seconds = tuple(ep_seconds)
        return CompactFragment(
            source=self.source, weights_version=weights_version, window=w, n_features=f,
            start_step=_cat(start_step, np.int64, (0,)), start_env=_cat(start_env, np.int64,
                                                                         (0,)),
            start_windows=_cat(start_windows, np.float32, (0, w, f)),
            start_states=_cat(start_states, np.float32, (0, N_POSITION_STATE)),
            push_counts=push_counts, push_rows=_cat(push_rows, np.float32, (0, f)),
            next_states=next_states, actions=actions, rewards=rewards,
            terminated=terminated, truncated=truncated, valid=valid,
            episodes=EpisodeStats(tuple(ep_returns), tuple(ep_lengths), tuple(ep_trading)),
            sequence=self._sequence)

    def _verified_push(self, obs: F32, new_obs: F32, bar: I64, ok: B) -> I64:
        """Rows each continuing sub-env's new observation adds (0 where it reset): the bar
        difference clipped to ``1..window``, or ``window`` where the shared rows differ."""
        w, f = self.window, self.n_features
        k: I64 = np.minimum(np.maximum(bar - self._bar, 1), w)
        k[~ok] = 0
        # bit patterns, so -0.0 and 0.0 or two NaNs are never taken for each other
        check_shared_rows(obs.view(np.uint32), new_obs.view(np.uint32), k, w, f)
        return k

    def _finish(self, e: int, row: int, eq: F64, pos: F64, ts: I64, trades: I64,
                returns: list[float], lengths: list[int],
                trading: list[dict[str, float]]) -> None:
        """Record sub-env ``e``'s episode, whose last info is ``row``."""
        first = int(self._first_row[e])
        parts = [*self._carry[e],
                 (eq[first:row + 1, e], pos[first:row + 1, e], ts[first:row + 1, e],
                  trades[first:row + 1, e])]
        e_eq = np.concatenate([p[0] for p in parts])
        e_pos = np.concatenate([p[1] for p in parts])
        e_ts = np.concatenate([p[2] for p in parts])
        n_trades = int(parts[-1][3][-1]) - int(parts[0][3][0])
        metrics = trading_metrics(e_eq, e_pos, e_ts, n_trades, self.calendar, self.every_bars)
        returns.append(float(self._ret[e]))
        lengths.append(int(self._len[e]))
        if metrics is not None:
            trading.append(metrics)
        self._ret[e] = 0.0
        self._len[e] = 0
        self._carry[e] = []
        self._first_row[e] = row + 1

    def _roll_episodes(self, t_steps: int, eq: F64, pos: F64, ts: I64, trades: I64) -> None:
        """Keep the info rows of ongoing episodes for the next fragment, whose row 0 is
        this fragment's last row."""
        for e in np.flatnonzero(self._first_row < t_steps):
            first = int(self._first_row[e])
            self._carry[e].append((eq[first:t_steps, e].copy(), pos[first:t_steps, e].copy(),
                                   ts[first:t_steps, e].copy(),
                                   trades[first:t_steps, e].copy()))
        self._first_row = np.maximum(self._first_row - t_steps, 0)


@numba.njit(cache=True)
def check_shared_rows(prev: npt.NDArray[np.uint32], new: npt.NDArray[np.uint32], k: I64,
                      window: int, n_features: int) -> None:  # pragma: no cover - compiled
    """Set ``k[e]`` to ``window`` where sub-env ``e``'s new observation does not continue
    its previous one by ``k[e]`` rows (``k[e] = 0``: no transition, left alone).

    Rows are compared as bit patterns: ``new`` rows ``0 .. window - k - 1`` must equal
    ``prev`` rows ``k .. window - 1`` (an OR of XORs over the whole overlap, without
    branches, so the compiler vectorizes it)."""
    f = n_features
    for e in range(k.shape[0]):
        ke = k[e]
        if ke <= 0 or ke >= window:
            continue
        shift = ke * f
        diff = np.uint32(0)
        for j in range((window - ke) * f):
            diff |= new[e, j] ^ prev[e, j + shift]
        if diff != 0:
            k[e] = window


def _cat(parts: list[Any], dtype: type, empty_shape: tuple[int, ...]) -> Any:
    """Concatenate ``parts`` along axis 0 (an empty array of ``empty_shape`` if none)."""
    if not parts:
        return np.zeros(empty_shape, dtype=dtype)
    return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
