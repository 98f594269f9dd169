"""The DWX venue's config file (``--venue-config``, TOML): how each MetaTrader symbol is
traded, validated before anything starts.

MetaTrader trades forex in *lots*; raytrade's orders are in base units (``execution.py``).
The conversion and the broker's lot rules are not in the EA's files, so they are
configured, per symbol::

    [server]
    utc_offset_hours = 2        # the broker's server time minus UTC (bar and order times)

    [symbols.EURUSD]
    contract_size = 100000      # base units (EUR) per lot
    pip_size = 0.0001           # price of one pip (quote currency)
    pip_value = 10.0            # account currency per pip per lot
    tick_size = 0.00001         # price step (the symbol's point); default pip_size / 10
    min_lot = 0.01
    lot_step = 0.01
    max_lot = 50.0
    magic = 7001                # marks raytrade's tickets on this symbol (an integer > 0)
    # base = "EUR"; quote = "USD"   (default: the symbol's two 3-letter halves)

A field that is missing, of the wrong type or out of range is a ``ConfigError`` naming the
file, the field and the rule; ``min_lot`` and ``lot_step`` must be multiples of 0.01 (the EA
rounds every lot size to 2 decimals: a 0.006-lot order would open 0.01 lots).
``SymbolSpec.filters`` gives the order side's ``SymbolFilters`` in base units (step =
``lot_step * contract_size`` ...).
``check_tick_value`` cross-checks a symbol against what the EA reports: its
``tick_value`` (account currency per point per lot) must equal
``pip_value * tick_size / pip_size`` within ``TICK_VALUE_TOLERANCE`` (exactly, up to the
EA's 5 printed decimals, when the quote currency is the account's; cross rates move, so a
few percent otherwise).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raytrade.actors.venues.execution import SymbolFilters
from raytrade.envs.errors import ConfigError

EA_LOT_UNIT = 0.01
"""The EA rounds the lots of every command to 2 decimals: ``min_lot`` and ``lot_step``
must be multiples of this."""
TICK_VALUE_TOLERANCE = 0.05
"""Relative difference allowed between the configured and the reported tick value."""
_SYMBOL_KEYS = frozenset({"contract_size", "pip_size", "pip_value", "tick_size", "min_lot",
                          "lot_step", "max_lot", "magic", "base", "quote"})


@dataclass(frozen=True)
class SymbolSpec:
    """How one symbol is traded (module docstring)."""

    symbol: str
    contract_size: float
    pip_size: float
    pip_value: float
    tick_size: float
    min_lot: float
    lot_step: float
    max_lot: float
    magic: int
    base: str
    quote: str

    def filters(self) -> SymbolFilters:
        """The order side's rules in base units (no minimum notional: MT has none)."""
        return SymbolFilters(self.symbol, self.base, self.quote, self.tick_size,
                             self.lot_step * self.contract_size,
                             self.min_lot * self.contract_size,
                             self.max_lot * self.contract_size, 0.0)

    def lots(self, qty: float) -> float:
        """Base units as lots, on the lot step (``ConfigError`` off the grid: the planner
        floors to ``filters().step_size`` first)."""
        steps = qty / self.contract_size / self.lot_step
        n = round(steps)
        if abs(steps - n) > 1e-6:
            raise ConfigError(f"{self.symbol}: quantity {qty:g} is not a multiple of the "
                              f"lot step {self.lot_step:g} x {self.contract_size:g}")
        return round(n * self.lot_step, 8)

    def qty(self, lots: float) -> float:
        """Lots as base units."""
        return round(lots * self.contract_size, 6)

    def check_tick_value(self, tick_value: float, account_currency: str, source: str
                         ) -> None:
        """``ConfigError`` when the EA's ``tick_value`` disagrees with ``pip_value``
        (module docstring)."""
        expected = self.pip_value * self.tick_size / self.pip_size
        exact = account_currency == self.quote
        tolerance = max(1e-5 / max(expected, 1e-12), 1e-6) if exact else TICK_VALUE_TOLERANCE
        if not expected > 0 or abs(tick_value - expected) / expected > tolerance:
            raise ConfigError(
                f"{source}: symbols.{self.symbol}.pip_value {self.pip_value:g} gives "
                f"{expected:.6g} {account_currency} per tick per lot, but the EA reports "
                f"tick_value {tick_value:.6g}: fix pip_value, pip_size or tick_size")

    def quote_per_account(self, tick_value: float | None) -> float:
        """Quote currency per unit of account currency: 1 when they are one currency,
        else from the EA's live tick value (or the configured pip value)."""
        per_tick_quote = self.contract_size * self.tick_size
        per_tick_account = tick_value if tick_value and tick_value > 0 else \
            self.pip_value * self.tick_size / self.pip_size
        return per_tick_quote / per_tick_account


