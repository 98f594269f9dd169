"""One decision step and the backtest loop, both built on the shared accounting and risk.

``advance`` is *the* step of raytrade: the agent's request at the close of bar ``t`` goes
through the risk rules; the target decided ``latency`` bars earlier is filled at the open of
bar ``t + 1`` (so with the default latency of 1 a decision fills at the very next open);
the account is marked at the close of bar ``t + 1``. The scalar env calls it once per step,
the vector env and ``simulate`` call it in numba loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.accounting import (
    BARS_IN_POS,
    BORROW,
    EQUITY,
    FEES,
    REALIZED,
    SLIPPAGE,
    TARGET,
    TRADES,
    TURNOVER,
    UNITS,
    execute_target,
    mark_close,
    new_account,
    unrealized_pnl,
)
from raytrade.envs.bars import BarTable, FloatArray
from raytrade.envs.costs import CostModel, cost_inputs
from raytrade.envs.errors import ConfigError
from raytrade.envs.risk import RiskConfig, risk_target


@numba.njit(cache=True)
def decide(acct: FloatArray, requested: float, t: int, close: float, rp: FloatArray,
           pending: FloatArray) -> int:  # pragma: no cover - compiled
    """The decision half of a step: risk rules on ``requested`` at the close of bar ``t``;
    the decided target joins ``pending``. Returns the risk event (see ``risk.py``)."""
    target, event = risk_target(acct, requested, close, rp)
    pending[t % pending.shape[0]] = target
    return event


@numba.njit(cache=True)
def fill_and_mark(acct: FloatArray, t: int, open_next: float, close_next: float,
                  quote_volume: float, sigma: float, cp: FloatArray,
                  pending: FloatArray) -> float:  # pragma: no cover - compiled
    """The fill half of a step: the target decided ``latency - 1`` decisions before bar
    ``t``'s close fills at the open of bar ``t + 1`` (cost inputs of bar ``t``), then the
    account is marked at that bar's close. Returns the traded notional."""
    fill_target = pending[(t + 1) % pending.shape[0]]
    notional = execute_target(acct, fill_target, open_next, quote_volume, sigma, cp)
    mark_close(acct, close_next, cp)
    return notional


@numba.njit(cache=True)
def advance(acct: FloatArray, requested: float, t: int, opens: FloatArray, closes: FloatArray,
            quote_volume: FloatArray, sigma: FloatArray, cp: FloatArray, rp: FloatArray,
            pending: FloatArray) -> int:  # pragma: no cover - compiled
    """Decide at the close of bar ``t``, fill at the open of ``t + 1``, mark at its close.

    ``pending`` holds the last ``latency`` decided targets (its length is the latency in
    bars, at least 1); the target filled now is the one decided ``latency - 1`` steps ago.
    Returns the risk event of this decision (see ``risk.py``). The live paper broker calls
    the two halves, ``decide`` and ``fill_and_mark``, as its bars arrive.
    """
    event = decide(acct, requested, t, closes[t], rp, pending)
    fill_and_mark(acct, t, opens[t + 1], closes[t + 1], quote_volume[t], sigma[t], cp, pending)
    return event


# Columns of the per-bar record written by ``simulate_kernel``.
REC_EQUITY, REC_UNITS, REC_TARGET, REC_FEES, REC_SLIPPAGE, REC_BORROW, REC_TURNOVER, \
    REC_TRADES, REC_EVENT, REC_REALIZED, REC_UNREALIZED = range(11)
N_RECORD = 11


