"""Promotion gates: a policy moves to ``paper`` on evaluation evidence and to ``live`` only
on paper-trading evidence read from the store.

The paper gate reads the validation evaluation in the candidate's manifest and, by default
(``PaperLimits``), passes only a policy that beat the flat baseline after costs on every
validation dataset: a policy that loses to staying out is not worth paper-trading.

Paper-trading record, written by the paper actors under ``paper/<actor>/``:

- ``equity.jsonl``: one JSON object per closed bar, ``{"ts": open time ms UTC,
  "equity": quote currency, "position": target position, "version": policy version}``;
- ``health.json``: ``{"unresolved_faults": ["...", ...]}`` (feed down, halts, rejects not
  yet cleared).

The live gate takes the bars each actor traded with the version now on ``paper`` and
computes the shared metrics (``envs/metrics.py``) per actor; it passes only if at least
one actor traded it, every such actor traded at least ``min_bars`` bars with Sharpe at or
above ``min_sharpe`` and maximum drawdown at most ``max_drawdown``, and no actor reports
an unresolved fault. ``force`` skips the gate; the move is then logged as ``force`` with
the verdict it overrode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from raytrade.algos.manifest import PolicyRejectedError, manifest_calendar, read_bundle
from raytrade.algos.publish_decision import excess_by_dataset
from raytrade.algos.selection import evidence
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import NotFoundError
from raytrade.algos.storage.policy_store import ChannelPointer, PolicyStore, version_name
from raytrade.envs.errors import ConfigError
from raytrade.envs.metrics import interval_of, performance


@dataclass(frozen=True)
class GateLimits:
    """Live-gate thresholds. Units: bars of the paper actors' interval; Sharpe annualized
    from that interval; drawdown as a fraction of the peak (0.2 = 20%)."""

    min_bars: int = 288
    min_sharpe: float = 0.0
    max_drawdown: float = 0.2

    def __post_init__(self) -> None:
        if self.min_bars < 2 or not 0 < self.max_drawdown <= 1:
            raise ConfigError("gate needs min_bars >= 2 and 0 < max_drawdown <= 1")


@dataclass(frozen=True)
class PaperLimits:
    """Paper-gate rule. ``require_beat_flat`` (default): the candidate's greedy policy must
    have ended above the flat baseline after costs (fees, slippage, borrow) on every
    validation dataset; false accepts any finite validation result."""

    require_beat_flat: bool = True
    min_evidence_t: float = 0.0
    """With ``require_beat_flat``, also require the greedy policy's validation ``t_stat``
    (its per-decision returns in standard errors, ``envs/metrics.py``) to be at least this
    on every dataset: the publication rule of ``[selection] min_evidence_t``, for a
    candidate published by hand (0: off; a bundle without ``t_stat`` then fails)."""


@dataclass
class Verdict:
    """The gate's answer, with the evidence per actor."""

    passed: bool
    version: int | None
    reasons: list[str] = field(default_factory=list)
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        head = "passed" if self.passed else "failed"
        return f"gate {head}" + (": " + "; ".join(self.reasons) if self.reasons else "")


def paper_actors(store: PolicyStore) -> list[str]:
    """Actors that wrote a paper-trading record."""
    return sorted({k.split("/")[1] for k in store.blobs.list(keys.PAPER)
                   if len(k.split("/")) == 3})


def read_equity(store: PolicyStore, actor: str) -> list[dict[str, Any]]:
    """The actor's equity rows; ``ConfigError`` naming the line if one is malformed."""
    try:
        text = store.blobs.get(keys.paper_key(actor, keys.EQUITY)).data.decode()
    except NotFoundError:
        return []
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"ts": int(row["ts"]), "equity": float(row["equity"]),
                         "position": float(row["position"]), "version": int(row["version"])})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{store.uri}/{keys.paper_key(actor, keys.EQUITY)} line {n}: "
                              f"{exc}") from exc
    return rows


def unresolved_faults(store: PolicyStore, actor: str) -> list[str]:
    """The actor's unresolved faults (none if it wrote no health file)."""
    try:
        data = json.loads(store.blobs.get(keys.paper_key(actor, keys.HEALTH)).data)
    except NotFoundError:
        return []
    except json.JSONDecodeError as exc:
        return [f"health.json is malformed: {exc}"]
    return [str(f) for f in data.get("unresolved_faults", [])]


def live_gate(store: PolicyStore, limits: GateLimits) -> Verdict:
    """Judge the version on ``paper`` by its paper-trading record (module docstring)."""
    pointer = store.channel("paper")
    if pointer is None:
        return Verdict(False, None, ["the paper channel is empty"])
    version = pointer.version
    verdict = Verdict(True, version)
    for actor in paper_actors(store):
        faults = unresolved_faults(store, actor)
        if faults:
            verdict.reasons.append(f"{actor}: unresolved faults {faults}")
        rows = [r for r in read_equity(store, actor) if r["version"] == version]
        if not rows:
            continue
        ts = np.array([r["ts"] for r in rows], dtype=np.int64)
        interval = interval_of(ts)
        stats: dict[str, Any] = {"bars": len(rows)}
        if len(rows) >= 2 and interval > 0:
            # annualized with the market's calendar, as the policy's manifest records it
            perf = performance(np.array([r["equity"] for r in rows]),
                               np.array([r["position"] for r in rows]), interval,
                               calendar=manifest_calendar(store.manifest(version)))
            # the shared metric is signed (-0.25 = 25% below the peak); limits are sizes
            stats.update(sharpe=perf.sharpe, max_drawdown=abs(perf.max_drawdown),
                         total_return=perf.total_return)
        verdict.actors[actor] = stats
        if len(rows) < limits.min_bars:
            verdict.reasons.append(f"{actor}: {len(rows)} bars on {version_name(version)}, "
                                   f"need {limits.min_bars}")
            continue
        if not stats.get("sharpe", -np.inf) >= limits.min_sharpe:
            verdict.reasons.append(f"{actor}: Sharpe {stats.get('sharpe', float('nan')):.2f}"
                                   f" < {limits.min_sharpe}")
        if not stats.get("max_drawdown", np.inf) <= limits.max_drawdown:
            verdict.reasons.append(f"{actor}: max drawdown "
                                   f"{stats.get('max_drawdown', float('nan')):.1%} > "
                                   f"{limits.max_drawdown:.1%}")
    if not verdict.actors:
        verdict.reasons.append(f"no paper-trading record for {version_name(version)}")
    verdict.passed = not verdict.reasons
    return verdict


