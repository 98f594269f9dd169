"""Shipped experiment files (TOML): the bundled BTC/ETH data and the synthetic market."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def experiment_path(name: str) -> Path:
    """Path of a shipped experiment, e.g. ``experiment_path("eth_btc_5m")``."""
    return Path(str(resources.files("raytrade.algos.experiments").joinpath(f"{name}.toml")))
