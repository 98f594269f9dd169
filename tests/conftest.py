"""Shared fixtures: real bundled bars, and helpers to write deliberately broken copies."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.io import load_bars
from raytrade.envs.sample import sample_path
from raytrade.scripts.s3_local import MotoServer


@pytest.fixture(scope="session")
def btc() -> BarTable:
    """Real BTCUSDT 5m bars (bundled sample, 25,920 bars)."""
    return load_bars(sample_path("BTCUSDT"))


@pytest.fixture(scope="session")
def eth() -> BarTable:
    """Real ETHUSDT 5m bars (bundled sample, 25,920 bars)."""
    return load_bars(sample_path("ETHUSDT"))


@pytest.fixture(scope="session")
def btc_lines() -> list[str]:
    """The bundled BTC CSV as text lines (header first)."""
    return gzip.decompress(sample_path("BTCUSDT").read_bytes()).decode().splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write CSV lines to ``path`` and return it."""
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def local_ray() -> Iterator[None]:
    """A private local Ray (never joins a running cluster), shut down afterwards."""
    from raytrade.algos.train import ray_session

    with ray_session(None):
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's standalone S3 server on loopback, shared by the session."""
    with MotoServer() as server:
        yield server


@pytest.fixture(params=["file", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URI on each backend: a local folder, and a bucket on moto's server
    (its endpoint passed through RAYTRADE_S3_ENDPOINT_URL, as a user would)."""
    if request.param == "file":
        return (tmp_path / "store").as_uri()
    server: MotoServer = request.getfixturevalue("moto_server")
    mp = request.getfixturevalue("monkeypatch")
    mp.setenv("RAYTRADE_S3_ENDPOINT_URL", server.endpoint_url)
    return f"s3://{server.new_bucket()}/runs/x"