def paper_gate(store: PolicyStore, version: int,
               limits: PaperLimits | None = None) -> Verdict:
    """Evaluation evidence for ``paper``: the bundle verifies (typed manifest, checksums:
    what every executor will check before serving it), its manifest carries a validation
    evaluation with a finite greedy Sharpe per dataset (what the dashboard and operators
    judge it by), and, with ``limits.require_beat_flat`` (the default), the greedy policy
    ended above the flat baseline after costs on every validation dataset
    (``selection.beats_flat``, at the manifest's starting equity). The evidence per
    dataset (Sharpe, final equity, excess log growth over flat) is in ``actors``."""
    limits = limits or PaperLimits()
    verdict = Verdict(True, version)
    try:
        manifest = read_bundle(store.files(version), version)
    except PolicyRejectedError as exc:
        verdict.reasons.append(f"{version_name(version)} does not verify: {exc.reason}")
        verdict.passed = False
        return verdict
    evaluation = manifest.evaluation
    if not isinstance(evaluation, dict) or not evaluation.get("datasets"):
        verdict.reasons.append(f"{version_name(version)} has no validation evaluation")
    elif evaluation.get("split") != "validation":
        verdict.reasons.append(f"{version_name(version)}'s evaluation is of the "
                               f"{evaluation.get('split')!r} split, not validation")
    else:
        initial = manifest.env.initial_equity
        for name, per in evaluation["datasets"].items():
            sharpe = per.get("greedy", {}).get("sharpe")
            stats: dict[str, Any] = {"greedy_sharpe": sharpe, "greedy_final_equity":
                                     per.get("greedy", {}).get("final_equity")}
            verdict.actors[name] = stats
            if not isinstance(sharpe, int | float) or not np.isfinite(sharpe):
                verdict.reasons.append(f"{name}: no finite validation Sharpe")
            if not limits.require_beat_flat:
                continue
            try:
                excess = excess_by_dataset({"split": "validation", "datasets": {name: per}},
                                           initial)[name]
            except (KeyError, TypeError, ValueError) as exc:
                verdict.reasons.append(f"{name}: no greedy and flat final equity to compare "
                                       f"({exc!r})")
                continue
            stats.update(flat_final_equity=per["flat"]["final_equity"],
                         excess_log_growth=excess)
            if not excess > 0:
                verdict.reasons.append(
                    f"{name}: does not beat flat after costs on validation (greedy "
                    f"{float(per['greedy']['final_equity']):,.2f} vs flat "
                    f"{float(per['flat']['final_equity']):,.2f}, excess log growth "
                    f"{100 * excess:+.2f} %)")
            elif limits.min_evidence_t > 0:
                t = evidence({"split": "validation", "datasets": {name: per}})[name]
                stats["greedy_t_stat"] = t
                if t is None or t < limits.min_evidence_t:
                    verdict.reasons.append(
                        f"{name}: beats flat on validation, but its returns are "
                        f"{'not measured' if t is None else f'{t:.2f}'} standard errors "
                        f"above zero, fewer than {limits.min_evidence_t:g}")
    verdict.passed = not verdict.reasons
    return verdict


def promote(store: PolicyStore, channel: str, *, reason: str, version: int | None = None,
            limits: GateLimits | None = None, force: bool = False,
            paper_limits: PaperLimits | None = None
            ) -> tuple[Verdict, ChannelPointer | None]:
    """Move ``candidate -> paper`` or ``paper -> live`` if the gate passes (or ``force``).

    ``version`` defaults to the source channel's. Returns the verdict and the new pointer
    (None when the gate failed and nothing moved).
    """
    if channel == "paper":
        source = store.channel("candidate")
        target = version if version is not None else (source.version if source else None)
        if target is None:
            raise ConfigError("nothing to promote: the candidate channel is empty")
        verdict = paper_gate(store, target, paper_limits)
    elif channel == "live":
        verdict = live_gate(store, limits or GateLimits())
        if version is not None and version != verdict.version:
            verdict = Verdict(False, version, [f"{version_name(version)} is not the version "
                                               "on paper; the live gate judges only that"])
        target = verdict.version
        if target is None:
            if not force or version is None:
                raise ConfigError("nothing to promote: the paper channel is empty")
            target = version
    else:
        raise ConfigError(f"promote targets paper or live, not {channel!r}")
    if not verdict.passed and not force:
        return verdict, None
    kind = "promote" if verdict.passed else "force"
    note = reason if verdict.passed else f"{reason} [forced past: {verdict.summary()}]"
    return verdict, store.move(channel, target, kind=kind, reason=note)
