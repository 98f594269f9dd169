"""The typed bundle manifest: strict reading, exact round trips, old formats refused."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import random_bundle
from raytrade.algos.manifest import (
    BUNDLE_FORMAT,
    MANIFEST,
    BundleManifest,
    PolicyRejectedError,
    manifest_calendar,
    read_bundle,
    verify_bundle,
)
from raytrade.algos.policy import Policy
from raytrade.envs.calendar import ALWAYS
from raytrade.envs.errors import ConfigError
from raytrade.envs.risk import RiskConfig

V1_MANIFEST = Path(__file__).resolve().parent / "fixtures" / "manifest_v1.json"
V2_MANIFEST = Path(__file__).resolve().parent / "fixtures" / "manifest_v2.json"
"""A ``raytrade.policy/2`` manifest as ``export.random_bundle`` wrote it (synthetic_regime,
seed 3, fitted env spec): the old schema the v2 migration reads."""
V3_MANIFEST = Path(__file__).resolve().parent / "fixtures" / "manifest_v3.json"
"""A ``raytrade.policy/3`` manifest as ``export.random_bundle`` wrote it (synthetic_regime,
seed 3, fitted env spec): the old schema the v3 migration reads."""
V4_MANIFEST = Path(__file__).resolve().parent / "fixtures" / "manifest_v4.json"
"""A ``raytrade.policy/4`` manifest as ``export.random_bundle`` writes it (synthetic_regime,
seed 3, fitted env spec; the v3 fixture with its 24/7 calendar): the format's schema,
pinned."""
"""A ``raytrade.policy/1`` manifest as ``export.random_bundle`` wrote it before the typed
manifest (synthetic_regime experiment, seed 3)."""


@functools.lru_cache(maxsize=1)
def _experiment() -> ExperimentConfig:
    """synthetic_regime with non-default rules everywhere a default could hide a loss."""
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    env = dataclasses.replace(exp.env, reward="differential_sharpe", dsr_eta=0.07,
                              drawdown_penalty=2.5, turnover_penalty=0.02,
                              initial_equity=25_000.0, latency_bars=2,
                              risk=dataclasses.replace(exp.env.risk, stop_loss=0.05,
                                                       cooldown_bars=3))
    return dataclasses.replace(exp, env=env)


@functools.lru_cache(maxsize=1)
def _files() -> dict[str, bytes]:
    exp = _experiment()
    return random_bundle(exp, seed=1, spec=exp.fit_env_spec())


def _document() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(_files()[MANIFEST])
    return out


def _with(doc: dict[str, Any]) -> dict[str, bytes]:
    return {**_files(), MANIFEST: json.dumps(doc).encode()}


def test_manifest_round_trip_keeps_every_env_field_and_infinity() -> None:
    exp = _experiment()
    manifest = BundleManifest.from_json(_files()[MANIFEST])
    assert manifest.format == BUNDLE_FORMAT == "raytrade.policy/4"
    assert manifest.env == exp.env  # the complete EnvConfig: reward parameters included
    assert manifest.env.risk.max_notional == math.inf
    assert _document()["env"]["risk"]["max_notional"] == "Infinity"
    again = BundleManifest.from_json(manifest.to_json())
    assert again.to_dict() == manifest.to_dict()
    assert manifest.feature_spec == exp.features
    assert manifest.env_id.id == "raytrade/Trading-v0" and manifest.env_id.version == 0
    assert manifest.package.name == "raytrade"
    # this test runs from a git checkout: the commit is recorded
    assert manifest.package.git_commit is not None and len(manifest.package.git_commit) == 40
    assert manifest.data is not None
    [dataset] = manifest.data.datasets
    assert manifest.data.train == exp.data.train and dataset.train.bars == 21_000
    assert dataset.validation.first_ts > dataset.train.last_ts
    assert manifest.normalizer.fit_end_ts <= dataset.train.last_ts
    assert manifest.training.random_init_seed == 1
    # the policy reads the typed manifest, and only it
    policy = Policy(_files())
    assert policy.manifest.env == exp.env and policy.positions == exp.env.positions


def test_manifest_without_data_is_a_random_policy_with_no_env_spec() -> None:
    files = random_bundle(_experiment(), seed=2)
    manifest = read_bundle(files)
    assert manifest.data is None and manifest.normalizer.fitted_rows == 0
    with pytest.raises(ConfigError, match="never saw data"):
        manifest.env_spec()


@pytest.mark.parametrize(("path", "change", "message"), [
    (("env", "costs", "fee_bps"), "delete", r"env\.costs\.fee_bps: missing"),
    (("env", "dsr_eta"), "delete", r"env\.dsr_eta: missing"),
    (("env", "turnover_penalty"), "delete", r"env\.turnover_penalty: missing"),
    (("env", "risk", "colour"), 1, r"env\.risk\.colour: unknown field"),
    (("data", "datasets"), "delete", r"data\.datasets: missing"),
    (("network", "encoder", "kind"), "delete", r"network\.encoder\.kind: missing"),
    (("env", "window"), "16", r"env\.window: expected an integer"),
    (("env", "risk", "max_notional"), None, r"env\.risk\.max_notional: expected a number"),
    (("training", "iteration"), "delete", r"training\.iteration: missing"),
    (("flavour",), "x", r"flavour: unknown field"),
])
def test_manifest_with_a_missing_unknown_or_mistyped_field_is_refused_by_name(
        path: tuple[str, ...], change: object, message: str) -> None:
    doc = _document()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if change == "delete":
        del node[path[-1]]
    else:
        node[path[-1]] = change
    with pytest.raises(ConfigError, match=message):
        BundleManifest.from_dict(doc)
    with pytest.raises(PolicyRejectedError, match=message):
        Policy(_with(doc))


def test_manifest_that_contradicts_itself_is_refused() -> None:
    doc = _document()
    doc["observation"]["shape"] = [doc["observation"]["shape"][0] + 1]
    with pytest.raises(PolicyRejectedError, match=r"observation\.shape"):
        verify_bundle(_with(doc))
    doc = _document()
    doc["env"]["positions"] = [-1.0, 1.0]
    with pytest.raises(PolicyRejectedError, match=r"network\.n_actions"):
        verify_bundle(_with(doc))
    doc = _document()
    doc["feature_spec"]["rsi_period"] = 15
    with pytest.raises(PolicyRejectedError, match="feature_spec"):
        verify_bundle(_with(doc))


def test_v1_bundle_is_refused_with_how_to_reexport() -> None:
    """A real ``raytrade.policy/1`` manifest: it never recorded the reward parameters, so
    no migration could fill them in truthfully; the reader says how to re-export."""
    text = V1_MANIFEST.read_bytes()
    assert json.loads(text)["format"] == "raytrade.policy/1"
    assert "dsr_eta" not in json.loads(text)["env"]
    with pytest.raises(ConfigError, match="dsr_eta") as info:
        BundleManifest.from_json(text)
    assert "raytrade train --config" in str(info.value) and "--resume" in str(info.value)
    files = {MANIFEST: text, "weights.safetensors": b"\0"}
    with pytest.raises(PolicyRejectedError, match=r"raytrade\.policy/1"):
        Policy(files, 4)


def test_published_format_schema_is_pinned_so_a_field_change_must_bump_the_format(
        ) -> None:
    # Bundles already in stores were written with exactly these fields. Adding, removing
    # or renaming a field of the manifest (an EnvConfig field included) fails here: bump
    # BUNDLE_FORMAT, add the old one to OLD_FORMATS (refuse with how to re-export, or a
    # tested migration), and write this fixture anew.
    text = V4_MANIFEST.read_bytes()
    manifest = BundleManifest.from_json(text)
    assert json.loads(manifest.to_json()) == json.loads(text)
    assert manifest.format == BUNDLE_FORMAT == "raytrade.policy/4"


def test_manifest_v3_is_migrated_with_the_24_7_calendar_it_traded_under() -> None:
    v3 = json.loads(V3_MANIFEST.read_bytes())
    assert "calendar" not in v3["env"]
    manifest = BundleManifest.from_dict(v3)
    assert manifest.format == BUNDLE_FORMAT
    assert manifest.env.calendar == ALWAYS
    # everything else reads exactly as written
    again = manifest.to_dict()
    assert {k: v for k, v in again["env"].items() if k != "calendar"} == v3["env"]
    assert {k: v for k, v in again.items() if k not in ("env", "format")} == \
        {k: v for k, v in v3.items() if k not in ("env", "format")}


def test_manifest_v2_is_migrated_with_the_plain_greedy_rule_it_decided_by() -> None:
    v2 = json.loads(V2_MANIFEST.read_bytes())
    manifest = BundleManifest.from_dict(v2)
    assert manifest.format == BUNDLE_FORMAT
    assert manifest.env.decision.is_plain_greedy and manifest.env.calendar == ALWAYS
    # everything else reads exactly as written
    again = manifest.to_dict()
    assert {k: v for k, v in again["env"].items()
            if k not in ("decision", "calendar")} == v2["env"]
    assert again["training"] == {**v2["training"], "tune": None}
    assert {k: v for k, v in again.items() if k not in ("env", "format", "training")} == \
        {k: v for k, v in v2.items() if k not in ("env", "format", "training")}


def test_manifest_with_a_field_of_another_schema_says_what_to_do() -> None:
    doc = json.loads(V4_MANIFEST.read_bytes())
    doc["env"]["reward_clip"] = 3.0
    with pytest.raises(ConfigError, match=r"env\.reward_clip: unknown field.*re-export"):
        BundleManifest.from_dict(doc)
    del doc["env"]["reward_clip"], doc["env"]["dsr_eta"]
    with pytest.raises(ConfigError, match=r"env\.dsr_eta: missing.*upgrade raytrade"):
        BundleManifest.from_dict(doc)


def test_manifest_json_is_strict_and_keeps_non_finite_floats() -> None:
    exp = dataclasses.replace(_experiment(), env=dataclasses.replace(
        _experiment().env, risk=RiskConfig(max_notional=math.inf)))
    text = random_bundle(exp, seed=0)[MANIFEST]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert BundleManifest.from_json(text).env.risk.max_notional == math.inf


def test_manifest_module_imports_neither_torch_nor_ray() -> None:
    code = ("import sys, raytrade.algos.manifest, raytrade.envs.env_spec; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_manifest_calendar_is_read_for_the_gate_and_dashboard_without_the_bundle() -> None:
    # what the live gate and the dashboard annualize a paper record with
    assert manifest_calendar(json.loads(V3_MANIFEST.read_bytes())) == ALWAYS  # before v4
    doc = json.loads(V4_MANIFEST.read_bytes())
    assert manifest_calendar(doc) == ALWAYS
    doc["env"]["calendar"] = {"kind": "forex", "timezone": "America/New_York",
                              "weekly_open": "Sun 17:00", "weekly_close": "Fri 17:00",
                              "holidays": ["12-25"]}
    assert manifest_calendar(doc).holidays == ("12-25",)
    assert BundleManifest.from_dict(doc).env.calendar == manifest_calendar(doc)
    doc["env"]["calendar"]["weekly_open"] = "Sunday"
    with pytest.raises(ConfigError, match=r"env\.calendar.*weekly_open"):
        manifest_calendar(doc)
    del doc["env"]["calendar"]
    with pytest.raises(ConfigError, match=r"env\.calendar: missing"):
        manifest_calendar(doc)
