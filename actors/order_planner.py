"""From a target position to exchange orders: sized to the exchange's filters, with
deterministic client order ids and a price-protection band. Pure functions, no I/O.

The policy decides a target as a fraction of the allocation's equity (the same number the
paper twin trades); here it becomes a signed quantity of the base asset at the bar's
close, sized by the shared accounting's rule (the fee included), and the difference from
the journal's position becomes at most two *legs*:
- spot (long/flat): one buy or one sell; a sell never exceeds the position;
- futures (one-way mode): a change that crosses zero is a reduce-only close of the whole
  position, then an opening order for the new side; a change that only shrinks is
  reduce-only.

Quantities are floored to the step size; a leg under the minimum quantity or notional is
dropped and the plan says why (a reduce-only futures close is exempt from the minimum
notional, as on Binance). A marketable limit is priced ``band_bps`` through the close,
rounded away from the book to the tick.

Client order ids are ``rt-<actor hash>-<bar open, base 36>-<policy version>-<leg>``: the
same bar, version and leg always give the same id, so a retry or a restart can only ever
ask about, never duplicate, an order.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from raytrade.actors.venues.execution import MarketKind, OrderSide, SymbolFilters
from raytrade.envs.accounting import target_units
from raytrade.envs.errors import ConfigError

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Leg:
    """One order of a plan."""

    leg: int
    """0 or 1 (the close, then the open, when a futures position changes side)."""
    side: OrderSide
    qty: float
    """Base units on the step grid, > 0."""
    reduce_only: bool


@dataclass(frozen=True)
class OrderPlan:
    """What to send for one target."""

    desired: float
    """The target position, base units, signed."""
    current: float
    """The journal's position, base units."""
    legs: tuple[Leg, ...]
    skipped: str = ""
    """Why a wanted change is not sent (under the exchange's minimum), if so."""


def desired_position(target: float, equity: float, price: float, market: MarketKind, *,
                     fee_rate: float) -> float:
    """Base units for a target fraction of ``equity`` (quote) filled at ``price``, sized as
    the shared accounting sizes a trade (``envs.accounting.target_units``: position and
    fee together are ``target * equity``)."""
    if market == "spot" and target < 0:
        raise ConfigError(f"target {target:g} is short, and spot is long/flat: trade this "
                          "policy on binance-futures")
    if not (price > 0 and math.isfinite(price)):
        raise ValueError(f"no valid price ({price}) to size an order")
    return float(target_units(target, max(equity, 0.0), price, fee_rate))


def plan_orders(current: float, desired: float, filters: SymbolFilters, price: float,
                market: MarketKind) -> OrderPlan:
    """The legs taking ``current`` to ``desired`` (module docstring)."""
    legs: list[Leg] = []
    skipped: list[str] = []
    if market == "futures" and current * desired < 0:
        close = filters.floor_qty(abs(current))
        if close > 0:
            legs.append(Leg(0, "sell" if current > 0 else "buy", close, True))
        _open(legs, skipped, desired, filters, price, 1, reduce_only=False)
    else:
        delta = desired - current
        if market == "spot" and delta < 0:
            delta = -min(-delta, max(current, 0.0))
        shrinking = abs(desired) < abs(current) and current * desired >= 0
        _open(legs, skipped, delta, filters, price, 0,
              reduce_only=market == "futures" and shrinking)
    return OrderPlan(desired, current, tuple(legs), "; ".join(skipped))


def _open(legs: list[Leg], skipped: list[str], delta: float, filters: SymbolFilters,
          price: float, leg: int, *, reduce_only: bool) -> None:
    qty = min(filters.floor_qty(abs(delta)), filters.max_qty)
    if qty <= 0:
        if abs(delta) > 0:
            skipped.append(f"change {abs(delta):.12g} is under one step "
                           f"({filters.step_size:g})")
        return
    if qty < filters.min_qty:
        skipped.append(f"quantity {qty:g} under the minimum {filters.min_qty:g}")
        return
    if qty * price < filters.min_notional and not reduce_only:
        skipped.append(f"notional {qty * price:.2f} under the minimum "
                       f"{filters.min_notional:g}")
        return
    legs.append(Leg(leg, "buy" if delta > 0 else "sell", qty, reduce_only))


def limit_price(price: float, side: OrderSide, band_bps: float,
                filters: SymbolFilters) -> float:
    """A marketable limit ``band_bps`` through ``price``, on the tick grid."""
    factor = 1 + band_bps / 1e4 if side == "buy" else 1 - band_bps / 1e4
    return filters.round_price(price * factor, side)


def client_order_id(actor: str, bar_ts: int, version: int | None, leg: int) -> str:
    """The order's idempotency key (module docstring); at most 36 characters."""
    tag = hashlib.sha256(actor.encode()).hexdigest()[:8]
    return f"rt-{tag}-{_base36(bar_ts)}-{version if version is not None else 0}-{leg}"


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError("bar times are not negative")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out
