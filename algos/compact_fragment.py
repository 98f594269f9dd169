"""What an Ape-X env runner sends the learner: a fragment of experience in compact form.

A runner steps a vector env of ``n_envs`` sub-envs for ``n_steps`` steps. Each sub-env is
one *stream*: consecutive observations of an episode share ``window - k`` of their
``window`` feature rows when the next decision is ``k`` bars later, so the fragment
carries only the rows each step adds (``push_rows``) plus the small position state, and
the learner rebuilds whole observations in its :class:`~raytrade.algos.compact_replay.
CompactReplay`. A fragment of 64 envs x 32 steps with the default 73-feature, 16-bar
observation is about 0.6 MB instead of about 19 MB as whole observation pairs.

How the learner applies a fragment (``fragment_ingest.py``), stream by stream, in step
order ``t = 0 .. n_steps - 1`` after the starts with ``start_step == -1``:

- ``valid[t, e]``: a transition exists. Stream ``e`` appends ``push_counts[t, e]`` rows
  (the next rows of ``push_rows``, oldest first; ``1 <= count <= window``), and a
  transition goes from the stream's current observation (its last bar and state) with
  ``actions[t, e]`` and ``rewards[t, e]`` to the observation whose window ends at the
  last appended row, with state ``next_states[t, e]``; ``terminated``/``truncated`` as
  the env returned them.
- not ``valid[t, e]``: this step reset sub-env ``e`` (gymnasium's next-step autoreset:
  the step after an episode ends returns the new episode's first observation and no
  transition). A start at step ``t`` for env ``e`` carries that observation's whole
  window and state.
- starts at ``start_step == -1`` are observations current before step 0: every env on a
  source's first fragment (a new source id means a new or restarted runner, so the
  learner forgets any earlier continuation of its streams).

The runner checks that each step's appended rows really continue the previous window
(row equality of the shared part) and appends the whole window when they do not, so a
rebuilt observation is always exactly the one the env returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EpisodeStats:
    """Finished episodes of a fragment, for the runner's metrics: return (sum of rewards),
    length (env steps) and the shared trading metrics (``callbacks.episode_metrics``)."""

    returns: tuple[float, ...] = ()
    lengths: tuple[int, ...] = ()
    trading: tuple[dict[str, float], ...] = ()


@dataclass(frozen=True)
class CompactFragment:
    """``n_steps`` steps of ``n_envs`` streams (see the module docstring for the layout)."""

    source: str
    """Id of the sampler instance; changes when a runner is (re)built."""
    weights_version: int
    """Learner weights version the actions were chosen with (-1: the runner's initial
    weights)."""
    window: int
    n_features: int
    start_step: I64
    """(S,) step whose env.step returned the start (-1: before step 0), ascending."""
    start_env: I64
    """(S,) sub-env of each start."""
    start_windows: F32
    """(S, window, n_features) the start observation's feature rows, oldest first."""
    start_states: F32
    """(S, n_state) the start observation's position state."""
    push_counts: I64
    """(T, E) rows appended by each step's next observation (0 where not ``valid``)."""
    push_rows: F32
    """(sum(push_counts), n_features) in order of step, then env, then oldest first."""
    next_states: F32
    """(T, E, n_state) position state of each step's next observation."""
    actions: I64
    """(T, E) actions taken."""
    rewards: F32
    """(T, E) rewards received."""
    terminated: B
    """(T, E)."""
    truncated: B
    """(T, E)."""
    valid: B
    """(T, E) a transition exists (False on the autoreset step)."""
    episodes: EpisodeStats = field(default_factory=EpisodeStats)
    sequence: int = 0
    """Position of this fragment among its source's fragments (0, 1, 2, ...): the learner
    refuses a fragment that does not follow the last one it applied from that source (a
    lost fragment would leave its streams continuing bars the learner never saw)."""

    @property
    def n_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_envs(self) -> int:
        return int(self.actions.shape[1])

    @property
    def env_steps(self) -> int:
        """Transitions in the fragment (env steps that produced one)."""
        return int(self.valid.sum())

    @property
    def nbytes(self) -> int:
        arrays = (self.start_step, self.start_env, self.start_windows, self.start_states,
                  self.push_counts, self.push_rows, self.next_states, self.actions,
                  self.rewards, self.terminated, self.truncated, self.valid)
        return sum(a.nbytes for a in arrays)

    def check(self) -> None:
        """Raise ValueError naming the field when the arrays disagree in shape or content."""
        t, e = self.actions.shape
        for name in ("rewards", "terminated", "truncated", "valid", "push_counts"):
            if getattr(self, name).shape != (t, e):
                raise ValueError(f"fragment {self.source}: {name} must be ({t}, {e}), got "
                                 f"{getattr(self, name).shape}")
        s = len(self.start_step)
        if self.start_env.shape != (s,) or \
                self.start_windows.shape != (s, self.window, self.n_features) or \
                self.start_states.shape[0] != s:
            raise ValueError(f"fragment {self.source}: start arrays disagree in length or "
                             f"window shape")
        n_state = self.start_states.shape[1]
        if self.next_states.shape != (t, e, n_state):
            raise ValueError(f"fragment {self.source}: next_states must be ({t}, {e}, "
                             f"{n_state}), got {self.next_states.shape}")
        counts = self.push_counts
        if np.any(counts[self.valid] < 1) or np.any(counts[self.valid] > self.window) or \
                np.any(counts[~self.valid] != 0):
            raise ValueError(f"fragment {self.source}: push_counts must be 1..window where "
                             f"valid and 0 elsewhere")
        if self.push_rows.shape != (int(counts.sum()), self.n_features):
            raise ValueError(f"fragment {self.source}: push_rows must be ({int(counts.sum())}"
                             f", {self.n_features}), got {self.push_rows.shape}")
        if np.any(np.diff(self.start_step) < 0) or \
                (s and (self.start_step.min() < -1 or self.start_step.max() >= t)):
            raise ValueError(f"fragment {self.source}: start_step must ascend within -1..{t-1}")
        started = np.zeros((t, e), dtype=bool)
        later = self.start_step >= 0
        started[self.start_step[later], self.start_env[later]] = True
        if np.any(started & self.valid) or np.any(~started & ~self.valid):
            raise ValueError(f"fragment {self.source}: each (step, env) is either a valid "
                             f"transition or a start, never both or neither")
