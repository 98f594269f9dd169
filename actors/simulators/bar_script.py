"""How the simulators turn one historical bar into market activity: the trades that
rebuild it, and the bar as an exchange reports it while it is still in progress.

Shared by every simulator (``replay_server.py`` speaks Binance, ``coinbase_server.py``
Coinbase), so both feeds and their REST endpoints tell the same story about a bar.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrade.envs.bars import Bar, BarTable


@dataclass(frozen=True, slots=True)
class ScriptedTrade:
    """One trade of a bar's script. ``ts`` in ms; price in quote, qty in base units."""

    trade_id: int
    ts: int
    price: float
    qty: float


def bar_trades(table: BarTable, i: int) -> list[ScriptedTrade]:
    """Four trades that rebuild bar ``i`` exactly: open, low and high (in the order that
    matches the bar's direction), close; a quarter of the volume each. They happen at 1/5,
    2/5 and 3/5 of the interval and in its last millisecond, so the bar's close and volume
    are final only when it closes (a bar read in progress always differs from it)."""
    t0 = int(table.ts[i])
    ms = table.interval_ms
    o, h, lo, c = (float(table.open[i]), float(table.high[i]), float(table.low[i]),
                   float(table.close[i]))
    prices = (o, lo, h, c) if c >= o else (o, h, lo, c)
    q = float(table.volume[i]) / 4.0
    times = (t0 + ms // 5, t0 + 2 * ms // 5, t0 + 3 * ms // 5, t0 + ms - 1)
    return [ScriptedTrade(i * 4 + j, t, p, q)
            for j, (t, p) in enumerate(zip(times, prices, strict=True))]


def bar_in_progress(table: BarTable, i: int, now_ms: int) -> Bar:
    """Bar ``i`` as reported at ``now_ms`` (its open <= now < its close): built from the
    trades so far; before the first trade, flat at the previous close with volume 0."""
    trades = [t for t in bar_trades(table, i) if t.ts <= now_ms]
    t0 = int(table.ts[i])
    if not trades:
        prev = float(table.close[i - 1]) if i > 0 else float(table.open[i])
        return Bar(t0, prev, prev, prev, prev, 0.0)
    prices = [t.price for t in trades]
    return Bar(t0, prices[0], max(prices), min(prices), prices[-1],
               sum(t.qty for t in trades))