@dataclass(frozen=True)
class VenueConfig:
    """The whole file."""

    source: str
    server_utc_offset_s: int
    symbols: Mapping[str, SymbolSpec]

    def spec(self, symbol: str) -> SymbolSpec:
        """The symbol's spec; ``ConfigError`` naming the file when it is not configured."""
        try:
            return self.symbols[symbol]
        except KeyError:
            raise ConfigError(f"{self.source}: no [symbols.{symbol}] section (configured: "
                              f"{', '.join(sorted(self.symbols)) or 'none'})") from None


def _number(table: Mapping[str, Any], key: str, where: str, *, default: float | None = None,
            positive: bool = True) -> float:
    if key not in table:
        if default is not None:
            return default
        raise ConfigError(f"{where}.{key}: missing (a number)")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key}: {value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or (positive and x <= 0):
        raise ConfigError(f"{where}.{key}: {value!r} must be a finite number"
                          f"{' > 0' if positive else ''}")
    return x


def _currency(table: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not (value.isalpha() and value.isupper()) or \
            not 2 <= len(value) <= 6:
        raise ConfigError(f"{where}.{key}: {value!r} is not a currency code like 'EUR'")
    return value


def parse_symbol(symbol: str, table: Any, source: str) -> SymbolSpec:
    """One ``[symbols.<symbol>]`` table."""
    where = f"{source}: symbols.{symbol}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _SYMBOL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(_SYMBOL_KEYS))})")
    pip = _number(table, "pip_size", where)
    halves = (symbol[:3], symbol[3:6]) if len(symbol) >= 6 and symbol[:6].isalpha() else ("", "")
    spec = SymbolSpec(
        symbol, _number(table, "contract_size", where), pip, _number(table, "pip_value", where),
        _number(table, "tick_size", where, default=pip / 10), _number(table, "min_lot", where),
        _number(table, "lot_step", where), _number(table, "max_lot", where),
        _magic(table, where), _currency(table, "base", where, halves[0].upper()),
        _currency(table, "quote", where, halves[1].upper()))
    for name in ("lot_step", "min_lot"):
        hundredths = getattr(spec, name) / EA_LOT_UNIT
        if abs(hundredths - round(hundredths)) > 1e-6:
            raise ConfigError(f"{where}.{name}: {getattr(spec, name):g} is not a multiple of "
                              f"{EA_LOT_UNIT:g}: the DWX EA rounds every lot size to 2 "
                              "decimals (NormalizeDouble(lots, 2)), so a finer size would "
                              "trade a different amount")
    if spec.min_lot > spec.max_lot:
        raise ConfigError(f"{where}.min_lot: {spec.min_lot:g} is above max_lot {spec.max_lot:g}")
    for name in ("min_lot", "max_lot"):
        steps = getattr(spec, name) / spec.lot_step
        if abs(steps - round(steps)) > 1e-6:
            raise ConfigError(f"{where}.{name}: {getattr(spec, name):g} is not a multiple of "
                              f"lot_step {spec.lot_step:g}")
    if spec.tick_size > spec.pip_size:
        raise ConfigError(f"{where}.tick_size: {spec.tick_size:g} is above pip_size "
                          f"{spec.pip_size:g}")
    return spec


def _magic(table: Mapping[str, Any], where: str) -> int:
    value = table.get("magic")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ConfigError(f"{where}.magic: {value!r} must be an integer in [1, 2^31)")
    return value


def parse_venue_config(data: Mapping[str, Any], source: str) -> VenueConfig:
    """A parsed TOML document (module docstring)."""
    unknown = sorted(set(data) - {"server", "symbols"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)} (known: server, "
                          "symbols)")
    server = data.get("server", {})
    if not isinstance(server, Mapping) or set(server) - {"utc_offset_hours"}:
        raise ConfigError(f"{source}: [server] takes one field, utc_offset_hours")
    hours = _number(server, "utc_offset_hours", f"{source}: server", default=0.0,
                    positive=False)
    if abs(hours) > 14 or (hours * 4) != int(hours * 4):
        raise ConfigError(f"{source}: server.utc_offset_hours: {hours:g} must be a multiple "
                          "of 0.25 within +-14")
    symbols = data.get("symbols")
    if not isinstance(symbols, Mapping) or not symbols:
        raise ConfigError(f"{source}: no [symbols.<SYMBOL>] section: configure every traded "
                          "symbol")
    specs = {s: parse_symbol(s, t, source) for s, t in symbols.items()}
    return VenueConfig(source, int(hours * 3600), specs)


def load_venue_config(path: str | Path) -> VenueConfig:
    """Read and validate the file (``ConfigError`` naming it)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such DWX venue config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_venue_config(data, str(path))
