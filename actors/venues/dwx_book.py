"""The order side's bookkeeping for DWX (``dwx_orders.py``): how a client order id rides in
a MetaTrader comment, one order's steps and fills as this process knows them, and the
check that the account behind the EA is the one the network names.

Client order ids travel in the ticket's comment, which MetaTrader keeps to 31 characters
and to which the broker appends a tag when a stop closes the ticket (``[sl]``, ``[tp]``):
``order_comment`` is the id itself when it fits in ``COMMENT_LEN`` = 27 characters (31 less
the 4 of a tag; raytrade's ids are about 25) and otherwise ``h`` + the first 26 hex digits of
its SHA-256. Finding an order needs no table: its comment is computed again from the id and
looked up in the EA's files, as the whole comment or the comment followed by a ``[`` tag
(``comment_matches``: a prefix alone would take ``rt-...-1-12`` for ``rt-...-1-1``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from raytrade.actors.venues import dwx_records as rec
from raytrade.actors.venues.dwx_symbols import SymbolSpec
from raytrade.actors.venues.execution import OrderRequest, OrderState, OrderStatus, Trade
from raytrade.envs.errors import ConfigError

COMMENT_LEN = 27


def order_comment(cid: str) -> str:
    """The MT comment carrying client order id ``cid`` (module docstring)."""
    if len(cid) <= COMMENT_LEN:
        return cid
    return "h" + hashlib.sha256(cid.encode()).hexdigest()[:COMMENT_LEN - 1]


def comment_matches(comment: str, wanted: str) -> bool:
    """``comment`` (as the EA lists it) is ``wanted``, or ``wanted`` with the broker's tag
    (``[sl]``, ``[tp]``: cut at 31 characters, so only its ``[`` may be left)."""
    return comment == wanted or comment.startswith(wanted + "[")


def _trade_id(cid: str, step: str) -> int:
    return int(hashlib.sha256(f"{cid}|{step}".encode()).hexdigest()[:13], 16)


@dataclass(frozen=True)
class Step:
    """One command of an order: ``open`` (``known``: the tickets before it) or ``close``
    of ``lots`` of ``ticket`` (``before``: its lots before; ``open_ms``: when it opened)."""

    kind: str
    lots: float
    ticket: int = 0
    before: float = 0.0
    known: frozenset[int] = frozenset()
    open_ms: int = 0

    @property
    def key(self) -> str:
        """Identity within the order (its command id and trade id)."""
        return f"{self.kind}:{self.ticket}:{self.lots:.8f}"


@dataclass
class OrderRecord:
    """What this process knows of one order (mutable)."""

    order: OrderRequest
    spec: SymbolSpec
    lots: float
    status: OrderStatus = "new"
    filled_lots: float = 0.0
    quote: float = 0.0
    trades: list[Trade] = field(default_factory=list)
    reason: str = ""
    update_ms: int = 0
    unknown: Step | None = None
    command_ids: dict[str, int] = field(default_factory=dict)
    tickets: list[int] = field(default_factory=list)

    def fill(self, step: Step, lots: float, price: float, commission: float) -> None:
        """Book one step's fill."""
        qty = self.spec.qty(lots)
        self.filled_lots = round(self.filled_lots + lots, 8)
        self.quote += qty * price
        self.trades.append(Trade(_trade_id(self.order.client_order_id, step.key), qty, price,
                                 commission, self.spec.quote))
        self.update_ms = int(time.time() * 1000)
        self.status = "filled" if self.filled_lots >= self.lots - 1e-9 else "partially_filled"

    def finish(self, status: OrderStatus, reason: str) -> None:
        """End the order (``filled`` only when it filled in full)."""
        if status != "rejected" and self.filled_lots >= self.lots - 1e-9:
            status = "filled"
        self.status = status
        self.reason = reason
        self.update_ms = int(time.time() * 1000)

    def state(self) -> OrderState:
        """As the order side reports it."""
        o = self.order
        qty = self.spec.qty(self.filled_lots)
        return OrderState(o.client_order_id, ",".join(map(str, self.tickets)) or None,
                          o.symbol, o.side, self.status, o.qty, qty,
                          self.quote / qty if qty > 0 else None, self.reason, self.update_ms,
                          tuple(self.trades))


def check_account_kind(account: rec.AccountInfo, network: str, folder: Path) -> str:
    """The account behind the EA must be the network's: ``testnet`` a demo account,
    ``mainnet`` real money, ``loopback`` the EA simulator (recognised by its state file);
    ``ConfigError`` otherwise. The stock EAs do not report the account kind: then a
    ``testnet`` run cannot prove it trades a demo account, and the reason is returned
    (the order side refuses every order with it; a dry run sends none); "" when verified
    or when ``mainnet`` was spelled out."""
    if network == "loopback":
        if not (folder / "sim_state.json").exists():
            raise ConfigError(f"network loopback is for the EA simulator, and {folder} holds "
                              "no simulator (sim_state.json): use testnet or mainnet")
        return ""
    want = {"testnet": "demo", "mainnet": "real"}.get(network)
    if want is None:
        raise ConfigError(f"network {network!r}: testnet, mainnet or loopback")
    kind = account.trade_mode
    if kind is None:
        if network == "testnet":
            return (f"account {account.number}: the EA does not report whether it is a demo "
                    "or a real account, so a testnet (demo) run cannot be verified: add the "
                    "trade_mode field to the EA's account_info (README), run --dry-run, or "
                    "--mainnet if this is real money")
        return ""
    if kind != want:
        raise ConfigError(f"account {account.number} is a {kind} account, but network "
                          f"{network} trades a {want} account: refused")
    return ""
