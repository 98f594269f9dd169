"""The loopback S3 server the tests and benchmarks use (``scripts/s3_local.py``)."""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from raytrade.scripts.s3_local import CREDENTIALS, MotoServer


@contextmanager
def _listening() -> Iterator[int]:
    """A port held by a listener that never answers."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


@contextmanager
def _answering() -> Iterator[int]:
    """A port held by an HTTP server that answers 200 to everything, as another moto
    server's ``/moto-api/`` does: its answer must not be taken for this server's."""
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("holder", [_listening, _answering], ids=["silent", "http-200"])
def test_moto_server_moves_to_a_fresh_port_when_its_port_is_taken_before_it_binds(
        holder: Callable[[], Any]) -> None:
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
