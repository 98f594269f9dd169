"""The loopback S3 server the tests and benchmarks use (``scripts/s3_local.py``)."""

from __future__ import annotations

import socket

import boto3
from raytrade.scripts.s3_local import MotoServer


def test_moto_server_moves_to_a_fresh_port_when_its_port_is_taken_before_it_binds() -> None:
    """The port is free when chosen and can be taken before moto binds it (other tests'
    servers and Ray bind ephemeral ports all the time): moto then exits, and the server is
    started again on a fresh port instead of failing the test that needed S3."""
    server = MotoServer()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        held = taken.getsockname()[1]
        server.port = held  # as if another process bound it after free_port()
        server.endpoint_url = f"http://127.0.0.1:{held}"
        with server:
            assert server.port != held
            assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
            bucket = server.new_bucket()
            s3 = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1")
            s3.put_object(Bucket=bucket, Key="k", Body=b"v")
            assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