@numba.njit(cache=True)
def simulate_kernel(acct: FloatArray, targets: FloatArray, start: int, opens: FloatArray,
                    closes: FloatArray, quote_volume: FloatArray, sigma: FloatArray,
                    cp: FloatArray, rp: FloatArray, pending: FloatArray,
                    record: FloatArray) -> None:  # pragma: no cover - compiled
    """Run requested targets ``targets[t]`` (decided at close t) from bar ``start`` on.

    ``record[t]`` is the account after the close of bar ``t`` (cumulative costs).
    """
    n = closes.shape[0]
    for t in range(start, n):
        if t > start:
            event = advance(acct, targets[t - 1], t - 1, opens, closes, quote_volume, sigma,
                            cp, rp, pending)
        else:
            event = 0
        record[t, REC_EQUITY] = acct[EQUITY]
        record[t, REC_UNITS] = acct[UNITS]
        record[t, REC_TARGET] = acct[TARGET]
        record[t, REC_FEES] = acct[FEES]
        record[t, REC_SLIPPAGE] = acct[SLIPPAGE]
        record[t, REC_BORROW] = acct[BORROW]
        record[t, REC_TURNOVER] = acct[TURNOVER]
        record[t, REC_TRADES] = acct[TRADES]
        record[t, REC_EVENT] = event
        record[t, REC_REALIZED] = acct[REALIZED]
        record[t, REC_UNREALIZED] = unrealized_pnl(acct, closes[t])


@dataclass(frozen=True)
class SimulationResult:
    """Per-bar account history of a simulation (rows before ``start`` are NaN).

    Attributes:
        ts: bar open times.
        equity, units, target: marked equity, units held and target held after each close.
        fees, slippage, borrow, turnover: cumulative costs and traded notional (quote).
        trades: cumulative fill count.
        realized: cumulative realized PnL at fill prices, before fees and borrow (quote).
        unrealized: PnL of the open position at each close against its average entry.
        events: risk event decided at the previous close (0 none, 1 stop, 2 halt).
        bars_in_position: closes held in the final position.
        start: first bar of the simulation.
    """

    ts: npt.NDArray[np.int64]
    equity: FloatArray
    units: FloatArray
    target: FloatArray
    fees: FloatArray
    slippage: FloatArray
    borrow: FloatArray
    turnover: FloatArray
    trades: FloatArray
    events: FloatArray
    realized: FloatArray
    unrealized: FloatArray
    bars_in_position: int
    start: int


def simulate(bars: BarTable, targets: npt.ArrayLike, *, costs: CostModel | None = None,
             risk: RiskConfig | None = None, latency_bars: int = 1,
             initial_equity: float = 10_000.0, start: int = 0) -> SimulationResult:
    """Backtest a target-position series through the shared accounting.

    ``targets[t]`` is the position wanted at the close of bar ``t`` (a fraction of equity);
    it fills at the open of bar ``t + latency_bars``. NaN targets are rejected.
    """
    costs = costs or CostModel()
    risk = risk or RiskConfig(max_drawdown=1.0)
    tg = np.ascontiguousarray(targets, dtype=np.float64)
    if tg.shape != (len(bars),):
        raise ConfigError(f"need one target per bar ({len(bars)}), got shape {tg.shape}")
    if not np.isfinite(tg).all():
        bad = int(np.flatnonzero(~np.isfinite(tg))[0])
        raise ConfigError(f"target at bar {bad} is not a finite number")
    if latency_bars < 1:
        raise ConfigError("latency_bars must be >= 1: a decision cannot fill at its own close")
    if not 0 <= start < len(bars):
        raise ConfigError(f"start {start} outside the {len(bars)} bars")
    qv, sigma = cost_inputs(bars, costs)
    acct = new_account(initial_equity)
    record = np.full((len(bars), N_RECORD), np.nan)
    pending = np.zeros(latency_bars)
    simulate_kernel(acct, tg, start, bars.open, bars.close, qv, sigma, costs.params(),
                    risk.params(), pending, record)
    return SimulationResult(
        ts=bars.ts, equity=record[:, REC_EQUITY], units=record[:, REC_UNITS],
        target=record[:, REC_TARGET], fees=record[:, REC_FEES],
        slippage=record[:, REC_SLIPPAGE], borrow=record[:, REC_BORROW],
        turnover=record[:, REC_TURNOVER], trades=record[:, REC_TRADES],
        events=record[:, REC_EVENT], realized=record[:, REC_REALIZED],
        unrealized=record[:, REC_UNREALIZED], bars_in_position=int(acct[BARS_IN_POS]), start=start)
