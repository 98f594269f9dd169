"""Order updates of a DWX account (``execution.UserStream``): the EA has no push channel,
so the stream watches what the folder's client reads (``dwx_client.py``): each change of
the orders file or the messages decides the order steps of unknown fate it can
(``DwxExecution.resolve_pending``), and every fill an order record gained becomes one
``ExecutionReport`` (its trade id is the record's, so a fill the acknowledgement already
listed is recognised downstream and booked once).

``on_state(True)`` while the EA rewrites its orders file (it does at least once a second),
``on_state(False, why)`` while it does not (the caller then queries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from raytrade.actors.venues.execution import ExecutionReport

if TYPE_CHECKING:
    from raytrade.actors.venues.dwx_book import OrderRecord
    from raytrade.actors.venues.dwx_orders import DwxExecution

log = logging.getLogger(__name__)


class DwxUserStream:
    """Fills and order states from the EA's files (module docstring)."""

    def __init__(self, execution: DwxExecution) -> None:
        self.execution = execution
        self._sent: dict[str, int] = {}
        """Client id -> fills already reported."""
        self._final: set[str] = set()

    def reports(self, record: OrderRecord) -> list[ExecutionReport]:
        """The record's fills not reported yet, and its end once final."""
        cid = record.order.client_order_id
        done = self._sent.get(cid, 0)
        out = []
        cum_qty = sum(t.qty for t in record.trades[:done])
        cum_quote = sum(t.qty * t.price for t in record.trades[:done])
        state = record.state()
        venue_id = state.venue_order_id or ""
        for trade in record.trades[done:]:
            cum_qty += trade.qty
            cum_quote += trade.qty * trade.price
            last = trade is record.trades[-1]
            out.append(ExecutionReport(
                cid, venue_id, record.order.symbol, record.order.side,
                state.status if last else "partially_filled", record.order.qty, trade.qty,
                trade.price, cum_qty, cum_quote, trade.commission, trade.commission_asset,
                trade.trade_id, record.update_ms, record.reason))
        self._sent[cid] = len(record.trades)
        if state.final and cid not in self._final:
            self._final.add(cid)
            if not out:
                out.append(ExecutionReport(
                    cid, venue_id, record.order.symbol, record.order.side, state.status,
                    record.order.qty, 0.0, 0.0, cum_qty, cum_quote, 0.0, "", -1,
                    record.update_ms, record.reason))
        return out

    async def run(self, on_report: Callable[[ExecutionReport], None],
                  on_state: Callable[[bool, str], None]) -> None:
        """Until cancelled (module docstring)."""
        execution = self.execution
        client = execution.client
        changed = asyncio.Event()

        def on_change() -> None:
            changed.set()

        def on_record(record: OrderRecord) -> None:
            changed.set()

        client.listeners.append(on_change)
        execution.listeners.append(on_record)
        up: bool | None = None
        try:
            await client.start()
            while True:
                alive = client.alive
                if alive is not up:
                    up = alive
                    on_state(alive, "the EA rewrites its orders file" if alive else
                             f"the EA has not written a valid orders file for "
                             f"{client.config.stale_after_s:g} s")
                if alive:
                    try:
                        await execution.resolve_pending()
                    except Exception as exc:  # the stream outlives a bad read
                        log.warning("DWX stream: resolving orders failed: %s", exc)
                for record in list(execution.records.values()):
                    for report in self.reports(record):
                        on_report(report)
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)
        finally:
            client.listeners.remove(on_change)
            execution.listeners.remove(on_record)
