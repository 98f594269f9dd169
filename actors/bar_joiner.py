"""Joins the traded symbol's bars with its reference asset's bars of the same open time.

A FeatureSpec with a reference asset (BTC for ETH) needs both closes at every step, but
the two symbols' bars are sequenced separately (``bar_sequencer.py``) and arrive in any
order. ``BarJoiner`` holds released bars until both sides of an open time are there and
hands them out oldest first:

- a bar of the traded symbol at or before ``last_ts`` (already traded) is dropped;
- a traded bar older than the reference's first bar is dropped (the reference's history
  starts later: that bar can never be joined);
- reference bars older than the bar just joined are dropped (the traded side skipped them);
- the joined kind is the common kind, else ``warmup`` if either side is warm-up, else
  ``catchup``: a bar is ``live`` only if both sides are.

Without a reference (or when the symbol is its own reference) every bar is its own pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrade.actors.bar_sequencer import CATCHUP, WARMUP, SequencedBar
from raytrade.envs.bars import Bar


@dataclass(frozen=True, slots=True)
class JoinedBar:
    """A traded bar, its kind after the join, and the reference's close (the bar's own
    close without a separate reference)."""

    bar: Bar
    kind: str
    ref_close: float


class BarJoiner:
    """See the module docstring."""

    def __init__(self, symbol: str, reference: str | None) -> None:
        self.symbol = symbol
        self.reference = reference if reference and reference != symbol else None
        self._mine: dict[int, SequencedBar] = {}
        self._ref: dict[int, SequencedBar] = self._mine if self.reference is None else {}

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols to subscribe: the traded one first, then the reference if separate."""
        return (self.symbol,) if self.reference is None else (self.symbol, self.reference)

    def add(self, sb: SequencedBar) -> None:
        """Hold a released bar of either symbol."""
        if sb.symbol == self.symbol:
            self._mine[sb.bar.ts] = sb
        elif sb.symbol == self.reference:
            self._ref[sb.bar.ts] = sb
        else:
            raise ValueError(f"{sb.symbol} is neither {self.symbol} nor its reference")

    def pop_next(self, last_ts: int | None) -> JoinedBar | None:
        """The oldest joinable bar after ``last_ts``, or None until its pair arrives."""
        mine, ref = self._mine, self._ref
        while mine:
            ts = min(mine)
            if last_ts is not None and ts <= last_ts:
                del mine[ts]
                continue
            if ts not in ref:
                if ref and min(ref) > ts:  # the reference history starts later
                    del mine[ts]
                    continue
                return None
            sb = mine.pop(ts)
            rb = sb if ref is mine else ref.pop(ts)
            if ref is not mine:
                for old in [t for t in ref if t < ts]:
                    del ref[old]
            kind = sb.kind if sb.kind == rb.kind else (
                CATCHUP if WARMUP not in (sb.kind, rb.kind) else WARMUP)
            return JoinedBar(sb.bar, kind, rb.bar.close)
        return None

    def waiting(self) -> int:
        """Bars held, both sides."""
        return len(self._mine) + (len(self._ref) if self._ref is not self._mine else 0)
