"""The perpetual futures the loopback Delta exchange lists, as ``GET /v2/products``
describes them (docs.delta.exchange, the ``Product`` schema): an id, a symbol, the
underlying units per contract (``contract_value``), the price tick, commission rates and
leverage. ``default_products`` gives Delta India's own ids, contract values and ticks for
its main perpetuals (as listed in October 2026: ids differ on the testnet, so clients must
resolve them from ``/v2/products``) and a plain product for any other replayed symbol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from raytrade.envs.errors import ConfigError


@dataclass(frozen=True)
class DeltaProduct:
    """One perpetual future as ``GET /v2/products`` describes it."""

    id: int
    symbol: str
    """Delta's symbol (``BTCUSD``)."""
    feed_symbol: str
    """The ``PriceSource`` symbol its prices come from (``BTCUSDT`` in a Binance file)."""
    contract_value: Decimal
    """Underlying units per contract."""
    tick_size: Decimal
    underlying: str
    default_leverage: int = 10
    max_leverage: int = 100
    taker_rate: Decimal = Decimal("0.0005")
    maker_rate: Decimal = Decimal("0.0002")
    position_size_limit: int = 125_000
    """Most contracts in one order."""

    def __post_init__(self) -> None:
        if not (self.contract_value > 0 and self.tick_size > 0):
            raise ConfigError(f"{self.symbol}: contract_value and tick_size must be > 0")


_KNOWN: dict[str, tuple[int, str, str]] = {
    "BTCUSD": (27, "0.001", "0.5"), "ETHUSD": (3136, "0.01", "0.05"),
    "SOLUSD": (14823, "1", "0.0001"), "XRPUSD": (14969, "1", "0.0001")}
"""Production ids, contract values and ticks of Delta India's main perpetuals (Oct 2026)."""


def delta_symbol(feed_symbol: str) -> str:
    """Delta's perpetual for a feed symbol: ``BTCUSDT`` -> ``BTCUSD``; else unchanged."""
    s = feed_symbol.upper()
    return s[:-1] if s.endswith("USDT") else s


def default_products(feed_symbols: Iterable[str]) -> tuple[DeltaProduct, ...]:
    """One product per feed symbol: Delta's own id, contract value and tick where known,
    else id 1000+, one unit per contract and a 0.0001 tick."""
    out = []
    for i, feed in enumerate(sorted({s.upper() for s in feed_symbols})):
        sym = delta_symbol(feed)
        pid, cv, tick = _KNOWN.get(sym, (1000 + i, "1", "0.0001"))
        out.append(DeltaProduct(id=pid, symbol=sym, feed_symbol=feed,
                                contract_value=Decimal(cv), tick_size=Decimal(tick),
                                underlying=sym[:-3] if sym.endswith("USD") else sym))
    return tuple(out)
