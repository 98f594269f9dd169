"""Best-so-far tracking and early stopping over a run's validation scores.

The training driver scores every validation evaluation (``selection.score``) and feeds
the score here. The tracker remembers the best one and counts the evaluations since the
last *improvement*: a score more than ``min_improvement`` above the best so far (the first
score always improves). After ``patience`` evaluations in a row without one, ``should_stop``
turns true (``patience`` 0: never). Pure logic, no I/O, so a scripted sequence of scores
tests it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from raytrade.envs.errors import ConfigError


@dataclass(frozen=True)
class Observation:
    """One scored evaluation: the iteration of the policy and its validation score."""

    iteration: int
    score: float
    improved: bool
    """True when this score became the best."""


@dataclass
class EarlyStopping:
    """Tracks the best validation score of a run (module docstring). Scores in the units
    of the selection metric; NaN counts as ``-inf`` (never an improvement)."""

    patience: int = 0
    """Evaluations without improvement before ``should_stop``; 0 = never stop early."""
    min_improvement: float = 0.0
    """How far above the best a score must be to count as an improvement (metric units)."""
    best_iteration: int | None = None
    best_score: float | None = None
    since_improvement: int = 0
    """Evaluations since the best one."""
    history: list[Observation] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 0 or not (math.isfinite(self.min_improvement)
                                     and self.min_improvement >= 0):
            raise ConfigError("early stopping needs patience >= 0 and a finite "
                              "min_improvement >= 0")

    def improves_on(self, score: float, reference: float | None) -> bool:
        """True when ``score`` is more than ``min_improvement`` above ``reference`` (any
        score improves on no reference; NaN improves on nothing)."""
        if math.isnan(score):
            return False
        if reference is None:
            return True
        return score > reference + self.min_improvement

    def observe(self, iteration: int, score: float) -> Observation:
        """Record the validation score of the policy at ``iteration``; returns whether it
        is the new best."""
        score = -math.inf if math.isnan(score) else score
        improved = self.best_score is None or self.improves_on(score, self.best_score)
        if improved:
            self.best_iteration, self.best_score = iteration, score
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        observation = Observation(iteration, score, improved)
        self.history.append(observation)
        return observation

    @property
    def should_stop(self) -> bool:
        """True after ``patience`` evaluations in a row without improvement."""
        return self.patience > 0 and self.since_improvement >= self.patience
