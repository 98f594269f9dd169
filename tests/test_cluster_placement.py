"""cluster.yaml's node types on a local fake-multinode autoscaler: the learner lands on a
GPU-typed node and the env runners on CPU rollout nodes, launched on demand.

Ray's ``fake_multinode`` provider starts each "node" as extra raylet processes on this
machine with the resources of its node type (resources only: the fake GPU is a logical
resource, so torch trains on CPU there). The head and worker types are read from
``cluster.yaml``; only the object store is made small to fit the test machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from raytrade.algos.dqn_config import build_dqn_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.scripts.s3_local import free_port

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"
FAKE_HEAD_ID = "f" * 51 + "00000"  # the node id the fake provider gives the head
STORE_BYTES = 100 * 1024**2


def fake_cluster_config(gcs_address: str) -> dict[str, Any]:
    """The autoscaler config of a fake cluster with cluster.yaml's node types."""
    cluster = yaml.safe_load(CLUSTER.read_text())
    types = cluster["available_node_types"]
    head = cluster["head_node_type"]
    node_types: dict[str, Any] = {"ray.head.default": {
        "resources": dict(types[head]["resources"]), "node_config": {}, "max_workers": 0}}
    for name, node in types.items():
        if name != head:
            node_types[name] = {
                "resources": {**node["resources"], "object_store_memory": STORE_BYTES},
                "node_config": {}, "min_workers": node.get("min_workers", 0),
                "max_workers": node["max_workers"]}
    return {
        "cluster_name": "raytrade-fake", "max_workers": cluster["max_workers"],
        "upscaling_speed": cluster["upscaling_speed"], "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        "available_node_types": node_types, "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": []}


def _ray_cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], env=env,
                   check=True, capture_output=True, timeout=120)


@pytest.fixture()
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fake autoscaling cluster on loopback (own port and temp dir); yields its address."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="rtfk-", dir="/tmp"))
    (tmp / "autoscaler.json").write_text(json.dumps(fake_cluster_config(address)))
    # a throwaway loopback cluster: no token (cluster.yaml turns it on for real clusters)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
               RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_ID, RAY_AUTH_MODE="disabled")
    head_cpus = str(int(yaml.safe_load(CLUSTER.read_text())["available_node_types"]
                        ["head"]["resources"]["CPU"]))
    _ray_cli("start", "--head", f"--port={port}", f"--temp-dir={tmp / 'r'}",
             f"--num-cpus={head_cpus}", f"--object-store-memory={STORE_BYTES}",
             f"--autoscaling-config={tmp / 'autoscaler.json'}", "--include-dashboard=false",
             "--disable-usage-stats", env=env)
    try:
        yield address
    finally:
        ray.shutdown()
        stop_processes_mentioning(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def stop_processes_mentioning(marker: str, grace_s: float = 10.0) -> None:
    """Stop this cluster only (``ray stop`` would stop every Ray on the machine): the
    GCS, raylets and monitor carry the cluster's temp dir on their command line; their
    descendants (agents and workers, which rename themselves) go with them."""
    def cluster_pids() -> set[int]:
        parent: dict[int, int] = {}
        roots: set[int] = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                parent[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                if marker.encode() in (proc / "cmdline").read_bytes():
                    roots.add(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
        found = set(roots)
        grew = True
        while grew:
            children = {pid for pid, ppid in parent.items() if ppid in found} - found
            found |= children
            grew = bool(children)
        return found

    pids = cluster_pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and
                                                  "Z" not in _state(p) for p in pids):
            time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def learner_resources(config: Any) -> dict[str, float]:
    """The resources RLlib 2.60 asks for per remote learner (``LearnerGroup.__init__``):
    no CPU when it holds a GPU and ``num_cpus_per_learner`` is "auto"."""
    cpus = config.num_cpus_per_learner
    if cpus == "auto":
        cpus = 1 if config.num_gpus_per_learner == 0 else 0
    return {"CPU": cpus, "GPU": max(0, config.num_gpus_per_learner),
            **(config.custom_resources_per_learner or {})}


@pytest.mark.slow
def test_learner_on_gpu_node_and_runners_on_rollout_nodes(fake_cluster: str) -> None:
    # Ray keeps a process's auth mode once it has connected somewhere; the fake cluster
    # runs without a token, so the placement runs in its own (spawned) process
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        placed = pool.submit(place_cluster_experiment, fake_cluster).result(timeout=400)
    nodes = placed["nodes"]
    learner_id, runner_nodes = placed["learner"], placed["runners"]
    assert nodes[learner_id].get("GPU", 0) >= 1  # a gpu_learner node, launched on demand
    assert len(runner_nodes) == 2
    for node in runner_nodes:  # cpu_rollout nodes, never the head
        assert nodes[node].get("rollout", 0) >= 1 and "GPU" not in nodes[node]
    assert FAKE_HEAD_ID not in {learner_id, *runner_nodes}


def place_cluster_experiment(address: str) -> dict[str, Any]:
    """In a fresh process: the nodes where the cluster experiment's learner and env
    runners run, and every node's resources."""
    exp = ExperimentConfig.load(experiment_path("eth_btc_5m_cluster"))
    config = build_dqn_config(exp)
    assert config.num_learners == 1 and config.num_gpus_per_learner >= 1
    assert config.custom_resources_per_env_runner == {"rollout": 1}
    ray.init(address=address, log_to_driver=False)

    # The learner: a fake GPU has no CUDA, so a real torch learner cannot start on it;
    # a task asking for exactly the learner's resources shows where it would run.
    @ray.remote
    def node_of_task() -> str:
        return str(ray.get_runtime_context().get_node_id())

    learner_node = node_of_task.options(
        num_cpus=learner_resources(config)["CPU"], num_gpus=config.num_gpus_per_learner,
        resources=dict(config.custom_resources_per_learner)).remote()

    # The env runners: real RLlib runners of the cluster experiment (2 of them, on a small
    # market so the test is quick), the learner local to the driver.
    small = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(
        small,
        data=dataclasses.replace(small.data, sources=("synthetic:regime:seed=1:n=6000",)),
        dqn=dataclasses.replace(small.dqn, learning_starts=64, train_batch_size=32),
        resources=dataclasses.replace(exp.resources, num_env_runners=2, num_learners=0,
                                      num_gpus_per_learner=0.0, num_envs_per_env_runner=2,
                                      rollout_fragment_length=16))
    algo = build_dqn_config(exp).reporting(min_sample_timesteps_per_iteration=64) \
        .build_algo()  # waits while the autoscaler launches a rollout node
    try:
        assert algo.train()["num_env_steps_sampled_lifetime"] > 0
        runner_nodes = algo.env_runner_group.foreach_env_runner(
            lambda _: str(ray.get_runtime_context().get_node_id()), local_env_runner=False)
    finally:
        algo.stop()
    learner_id = ray.get(learner_node, timeout=120)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    ray.shutdown()
    return {"learner": learner_id, "runners": runner_nodes, "nodes": nodes}
