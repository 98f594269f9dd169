"""cluster.yaml passes Ray's own cluster-config validation and keeps its security promises."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_passes_rays_validation(cluster: dict) -> None:
    prepared = prepare_config(copy.deepcopy(cluster))  # fills AWS defaults, no cloud call
    validate_config(prepared)


def test_node_types_head_gpu_learners_cpu_rollouts(cluster: dict) -> None:
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] == "head"
    assert "GPU" not in types["head"]["resources"]
    assert types["gpu_learner"]["resources"]["GPU"] >= 1
    assert types["gpu_learner"]["min_workers"] == 0 < types["gpu_learner"]["max_workers"]
    assert "GPU" not in types["cpu_rollout"]["resources"]
    assert types["cpu_rollout"]["max_workers"] > types["gpu_learner"]["max_workers"]


def test_dashboard_local_token_auth_and_no_wide_open_ports(cluster: dict) -> None:
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    for commands in (cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in " ".join(commands)
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    rules = cluster["provider"]["security_group"]["IpPermissions"]
    for rule in rules:
        assert rule["FromPort"] == rule["ToPort"] == 22
        for rng in rule["IpRanges"]:
            assert rng["CidrIp"] != "0.0.0.0/0"
    assert any("pip install -e ~/raytrade" in c for c in cluster["setup_commands"])
