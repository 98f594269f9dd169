"""Proportional prioritized sampling on a sum tree, compiled with numba.

``PrioritizedIndex`` holds one priority per replay slot and draws slots with probability
``p_i ** alpha / sum_k p_k ** alpha`` (Schaul et al., "Prioritized Experience Replay",
2016, proportional variant), returning importance weights
``(N * P(i)) ** -beta`` normalized by the largest weight any live slot could get (the
slot of smallest priority), as RLlib's prioritized buffer does. A slot of priority 0 is
empty (never written, or evicted) and is never drawn.

Both trees (sums and minima) are flat arrays of ``2 * size`` nodes, ``size`` a power of
two, leaves at ``size .. 2 * size - 1``; a parent is recomputed from its two children on
every update (not adjusted by a difference), so floating-point drift cannot accumulate.
Sampling is deterministic given the seed: the uniform draws come from one numpy
``Generator``.

The kernels are self-contained (they inline nothing from other files), so numba's own
per-file cache check is sufficient; importing ``raytrade.envs`` first puts the cache in
the source-keyed folder the rest of the package uses.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt
import raytrade.envs  # noqa: F401  (sets numba's source-keyed cache folder)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@numba.njit(cache=True)
def _set(sums: F64, mins: F64, size: int, slots: I64, values: F64) -> None:  # pragma: no cover
    """Write ``values`` (already raised to alpha; 0 = empty) at ``slots``."""
    for j in range(slots.shape[0]):
        node = slots[j] + size
        v = values[j]
        sums[node] = v
        mins[node] = v if v > 0.0 else np.inf
        node //= 2
        while node >= 1:
            sums[node] = sums[2 * node] + sums[2 * node + 1]
            mins[node] = min(mins[2 * node], mins[2 * node + 1])
            node //= 2


@numba.njit(cache=True)
def _find(sums: F64, size: int, mass: F64, out: I64) -> None:  # pragma: no cover
    """For each prefix mass, the slot whose cumulative-priority interval holds it.

    A child of zero sum is never entered, so an empty slot is never returned even when
    rounding puts the mass at a boundary."""
    for j in range(mass.shape[0]):
        u = mass[j]
        node = 1
        while node < size:
            left = 2 * node
            if (u < sums[left] or sums[left + 1] <= 0.0) and sums[left] > 0.0:
                node = left
            else:
                u -= sums[left]
                node = left + 1
        out[j] = node - size


class PrioritizedIndex:
    """Priorities of ``capacity`` slots, sampling proportional to ``priority ** alpha``."""

    def __init__(self, capacity: int, alpha: float = 0.6, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.capacity = capacity
        self.alpha = alpha
        self._size = 1 << max(0, (capacity - 1).bit_length())
        self._sums = np.zeros(2 * self._size, dtype=np.float64)
        self._mins = np.full(2 * self._size, np.inf, dtype=np.float64)
        self._live = 0
        self._alive = np.zeros(capacity, dtype=np.bool_)
        self._rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        """Bytes held by the trees and the liveness flags."""
        return self._sums.nbytes + self._mins.nbytes + self._alive.nbytes

    def __len__(self) -> int:
        """Number of slots with a nonzero priority."""
        return self._live

    def update(self, slots: npt.ArrayLike, priorities: npt.ArrayLike) -> None:
        """Set the priorities (>= 0, finite; 0 empties the slot) of ``slots``."""
        s = np.asarray(slots, dtype=np.int64).reshape(-1)
        p = np.broadcast_to(np.asarray(priorities, dtype=np.float64), s.shape)
        if s.size and (s.min() < 0 or s.max() >= self.capacity):
            raise IndexError(f"slot out of range 0..{self.capacity - 1}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("priorities must be finite and >= 0")
        values = np.where(p > 0, p ** self.alpha, 0.0)
        _set(self._sums, self._mins, self._size, s, np.ascontiguousarray(values))
        self._alive[s] = p > 0
        self._live = int(np.count_nonzero(self._alive))

    def priority(self, slots: npt.ArrayLike) -> F64:
        """The stored ``priority ** alpha`` of ``slots`` (0 when empty)."""
        return np.asarray(self._sums[np.asarray(slots, dtype=np.int64) + self._size])

    def sample(self, batch: int, beta: float) -> tuple[I64, F64]:
        """``batch`` slots drawn with replacement, and their importance weights."""
        total = float(self._sums[1])
        if total <= 0.0:
            raise ValueError("cannot sample: every priority is 0 (empty buffer)")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        mass = self._rng.random(batch) * total
        slots = np.empty(batch, dtype=np.int64)
        _find(self._sums, self._size, mass, slots)
        n = self._live
        p_min = float(self._mins[1]) / total
        prob = self._sums[slots + self._size] / total
        weights = (n * prob) ** -beta / (n * p_min) ** -beta
        return slots, weights
