"""Whether a run's best policy goes to ``candidate``: it must beat flat after costs on
validation (when the experiment requires it) and beat the policy now on ``candidate`` by
the experiment's selection metric, both read from validation evaluations only.

The current candidate is judged by the evaluation its own manifest carries, scored the
same way (``selection.score``, with the candidate's own starting equity). Scores compare
only over the same bars: when the candidate trained on other data or splits the decision
says so, compares anyway if its validation bars are the same as ours (same datasets, same
first and last bar), and otherwise publishes, because a score on other bars is no evidence
against this run's policy (and the newest data is what the operator asked for). A
candidate with no readable manifest or no validation evaluation is replaced likewise.
With ``[selection] min_evidence_t`` the policy must also beat flat by that many standard
errors of its per-decision validation returns (``evidence_gate``; the same rules decide
what the walk-forward and the learning benchmark count as deployed, ``deployable``). The
decision, with both scores, is written by the training driver to
``metrics/selection.jsonl`` and shown in its progress output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from raytrade.algos.experiment import SelectionConfig
from raytrade.algos.manifest import BundleManifest, DataInfo
from raytrade.algos.selection import beats_flat, evidence, score, significant
from raytrade.algos.storage.policy_store import PolicyStore, version_name
from raytrade.envs.errors import RaytradeError


@dataclass(frozen=True)
class PublishDecision:
    """One publication opportunity: what was (not) published and why. Scores in the units
    of ``metric`` (``selection.py``); None where there was nothing to score."""

    iteration: int
    """Training iteration at which the decision was taken."""
    metric: str
    best_iteration: int | None
    """Iteration of the run's best validation policy (the one that would be published)."""
    best_score: float | None
    beats_flat: bool | None
    """Whether the best policy ended above flat after costs on every validation dataset."""
    candidate_version: int | None
    """The version on ``candidate`` when the decision was taken."""
    candidate_score: float | None
    publish: bool
    reason: str
    version: int | None = None
    """The version published (None: nothing was)."""

    def to_record(self) -> dict[str, Any]:
        """The ``metrics/selection.jsonl`` line (non-finite scores as null)."""
        out = asdict(self)
        for key in ("best_score", "candidate_score"):
            value = out[key]
            if value is not None and not math.isfinite(value):
                out[key] = None
        return {"kind": "publication", **out}

    def line(self) -> str:
        """The decision for the progress output."""
        head = f"published {version_name(self.version)}" if self.version is not None \
            else "not published"
        return f"selection @ iter {self.iteration}: {head}: {self.reason}"


def excess_by_dataset(evaluation: Mapping[str, Any], initial_equity: float
                      ) -> dict[str, float]:
    """Per dataset of a validation record, the greedy policy's log growth minus flat's
    (after costs; > 0 beat flat)."""
    return {name: score({"split": evaluation.get("split"), "datasets": {name: per}},
                        "excess_log_growth", initial_equity)
            for name, per in (evaluation.get("datasets") or {}).items()}


def describe_excess(evaluation: Mapping[str, Any], initial_equity: float) -> str:
    """``"ETHUSDT -1.23 %, BTCUSDT +0.40 %"``: excess log growth over flat per dataset."""
    return ", ".join(f"{name} {100 * value:+.2f} %" for name, value in
                     excess_by_dataset(evaluation, initial_equity).items())


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


def validation_bars(data: DataInfo | None) -> dict[str, tuple[int, int, int]] | None:
    """Per dataset the validation bars (first and last open time, count), or None."""
    if data is None:
        return None
    return {d.name: (d.validation.first_ts, d.validation.last_ts, d.validation.bars)
            for d in data.datasets}


