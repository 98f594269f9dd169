"""The loopback S3 server the tests and benchmarks use (``scripts/s3_local.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3
import pytest
from raytrade.scripts.s3_local import CREDENTIALS, MotoServer

from tests.port_holders import HealthyServer, SilentListener


@pytest.mark.parametrize("holder", [SilentListener, HealthyServer],
                         ids=["silent", "http-200"])
def test_moto_server_moves_to_a_fresh_port_when_its_port_is_taken_before_it_binds(
        holder: type[SilentListener | HealthyServer]) -> None:
    """The port is free when chosen and can be taken before moto binds it (other tests'
    servers and Ray bind ephemeral ports all the time): moto then exits, and the server is
    started again on a fresh port instead of failing the test that needed S3."""
    server = MotoServer()
    with holder() as held:
        server.port = held  # as if another process bound it after free_port()
        server.endpoint_url = f"http://127.0.0.1:{held}"
        with server:
            assert server.port != held
            assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
            bucket = server.new_bucket()
            s3 = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1")
            s3.put_object(Bucket=bucket, Key="k", Body=b"v")
            assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_moto_server_that_fails_otherwise_is_not_retried_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    starts = tmp_path / "starts"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho x >> '{starts}'\n"
                    "echo 'No module named moto.server' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    server = MotoServer(startup_timeout_s=10)
    before = {k: os.environ.get(k) for k in CREDENTIALS}
    with pytest.raises(RuntimeError, match=r"moto server exited on .*No module named moto"):
        server.start()
    assert starts.read_text().count("x") == 1
    assert server._proc is None  # stopped
    assert {k: os.environ.get(k) for k in CREDENTIALS} == before  # credentials restored
