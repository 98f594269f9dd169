"""The run store's mirror of a training run (metrics and checkpoints), on a local folder and
on moto's S3 server over HTTP: a resume pulls the newest checkpoint, and a tampered
``checkpoints/latest`` pointer or checkpoint key can never reach outside the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import open_blobstore
from raytrade.algos.storage.run_store import RunMirror
from raytrade.envs.errors import ConfigError

MALICIOUS = ("../../outside", "/etc/passwd", "iter_000001/../../../outside", "..", ".hidden",
             "iter 1", "")


def _local_run(root: Path) -> Path:
    run = root / "run"
    (run / keys.checkpoint_prefix("iter_000002") / "learner").mkdir(parents=True)
    (run / keys.checkpoint_prefix("iter_000002") / "learner" / "state.pkl").write_bytes(b"w")
    (run / keys.TRAIN_METRICS).parent.mkdir(parents=True)
    (run / keys.TRAIN_METRICS).write_text('{"iteration": 2}\n')
    return run


def test_run_mirror_resume_pulls_the_newest_checkpoint_and_metrics(
        store_uri: str, tmp_path: Path) -> None:
    run = _local_run(tmp_path)
    mirror = RunMirror(open_blobstore(store_uri), run)
    mirror.metrics(force=True)
    mirror.checkpoint("iter_000002")
    fresh = tmp_path / "elsewhere"
    assert RunMirror(open_blobstore(store_uri), fresh).pull_latest() == "iter_000002"
    assert (fresh / keys.checkpoint_prefix("iter_000002") / "learner" / "state.pkl"
            ).read_bytes() == b"w"
    assert (fresh / keys.TRAIN_METRICS).read_text() == '{"iteration": 2}\n'


@pytest.mark.parametrize("name", MALICIOUS)
def test_run_mirror_latest_pointing_outside_the_run_is_refused(
        store_uri: str, tmp_path: Path, name: str) -> None:
    blobs = open_blobstore(store_uri)
    blobs.put(keys.LATEST_CHECKPOINT, name.encode())
    with pytest.raises(ConfigError, match=r"checkpoints/latest.*one path component"):
        RunMirror(blobs, tmp_path / "resume").pull_latest()
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("name", MALICIOUS)
def test_run_mirror_local_latest_pointing_outside_the_run_is_refused(
        tmp_path: Path, name: str) -> None:
    run = _local_run(tmp_path)
    (run / keys.LATEST_CHECKPOINT).write_text(name)
    same = RunMirror(open_blobstore(run.as_uri()), run)
    assert same.same
    with pytest.raises(ConfigError, match=r"checkpoints/latest.*one path component"):
        same.pull_latest()


def test_run_mirror_local_checkpoint_linked_outside_the_run_is_refused(tmp_path: Path) -> None:
    run = _local_run(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (run / keys.CHECKPOINTS / "iter_000003").symlink_to(tmp_path / "elsewhere")
    (run / keys.LATEST_CHECKPOINT).write_text("iter_000003")
    with pytest.raises(ConfigError, match="resolves outside"):
        RunMirror(open_blobstore(run.as_uri()), run).pull_latest()


def test_run_mirror_checkpoint_key_escaping_its_folder_is_refused(
        moto_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from raytrade.scripts.s3_local import MotoServer

    assert isinstance(moto_server, MotoServer)
    monkeypatch.setenv("RAYTRADE_S3_ENDPOINT_URL", moto_server.endpoint_url)
    blobs = open_blobstore(f"s3://{moto_server.new_bucket()}/run")
    # a key a hostile writer planted: S3 keys are opaque strings, ".." included
    moto_server.client().put_object(Bucket=blobs.uri.split("/")[2],
                                    Key="run/checkpoints/iter_000001/../../../escape",
                                    Body=b"x")
    blobs.put(keys.LATEST_CHECKPOINT, b"iter_000001")
    with pytest.raises(ConfigError, match="outside checkpoints/iter_000001/"):
        RunMirror(blobs, tmp_path / "resume").pull_latest()
    assert not (tmp_path / "escape").exists()
