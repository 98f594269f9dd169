"""Bundled real market data: BTCUSDT and ETHUSDT 5-minute bars, 2025-04-03 to 2025-07-02."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from raytrade.envs.errors import DataFormatError

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def sample_path(symbol: str = "BTCUSDT") -> Path:
    """Path of the bundled gzip CSV for ``symbol`` (25,920 five-minute bars, no gaps)."""
    symbol = symbol.upper()
    if symbol not in SYMBOLS:
        raise DataFormatError(symbol, f"no bundled sample; available: {', '.join(SYMBOLS)}")
    name = f"{symbol}_5m_2025-04-03_2025-07-02.csv.gz"
    return Path(str(resources.files("raytrade.envs.sample").joinpath(name)))
