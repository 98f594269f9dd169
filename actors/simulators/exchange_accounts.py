"""Accounts of the loopback exchange: one per API key, with the secret that signs its
requests, its spot balances and its USD-M futures wallet (USDT).

The accounts file (``raytrade exchange sim --accounts FILE``) is a JSON list::

    [{"key": "sim-key-1", "secret": "sim-secret-1",
      "spot": {"USDT": "10000", "BTC": "0.5"}, "futures_wallet": "10000"}]

Amounts may be JSON numbers or decimal strings. The file holds secrets, so it must be
readable by its owner only (``chmod 600``): one readable by group or others is refused.
Secrets never appear in a ``repr``, a log line or ``/sim/state``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from raytrade.envs.errors import ConfigError

_KEY = re.compile(r"[A-Za-z0-9_\-]{1,128}")


@dataclass(frozen=True)
class AccountConfig:
    """One account at the start (module docstring)."""

    key: str
    """The API key (``X-MBX-APIKEY``)."""
    secret: str = field(repr=False)
    """The HMAC-SHA256 secret; never shown."""
    spot: Mapping[str, Decimal] = field(default_factory=dict)
    """Spot balances by asset (free; nothing is locked at the start)."""
    futures_wallet: Decimal = Decimal(0)
    """USD-M futures wallet balance (USDT)."""

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.key):
            raise ConfigError(f"account key {self.key!r}: 1-128 letters, digits, '_' or '-'")
        if not self.secret:
            raise ConfigError(f"account {self.key}: 'secret' is empty")
        for asset, amount in self.spot.items():
            if amount < 0:
                raise ConfigError(f"account {self.key}: spot balance of {asset} is negative")
        if self.futures_wallet < 0:
            raise ConfigError(f"account {self.key}: 'futures_wallet' is negative")


def parse_decimal(value: object, where: str) -> Decimal:
    """A finite decimal from a JSON number or decimal string; ``ConfigError`` naming
    ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number or a decimal string, got {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: {value!r} is not a number") from exc
    if not d.is_finite():
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return d


def parse_accounts(raw: object, source: str) -> tuple[AccountConfig, ...]:
    """Accounts from the file's JSON (``source`` names it in errors)."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: expected a non-empty JSON list of accounts")
    out: list[AccountConfig] = []
    for i, item in enumerate(raw):
        where = f"{source}: accounts[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: an account is a JSON object")
        unknown = sorted(set(item) - {"key", "secret", "spot", "futures_wallet"})
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known: key, secret, "
                              "spot, futures_wallet")
        for name in ("key", "secret"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise ConfigError(f"{where}: {name!r} must be a non-empty string")
        spot = item.get("spot", {})
        if not isinstance(spot, dict):
            raise ConfigError(f"{where}: 'spot' must be an object of asset: amount")
        balances = {str(a).upper(): parse_decimal(v, f"{where}: spot.{a}") for a, v in spot.items()}
        wallet = parse_decimal(item.get("futures_wallet", 0), f"{where}: 'futures_wallet'")
        try:
            out.append(AccountConfig(key=item["key"], secret=item["secret"], spot=balances,
                                     futures_wallet=wallet))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    keys = [a.key for a in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError(f"{source}: API key(s) {dupes} appear more than once")
    return tuple(out)


def load_accounts(path: str | Path) -> tuple[AccountConfig, ...]:
    """Accounts from a JSON file readable by its owner only (module docstring)."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the accounts file: {exc}") from exc
    if mode & 0o077:
        raise ConfigError(f"{p}: holds API secrets but is readable by group or others "
                          f"(mode {stat.filemode(mode)}); run: chmod 600 {p}")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not JSON: {exc}") from exc
    return parse_accounts(raw, str(p))