def decide(store: PolicyStore, *, iteration: int, metric: str, min_improvement: float,
           require_beat_flat: bool, best_iteration: int | None,
           best_evaluation: Mapping[str, Any] | None, initial_equity: float,
           data: DataInfo, published: Mapping[int, int],
           min_evidence_t: float = 0.0) -> PublishDecision:
    """Decide whether the best policy (``best_evaluation``: its validation record, taken
    at ``best_iteration``) goes to ``candidate`` (module docstring). ``published`` maps
    iterations of this run already published to their versions; ``data`` is what this
    run trains and validates on. With ``require_beat_flat`` and ``min_evidence_t > 0`` the
    policy must also beat flat by that many standard errors (``selection.significant``)."""

    def out(publish: bool, reason: str, best: float | None = None,
            flat: bool | None = None, version: int | None = None,
            theirs: float | None = None) -> PublishDecision:
        return PublishDecision(iteration, metric, best_iteration, best, flat, version,
                               theirs, publish, reason)

    if best_evaluation is None or best_iteration is None:
        return out(False, "no validation evaluation yet")
    ours = score(best_evaluation, metric, initial_equity)
    flat = beats_flat(best_evaluation, initial_equity)
    pointer = store.channel("candidate")
    current = pointer.version if pointer else None
    if current is not None and published.get(best_iteration) == current:
        return out(False, f"the best policy (iteration {best_iteration}, {metric} "
                   f"{_fmt(ours)}) is already the candidate", ours, flat, current)
    passed, why, rule = evidence_gate(best_evaluation, require_beat_flat, min_evidence_t,
                                      initial_equity)
    if not passed:
        return out(False, f"the best policy (iteration {best_iteration}) {why}; "
                   f"[selection] {rule}", ours, flat, current)
    mine = f"iteration {best_iteration} {metric} {_fmt(ours)}"
    if current is None:
        return out(True, f"{mine}; the candidate channel is empty", ours, flat)
    name = version_name(current)
    try:
        manifest = BundleManifest.from_dict(store.manifest(current))
    except RaytradeError as exc:
        return out(True, f"{mine}; the current candidate {name} has no readable manifest "
                   f"({exc}), so it is replaced", ours, flat, current)
    evaluation = manifest.evaluation
    if not isinstance(evaluation, dict) or evaluation.get("split") != "validation" \
            or not evaluation.get("datasets"):
        return out(True, f"{mine}; the current candidate {name} carries no validation "
                   "evaluation to compare with", ours, flat, current)
    note = ""
    if manifest.data != data:
        if validation_bars(manifest.data) != validation_bars(data):
            return out(True, f"{mine}; the current candidate {name} was trained on "
                       "different data/splits and validated on other bars, so the scores "
                       "do not compare: the policy of this run's data replaces it",
                       ours, flat, current)
        note = (f" ({name} was trained on different data/splits but validated on the same "
                "bars)")
    theirs = score(evaluation, metric, manifest.env.initial_equity)
    versus = f"{mine} vs {name} {_fmt(theirs)}{note}"
    if ours > theirs + min_improvement:
        return out(True, f"{versus}: better", ours, flat, current, theirs)
    margin = f" by more than {min_improvement:g}" if min_improvement else ""
    return out(False, f"{versus}: does not beat the candidate{margin}", ours, flat,
               current, theirs)


def evidence_gate(evaluation: Mapping[str, Any], require_beat_flat: bool,
                  min_evidence_t: float, initial_equity: float) -> tuple[bool, str, str]:
    """The publication gate's evidence rules on a validation record: with
    ``require_beat_flat`` the greedy policy must end above flat after costs on every
    dataset (``selection.beats_flat``) and, with ``min_evidence_t > 0``, its returns be
    that many standard errors above zero (``selection.significant``). Returns (passed,
    why, the ``[selection]`` field that decided)."""
    if not require_beat_flat:
        return True, "does not need to beat flat", "require_beat_flat"
    excess = describe_excess(evaluation, initial_equity)
    if not beats_flat(evaluation, initial_equity):
        return False, ("does not beat flat after costs on validation (excess log growth "
                       f"{excess})"), "require_beat_flat"
    if not significant(evaluation, min_evidence_t):
        shown = ", ".join(f"{name} {'-' if t is None else f'{t:.2f}'}"
                          for name, t in evidence(evaluation).items())
        return False, (f"beats flat on validation (excess log growth {excess}), but not by "
                       f"{min_evidence_t:g} standard errors (t {shown}): too little "
                       "evidence of an edge"), "min_evidence_t"
    return True, f"beats flat on validation (excess log growth {excess})", "require_beat_flat"


def deployable(evaluation: Mapping[str, Any] | None, selection: SelectionConfig,
               initial_equity: float) -> tuple[bool, str]:
    """Whether a policy with this validation record passes the publication gate's evidence
    rules (:func:`evidence_gate` with the experiment's ``[selection]``; the comparison with
    a current candidate aside), and why: what the walk-forward and the learning benchmark
    count as "deployed"."""
    if not isinstance(evaluation, Mapping) or evaluation.get("split") != "validation":
        return (not selection.require_beat_flat), "no validation evaluation"
    passed, why, _ = evidence_gate(evaluation, selection.require_beat_flat,
                                   selection.min_evidence_t, initial_equity)
    return passed, why
