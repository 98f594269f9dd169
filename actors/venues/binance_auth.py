"""Binance API keys: the neutral key handling of ``api_keys.py`` with Binance's defaults.

Environment variables ``RAYTRADE_BINANCE_API_KEY`` and ``RAYTRADE_BINANCE_API_SECRET``
(or ``RAYTRADE_BINANCE_KEYS_FILE`` naming an owner-only JSON/TOML file); the prefix is a
parameter so testnet and mainnet keys can live side by side. The key travels only in the
``X-MBX-APIKEY`` header; the secret signs the query string (``binance_signed.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from raytrade.actors.venues.api_keys import (
    FILE_FIELDS,
    REDACTED,
    ApiKeys,
    RedactionFilter,
    install_redaction,
)
from raytrade.actors.venues.api_keys import load_keys as _load_keys

__all__ = ["DEFAULT_PREFIX", "FILE_FIELDS", "REDACTED", "ApiKeys", "RedactionFilter",
           "install_redaction", "load_keys"]

DEFAULT_PREFIX = "RAYTRADE_BINANCE"
"""Environment variables ``<prefix>_API_KEY``, ``<prefix>_API_SECRET``, ``<prefix>_KEYS_FILE``."""


def load_keys(*, prefix: str = DEFAULT_PREFIX, path: Path | str | None = None,
              environ: Mapping[str, str] | None = None) -> ApiKeys:
    """Binance keys (``api_keys.load_keys``; errors name Binance and the variable or file,
    never a value)."""
    return _load_keys(venue="Binance", prefix=prefix, path=path, environ=environ)
