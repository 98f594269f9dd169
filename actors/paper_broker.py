"""The paper broker: market orders filled on live bars through the shared accounting.

Nothing here re-implements a rule. Each closed bar goes through the two halves of the
backtest step (``envs.execution``): ``fill_and_mark`` fills the target decided ``latency``
bars earlier at this bar's open, plus the shared slippage model and fees, and marks the
account at its close; ``decide`` runs the shared risk rules on the policy's request. The
cost inputs (quote volume, EWMA volatility) come from the same stateful kernel the backtest
uses. So on the same bars and requests, broker and backtest produce the same account.

Live differences, documented:
- ``use_quote_spread``: the half spread of the last two-sided ``bookTicker`` replaces the
  model's fixed ``half_spread_bps`` (impact and cap still apply);
- an order on an empty or one-sided book is rejected, never filled at price 0 or NaN;
- an order whose gross notional would exceed ``max_leverage`` times equity (or any order
  when equity is not positive) is rejected for insufficient balance;
  rejections leave the account untouched; the decided target is retried at the next bar.

Fill ids are ``<account>:<symbol>:<fill bar open ms>`` (at most one fill per bar), so a
replay after a crash recreates the same ids and the journal ignores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from raytrade.actors.events import QuoteEvent
from raytrade.actors.records import Fill, Rejection
from raytrade.envs.accounting import (
    CASH,
    EQUITY,
    FEES,
    SLIPPAGE,
    TARGET,
    TURNOVER,
    UNITS,
    mark_close,
    new_account,
)
from raytrade.envs.bars import Bar
from raytrade.envs.costs import C_HALF_SPREAD, CostModel, cost_input_kernel
from raytrade.envs.errors import ConfigError
from raytrade.envs.execution import decide, fill_and_mark
from raytrade.envs.risk import RiskConfig


@dataclass(frozen=True)
class BrokerConfig:
    """Paper account settings. Money in quote currency."""

    initial_equity: float = 10_000.0
    """Starting balance."""
    costs: CostModel = field(default_factory=CostModel)
    """Fees and slippage model (the policy's training costs by default)."""
    risk: RiskConfig = field(default_factory=RiskConfig)
    """Risk rules (the policy's training rules by default)."""
    latency_bars: int = 1
    """Bars between a decision and its fill (1: the next bar's open)."""
    max_leverage: float = 1.0
    """Largest gross notional as a multiple of equity; larger orders are rejected."""
    use_quote_spread: bool = True
    """Use the live bookTicker half spread when one is known."""

    def __post_init__(self) -> None:
        if not self.initial_equity > 0 or self.latency_bars < 1 or not self.max_leverage > 0:
            raise ConfigError("BrokerConfig: initial_equity and max_leverage must be > 0, "
                              "latency_bars >= 1")


class PaperBroker:
    """One symbol's paper account (module docstring)."""

    def __init__(self, config: BrokerConfig, symbol: str, account_id: str = "paper") -> None:
        self.config = config
        self.symbol = symbol
        self.account_id = account_id
        self._cp = config.costs.params()
        self._rp = config.risk.params()
        self._alpha = 2.0 / (config.costs.sigma_span + 1.0)
        self.acct = new_account(config.initial_equity)
        self.pending = np.zeros(config.latency_bars)
        self.cost_state = np.zeros(3)
        self.quote_volume = math.nan
        self.sigma = math.nan
        self.decisions = 0
        self.quote: QuoteEvent | None = None

    # ---- bars
    def observe(self, bar: Bar) -> None:
        """Update the cost inputs with a closed bar (every bar, warm-up included)."""
        qv = np.empty(1)
        sigma = np.empty(1)
        cost_input_kernel(self.cost_state, np.array([bar.close]), np.array([bar.volume]),
                          self._alpha, qv, sigma)
        self.quote_volume, self.sigma = float(qv[0]), float(sigma[0])

    def on_bar(self, bar: Bar) -> Fill | Rejection | None:
        """Fill what is due at ``bar.open``, mark at ``bar.close``, then ``observe`` it.

        Before the first decision the account is only observed (no marking), as the
        backtest starts marking after its first decision.
        """
        result: Fill | Rejection | None = None
        if self.decisions > 0:
            t = self.decisions - 1
            due = float(self.pending[(t + 1) % self.pending.shape[0]])
            reason = self._refusal(due, bar) if due != self.acct[TARGET] else None
            if reason is not None:
                mark_close(self.acct, bar.close, self._cp)
                result = Rejection(self.symbol, bar.ts, due, reason)
            else:
                before = self.acct.copy()
                fill_and_mark(self.acct, t, bar.open, bar.close, self.quote_volume, self.sigma,
                              self._effective_costs(), self.pending)
                result = self._fill_record(before, bar, due)
        self.observe(bar)
        return result

    def decide(self, requested: float, close: float) -> tuple[float, int]:
        """Risk rules on ``requested`` at this close; returns (decided target, risk event)."""
        event = decide(self.acct, requested, self.decisions, close, self._rp, self.pending)
        self.decisions += 1
        return float(self.pending[(self.decisions - 1) % self.pending.shape[0]]), int(event)

    # ---- quotes and checks
    def on_quote(self, quote: QuoteEvent) -> None:
        """Remember the latest best bid and ask."""
        self.quote = quote

    def _effective_costs(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        q = self.quote
        if not self.config.use_quote_spread or q is None or not q.two_sided:
            return self._cp
        cp = self._cp.copy()
        cp[C_HALF_SPREAD] = q.half_spread
        return cp

    def _refusal(self, target: float, bar: Bar) -> str | None:
        q = self.quote
        if self.config.use_quote_spread and q is not None and not q.two_sided:
            return (f"empty or one-sided book (bid {q.bid} x {q.bid_qty}, ask {q.ask} x "
                    f"{q.ask_qty}): no fill at price 0 or NaN")
        equity = self.acct[CASH] + self.acct[UNITS] * bar.open
        if not equity > 0:
            return f"insufficient balance: equity {equity:.2f} at the open is not positive"
        if abs(target) > self.config.max_leverage + 1e-12:
            return (f"insufficient balance: target {target:g} needs notional "
                    f"{abs(target) * equity:.2f}, buying power is {self.config.max_leverage:g}"
                    f" x equity {equity:.2f}")
        return None

    def _fill_record(self, before: np.ndarray[Any, np.dtype[np.float64]], bar: Bar,
                     target: float) -> Fill | None:
        qty = float(self.acct[UNITS] - before[UNITS])
        notional = float(self.acct[TURNOVER] - before[TURNOVER])
        if qty == 0.0 or notional == 0.0:
            return None
        return Fill(fill_id=f"{self.account_id}:{self.symbol}:{bar.ts}", symbol=self.symbol,
                    bar_ts=bar.ts, target=target, qty=qty, price=notional / abs(qty),
                    notional=notional, fee=float(self.acct[FEES] - before[FEES]),
                    slippage=float(self.acct[SLIPPAGE] - before[SLIPPAGE]))

    # ---- persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to resume exactly (floats round-trip through JSON)."""
        return {"acct": self.acct.tolist(), "pending": self.pending.tolist(),
                "cost_state": self.cost_state.tolist(), "quote_volume": self.quote_volume,
                "sigma": self.sigma, "decisions": self.decisions}

    def restore(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""
        acct = np.asarray(state["acct"], dtype=np.float64)
        pending = np.asarray(state["pending"], dtype=np.float64)
        if acct.shape != self.acct.shape or pending.shape != self.pending.shape:
            raise ConfigError("journal account state does not match this broker's layout "
                              "or latency")
        self.acct = acct
        self.pending = pending
        self.cost_state = np.asarray(state["cost_state"], dtype=np.float64)
        self.quote_volume = float(state["quote_volume"])
        self.sigma = float(state["sigma"])
        self.decisions = int(state["decisions"])

    @property
    def equity(self) -> float:
        """Equity marked at the last close."""
        return float(self.acct[EQUITY])

    @property
    def position(self) -> float:
        """Target position held (fraction of equity)."""
        return float(self.acct[TARGET])
