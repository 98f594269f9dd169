"""Reconciliation: the exchange's account against the orders journal, for one symbol.

Run at start and after every bar (and every ``reconcile_every_s`` between bars). The
journal's open orders are resolved first (queried by client id), so what is compared is
settled: the position (spot: the base asset's balance; futures: ``positionAmt``) must
equal the journal's book within half a quantity step, and every order the exchange holds
open on the symbol must be one the journal knows as open. Anything else is a mismatch:
the session halts the symbol, alerts, and trades nothing more until a person has looked
and run ``raytrade live reconcile --adopt``.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytrade.actors.venues.execution import OrderState


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of one comparison."""

    ok: bool
    journal_position: float
    exchange_position: float
    unknown_orders: tuple[str, ...]
    """Client ids open on the exchange that the journal does not know as open."""
    detail: str


def reconcile(journal_position: float, exchange_position: float,
              exchange_open: list[OrderState] | tuple[OrderState, ...],
              journal_open: set[str], tolerance: float) -> Reconciliation:
    """Compare (module docstring); ``tolerance`` in base units."""
    problems = []
    diff = exchange_position - journal_position
    if abs(diff) > tolerance:
        problems.append(f"position: exchange {exchange_position:.12g}, journal "
                        f"{journal_position:.12g} (difference {diff:+.12g}, tolerance "
                        f"{tolerance:g})")
    unknown = tuple(o.client_order_id for o in exchange_open
                    if o.client_order_id not in journal_open)
    if unknown:
        problems.append(f"open orders on the exchange the journal does not know: "
                        f"{', '.join(unknown)}")
    detail = "; ".join(problems) if problems else (
        f"position {exchange_position:.12g} matches, no unknown open orders")
    return Reconciliation(not problems, journal_position, exchange_position, unknown, detail)
