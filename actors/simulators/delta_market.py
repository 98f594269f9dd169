"""Market data of the loopback Delta exchange: historical bars replayed on a virtual clock
and told the way Delta tells them -- ``GET /v2/history/candles`` rows, the public socket's
compact ``candlestick_<res>`` and ``ticker`` messages -- and the prices fills use.

Delta's formats (docs.delta.exchange, "GET historical ohlc candles", public channels
"candlesticks" and "ticker" of ``wss://public-socket.india.delta.exchange``):

- a candle row is ``{"time": <open, Unix s>, "open", "high", "low", "close", "volume"}``
  (numbers); rows come newest first and include the candle still forming (observed on the
  live API), at most 2000 per response;
- a candlestick message is ``{"c","h","l","o","res","sy","ts","type","v"}`` with ``ts`` the
  update time in microseconds and no closed flag: the channel always carries the current
  candle, so a candle is final once a message for a later one arrives. Here a bar ``i``
  is told three times: at its open (flat at the previous close, volume 0, as the REST
  row reads before any trade: ``bar_script.bar_in_progress``), at its middle (the bar so
  far) and in its last millisecond (the bar itself, final). ``ts`` always lies inside the
  bar, so ``ts - ts % res`` is its open;
- a ticker message is ``{"d": [{"i", "m", "ohlc": [o, h, l, c] over 24 h, "q": [best ask,
  ask size, best bid, bid size, impact mid], "s", ...}], "sp", "sy", "ts", "type":
  "ticker"}``, sent here once a bar closes.

The virtual clock runs ``speed`` virtual ms per real ms from ``start`` (or from the first
public subscription with ``start_on_connect``), like ``replay_server.ReplayServer``. As a
``PriceSource`` the replay quotes the close of the last bar closed on that clock, plus and
minus ``half_spread_bps``: fills see exactly the bars a follower of the feed has seen.
Delta symbols are the feed's with ``USDT`` shortened to ``USD`` (``BTCUSDT`` -> ``BTCUSD``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from raytrade.actors.simulators.bar_script import bar_in_progress
from raytrade.actors.simulators.delta_auth import bad_schema, coded
from raytrade.actors.simulators.delta_products import delta_symbol
from raytrade.envs.bars import Bar, BarTable
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import ms_to_interval

MAX_CANDLES = 2000
"""Most rows one ``/v2/history/candles`` answer holds (Delta's documented cap)."""
DAY_MS = 86_400_000


def candle_row(bar: Bar) -> dict[str, Any]:
    """One ``/v2/history/candles`` row."""
    return {"time": bar.ts // 1000, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume}


def candlestick_message(symbol: str, res: str, bar: Bar, ts_us: int) -> dict[str, Any]:
    """One compact ``candlestick_<res>`` message (keys in Delta's order)."""
    return {"c": bar.close, "h": bar.high, "l": bar.low, "o": bar.open, "res": res,
            "sy": symbol, "ts": ts_us, "type": f"candlestick_{res}", "v": bar.volume}


class DeltaReplay:
    """Bars replayed for Delta products (module docstring)."""

    def __init__(self, tables: Sequence[BarTable], *, speed: float = 1.0, start: int = 0,
                 stop: int | None = None, half_spread_bps: float = 1.0,
                 start_on_connect: bool = False) -> None:
        if not tables:
            raise ConfigError("the Delta replay needs at least one table of bars")
        if len({t.interval_ms for t in tables}) != 1:
            raise ConfigError("replayed tables must share one interval")
        if not speed > 0:
            raise ConfigError("speed must be > 0 (virtual ms per real ms)")
        if half_spread_bps < 0:
            raise ConfigError(f"half_spread_bps must be >= 0, got {half_spread_bps}")
        self.tables = {t.symbol.upper(): t for t in tables}
        if "" in self.tables:
            raise ConfigError("every replayed table needs a symbol: name files like "
                              "BTCUSDT_5m.csv")
        self.by_delta = {delta_symbol(s): t for s, t in self.tables.items()}
        first = next(iter(self.tables.values()))
        for sym, t in self.tables.items():
            if len(t) != len(first) or (t.ts != first.ts).any():
                raise ConfigError(f"{sym}: replayed tables must cover the same bars "
                                  "(align them first)")
        self.interval_ms = first.interval_ms
        self.res = ms_to_interval(self.interval_ms)
        self.ts = first.ts
        self.start = start
        self.stop = len(first) if stop is None else min(stop, len(first))
        if not 0 <= start < self.stop:
            raise ConfigError(f"start {start} outside the {len(first)} bars")
        self.speed = speed
        self.half_spread_bps = half_spread_bps
        self.start_on_connect = start_on_connect
        self._t0: float | None = None
        if not start_on_connect:
            self.start_clock()

    # ---- the clock
    def start_clock(self) -> None:
        """Start the virtual clock (idempotent)."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    @property
    def started(self) -> bool:
        """Whether the virtual clock runs."""
        return self._t0 is not None

    def now_ms(self) -> int:
        """Virtual time: bar ``start``'s open plus elapsed real time times speed."""
        base = int(self.ts[self.start])
        if self._t0 is None:
            return base
        return base + int((time.monotonic() - self._t0) * 1000.0 * self.speed)

    def real_delay_s(self, virtual_ms: int) -> float:
        """Real seconds until the virtual clock reads ``virtual_ms`` (0 if past)."""
        return max(0.0, (virtual_ms - self.now_ms()) / self.speed / 1000.0)

    def closed_until(self, now: int | None = None) -> int:
        """Index one past the last bar closed on the clock (capped at ``stop``)."""
        now = self.now_ms() if now is None else now
        k = self.start + max(0, (now - int(self.ts[self.start])) // self.interval_ms)
        return min(int(k), self.stop)

    # ---- PriceSource
    def quote(self, symbol: str) -> tuple[float, float] | None:
        """Last closed close of the feed symbol ``symbol`` (or its Delta symbol) minus/plus
        the half spread; None before the first close."""
        table = self.tables.get(symbol.upper()) or self.by_delta.get(symbol.upper())
        k = self.closed_until()
        if table is None or k == 0:
            return None
        mid = float(table.close[k - 1])
        h = self.half_spread_bps / 10_000.0
        return mid * (1.0 - h), mid * (1.0 + h)

    # ---- REST
    def table(self, symbol: str) -> BarTable:
        """The bars of Delta symbol ``symbol``; 400 ``invalid_contract`` if not served."""
        table = self.by_delta.get(symbol.upper())
        if table is None:
            raise coded(400, "invalid_contract")
        return table

    def bar_at(self, table: BarTable, i: int, now: int) -> Bar:
        """Bar ``i`` as known at virtual time ``now`` (final once closed)."""
        if int(table.ts[i]) + self.interval_ms <= now:
            return table.bar(i)
        return bar_in_progress(table, i, now)

    def candles(self, symbol: str, resolution: str, start_s: int, end_s: int
                ) -> list[dict[str, Any]]:
        """``/v2/history/candles``: bars opened in ``[start_s, end_s]`` by now, newest
        first, the forming one included, at most ``MAX_CANDLES`` (the newest)."""
        table = self.table(symbol)
        if resolution != self.res:
            raise bad_schema("resolution", f"this replay serves resolution {self.res} only")
        now = self.now_ms()
        first = int(table.ts[0])
        opened = min(self.closed_until(now) + 1, self.stop)
        lo = max(0, -(-(start_s * 1000 - first) // self.interval_ms))
        hi = min(opened, (end_s * 1000 - first) // self.interval_ms + 1)
        lo = max(lo, hi - MAX_CANDLES)
        return [candle_row(self.bar_at(table, i, now)) for i in range(hi - 1, lo - 1, -1)]

    def ticker(self, symbol: str, product_id: int, now: int | None = None
               ) -> dict[str, Any]:
        """24 h statistics over the closed bars, for ``/v2/tickers`` and the socket."""
        table = self.table(symbol)
        now = self.now_ms() if now is None else now
        k = self.closed_until(now)
        if k == 0:
            raise coded(400, "invalid_contract")
        lo = max(0, k - DAY_MS // self.interval_ms)
        close = float(table.close[k - 1])
        h = self.half_spread_bps / 10_000.0
        return {"symbol": symbol.upper(), "product_id": product_id,
                "open": float(table.open[lo]), "high": float(table.high[lo:k].max()),
                "low": float(table.low[lo:k].min()), "close": close,
                "volume": float(table.volume[lo:k].sum()),
                "best_bid": close * (1.0 - h), "best_ask": close * (1.0 + h),
                "timestamp": now * 1000}

    # ---- the public socket's script
    def schedule(self, i: int) -> list[tuple[int, str]]:
        """When (virtual ms) bar ``i`` is told, and what: ``open``, ``middle``, ``final``
        (the final one followed by the ticker)."""
        t0 = int(self.ts[i])
        return [(t0, "open"), (t0 + self.interval_ms // 2, "middle"),
                (t0 + self.interval_ms - 1, "final")]

    def messages(self, i: int, at_ms: int, what: str, symbols: dict[str, int]
                 ) -> list[tuple[str, str, dict[str, Any]]]:
        """``(channel, symbol, message)`` for bar ``i`` told at ``at_ms``; ``symbols`` maps
        each Delta symbol served to its product id."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for sym, pid in symbols.items():
            table = self.by_delta[sym]
            bar = table.bar(i) if what == "final" else bar_in_progress(table, i, at_ms)
            out.append((f"candlestick_{self.res}", sym,
                        candlestick_message(sym, self.res, bar, at_ms * 1000)))
            if what == "final":
                out.append(("ticker", sym, ticker_message(
                    self.ticker(sym, pid, at_ms + 1), at_ms * 1000)))
        return out


def price_text(x: float) -> str:
    """A price as a decimal string (8 places at most)."""
    return repr(round(x, 8))


def ticker_message(t: dict[str, Any], ts_us: int) -> dict[str, Any]:
    """The public socket's compact ``ticker`` message from ``DeltaReplay.ticker``."""
    close = t["close"]
    return {"d": [{"g": [None, None, None, None, None], "i": t["product_id"],
                   "m": price_text(close), "m24hc": f"{(close / t['open'] - 1) * 100:.4f}",
                   "ohlc": [t["open"], t["high"], t["low"], close], "oi": ["0", "0"],
                   "pb": [price_text(close * 0.975), price_text(close * 1.025)],
                   "q": [price_text(t["best_ask"]), "1000", price_text(t["best_bid"]), "1000",
                         None],
                   "qiv": [None, None, None], "s": t["symbol"],
                   "to": [t["volume"] * close, t["volume"] * close]}],
            "sp": price_text(close), "sy": t["symbol"], "ts": ts_us, "type": "ticker"}
