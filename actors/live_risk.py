"""The live risk rules enforced before an order leaves (``LiveLimits``): stale data, the
order rate, the per-symbol and total notional caps. The daily loss limit is the session's
(it flattens and halts, ``live_session.py``).

A cap never blocks a reduction: the target is clipped so the position after the order
stays within the cap, and a position already above it may only shrink. Money in quote
currency, times in milliseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from raytrade.actors.live_config import LiveLimits


@dataclass(frozen=True)
class RiskVerdict:
    """What the rules made of a wanted position."""

    desired: float
    """The position to trade to, base units (clipped by the caps)."""
    refusal: str = ""
    """Why nothing may be sent, if so."""
    clipped: str = ""
    """Which cap clipped the position, if any."""


class LiveRisk:
    """One actor's pre-trade checks (module docstring)."""

    def __init__(self, limits: LiveLimits, stale_after_ms: int) -> None:
        self.limits = limits
        self.stale_after_ms = stale_after_ms
        self.sent_ms: deque[int] = deque()

    def check(self, current: float, desired: float, price: float, *, bar_close_ms: int,
              now_ms: int, other_notional: float, legs: int, operator: bool = False
              ) -> RiskVerdict:
        """The rules on a move from ``current`` to ``desired`` (base units) at ``price``.
        ``other_notional``: the absolute value of the run's other positions on the
        account. ``operator``: a flatten ordered by a person (only the rate applies)."""
        lim = self.limits
        while self.sent_ms and self.sent_ms[0] <= now_ms - 60_000:
            self.sent_ms.popleft()
        if len(self.sent_ms) + legs > lim.max_orders_per_minute:
            return RiskVerdict(current, refusal=f"order rate: {len(self.sent_ms)} orders in "
                               f"the last minute, limit {lim.max_orders_per_minute}")
        if operator:
            return RiskVerdict(desired)
        age = now_ms - bar_close_ms
        if age > self.stale_after_ms:
            return RiskVerdict(current, refusal=f"stale data: the bar closed {age / 1000:.1f}"
                               f" s ago (limit {self.stale_after_ms / 1000:.1f} s)")
        clipped = ""
        cap = min(lim.max_symbol_notional, max(0.0, lim.max_total_notional - other_notional))
        if abs(desired) * price > cap + 1e-9:
            which = ("max_symbol_notional" if cap == lim.max_symbol_notional else
                     "max_total_notional")
            allowed = max(cap / price, min(abs(current), abs(desired)))
            if current * desired < 0:
                allowed = cap / price
            new = allowed if desired > 0 else -allowed
            clipped = (f"{which}: position {abs(desired) * price:.2f} clipped to "
                       f"{abs(new) * price:.2f}")
            desired = new
        return RiskVerdict(desired, clipped=clipped)

    def sent(self, now_ms: int, n: int = 1) -> None:
        """Count orders that left."""
        self.sent_ms.extend([now_ms] * n)
