"""The reading side of DWX order execution (``dwx_orders.DwxExecution``): an order's state
by client id, the pending tickets, and the account snapshot (positions netted per symbol and
magic number, mid prices, balance and equity), all from the EA's orders file
(``DWX_Orders.txt``) and closed trades (``GET_HISTORIC_TRADES``), as the DWX Connect EA
writes them (``github.com/darwinex/dwxconnect``, ``mql/DWX_Server_MT4.mq4``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from raytrade.actors.events import MessageRejectedError
from raytrade.actors.venues import dwx_records as rec
from raytrade.actors.venues import dwx_requests as req
from raytrade.actors.venues.dwx_book import comment_matches, order_comment
from raytrade.actors.venues.dwx_client import DwxClient, EaError
from raytrade.actors.venues.execution import FINAL_STATUSES, AccountSnapshot, OrderState
from raytrade.envs.errors import TemporaryError

if TYPE_CHECKING:
    from raytrade.actors.venues.dwx_orders import DwxExecution

log = logging.getLogger(__name__)


async def closed_trades(client: DwxClient, days: int) -> dict[int, rec.ClosedTrade]:
    """The closed trades opened in the last ``days`` (``GET_HISTORIC_TRADES``); none when
    the EA cannot list them (logged): callers fall back to the orders file or the bid/ask."""
    try:
        return await req.historic_trades(client, max(days, 1))
    except (EaError, TemporaryError) as exc:
        log.warning("DWX historic trades unavailable (%s)", exc)
        return {}


async def query(ex: DwxExecution, symbol: str, client_order_id: str) -> OrderState | None:
    """The order's state: this process's record (a step of unknown fate decided from
    the EA's state first), else a ticket carrying its comment, open or in the history;
    None when neither knows it."""
    record = ex.records.get(client_order_id)
    if record is not None:
        async with ex.client.exclusive("orders"):
            await ex.resolve_step(record)
        if record.filled_lots == 0 and record.status not in FINAL_STATUSES:
            return None  # nothing ran (yet): the caller may send it again
        return record.state()
    spec = ex.config.spec(symbol)
    orders = await ex.orders_now()
    comment = order_comment(client_order_id)
    hits = [(t.ticket, t.lots, t.open_price, t.type) for t in orders.tickets.values()
            if t.symbol == symbol and comment_matches(t.comment, comment)]
    if not hits:
        hits = [(c.ticket, c.lots, c.open_price, c.type)
                for c in (await closed_trades(ex.client, 30)).values()
                if c.symbol == symbol and comment_matches(c.comment, comment)]
    if not hits:
        return None
    if len(hits) > 1:
        raise MessageRejectedError(f"DWX order {client_order_id}: tickets "
                                   f"{sorted(h[0] for h in hits)} all carry its comment "
                                   f"{comment!r}", comment)
    ticket, lots, price, kind = hits[0]
    qty = spec.qty(lots)
    return OrderState(client_order_id, str(ticket), symbol,
                      "buy" if kind == "buy" else "sell", "filled", qty, qty, price,
                      update_ms=int(time.time() * 1000))

async def open_orders(ex: DwxExecution, symbol: str) -> list[OrderState]:
    """Pending tickets with the symbol's magic (raytrade sends none)."""
    spec = ex.config.spec(symbol)
    orders = await ex.orders_now()
    return [OrderState(t.comment or f"mt-{t.ticket}", str(t.ticket), symbol,
                       "buy" if t.type.startswith("buy") else "sell", "new",
                       spec.qty(t.lots), 0.0, None)
            for t in orders.tickets.values()
            if t.symbol == symbol and t.magic == spec.magic and t.type in rec.PENDING_TYPES]

async def account(ex: DwxExecution, symbols: tuple[str, ...], *,
              open_orders_for: tuple[str, ...] | None = None) -> AccountSnapshot:
    """Positions netted per symbol and magic, mid prices, the account's balance and
    equity converted to the first symbol's quote currency."""
    await ex.ready()
    orders = await ex.orders_now()
    positions, prices = {}, {}
    for symbol in symbols:
        spec = ex.config.spec(symbol)
        lots = sum(t.signed_lots for t in orders.tickets.values()
                   if t.symbol == symbol and t.magic == spec.magic)
        positions[symbol] = spec.qty(lots)
        tick = await ex.tick(symbol)
        prices[symbol] = (tick.bid + tick.ask) / 2
    pending = [o for s in (symbols if open_orders_for is None else open_orders_for)
               for o in await open_orders(ex, s)]
    account = orders.account
    factor = 1.0
    if symbols:
        first = ex.config.spec(symbols[0])
        latest = ex.client.state.ticks.get(first.symbol)
        factor = first.quote_per_account(latest.tick_value if latest else None)
    return AccountSnapshot(int(time.time() * 1000), {account.currency: account.balance},
                           positions, prices, account.equity * factor, tuple(pending))
