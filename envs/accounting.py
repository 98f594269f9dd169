"""Target-position accounting: one set of numba functions for env, backtest and paper broker.

Convention:
- An action names a *target position* as a fraction of equity (-1 short, 0 flat, 1 long;
  fractional and leveraged values such as 0.5 or 2 are allowed).
- A target is reached by **one trade when it changes**, sized from equity marked at the
  fill bar's open so that the position and its fee together equal ``target * equity``:
  ``units = target * equity_at_open / (fill_price * (1 + fee_rate))`` (a target of 1
  never borrows to pay its own fee; backtesting.py sizes the same way). While the target is
  unchanged the units are held, so exposure drifts with the price and no rebalancing
  trades are made.
- Fills happen at a bar's open (never at the close that produced the decision), at
  ``open * (1 +/- slippage)``; the fee is charged on the traded notional at that price.
- Equity is marked at each close: ``cash + units * close``, after borrow on short notional
  and on borrowed cash has been charged for the bar.

The account is a float64 vector (layout below) so the scalar env, the numba-vectorized env,
the backtest and the live paper broker all run exactly these functions.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from raytrade.envs.bars import FloatArray
from raytrade.envs.costs import C_BORROW, C_FEE, slippage_fraction

# Account vector layout (all in quote currency unless stated).
CASH = 0
UNITS = 1            # base units held, signed
EQUITY = 2           # marked at the last close
PEAK = 3             # highest marked equity
FEES = 4             # fees paid, cumulative
SLIPPAGE = 5         # slippage paid, cumulative (|units| * |fill - reference price|)
BORROW = 6           # borrow/funding paid, cumulative
TURNOVER = 7         # traded notional, cumulative
TRADES = 8           # number of fills (a reversal is one fill)
TARGET = 9           # target position currently held (fraction of equity)
ENTRY = 10           # average entry price of the open position (0 when flat)
BARS_IN_POS = 11     # closes seen with a non-zero position since it was opened
REQUESTED = 12       # the last target requested by the agent (before risk rules)
COOLDOWN = 13        # decisions left in a stop-loss cooldown
HALTED = 14          # 1 once the drawdown halt fired
PREV_EQUITY = 15     # equity marked at the close before the last one
STOPS = 16           # number of stop-losses fired
INITIAL = 17         # starting equity
DECIDED = 18         # the last target decided by the risk rules (may not be filled yet)
REALIZED = 19        # realized PnL of closed units at fill prices, before fees and borrow
ACCOUNT_SIZE = 20


def new_account(initial_equity: float = 10_000.0) -> FloatArray:
    """A flat account holding ``initial_equity`` in cash (quote currency)."""
    acct = np.zeros(ACCOUNT_SIZE, dtype=np.float64)
    acct[CASH] = initial_equity
    acct[EQUITY] = initial_equity
    acct[PEAK] = initial_equity
    acct[PREV_EQUITY] = initial_equity
    acct[INITIAL] = initial_equity
    return acct


@numba.njit(cache=True)
def target_units(target: float, equity: float, fill_price: float,
                 fee_rate: float) -> float:  # pragma: no cover - compiled
    """Base units for ``target`` (a fraction of ``equity``, quote currency) bought or sold
    at ``fill_price``, so that the position and its fee together are ``target * equity``
    (the module docstring's sizing; the live order planner sizes with it too)."""
    return target * equity / (fill_price * (1.0 + fee_rate))


@numba.njit(cache=True)
def execute_target(acct: FloatArray, target: float, price: float, bar_quote_volume: float,
                   sigma: float, cp: FloatArray) -> float:  # pragma: no cover - compiled
    """Trade to ``target`` at reference ``price`` if the target changed; return the notional.

    Does nothing (returns 0) when the target equals the one held, when equity marked at
    ``price`` is not positive, or when the price is not a positive finite number.
    """
    if target == acct[TARGET] or not (price > 0.0) or math.isinf(price):
        return 0.0
    units = acct[UNITS]
    equity = acct[CASH] + units * price
    if equity <= 0.0:
        return 0.0
    want = target * equity / price
    est_notional = abs(want - units) * price
    slip = slippage_fraction(est_notional, bar_quote_volume, sigma, cp)
    delta_sign = 1.0 if want > units else -1.0
    fill = price * (1.0 + slip * delta_sign)
    want = target_units(target, equity, fill, cp[C_FEE])
    delta = want - units
    notional = abs(delta) * fill
    fee = notional * cp[C_FEE]
    acct[CASH] -= delta * fill + fee
    acct[FEES] += fee
    acct[SLIPPAGE] += abs(delta) * abs(fill - price)
    acct[TURNOVER] += notional
    if delta != 0.0:
        acct[TRADES] += 1.0
    # realized PnL on the part of the position this trade closes
    if units != 0.0 and (delta > 0.0) != (units > 0.0):
        closed = min(abs(units), abs(delta))
        side = 1.0 if units > 0.0 else -1.0
        acct[REALIZED] += closed * (fill - acct[ENTRY]) * side
    # average entry price of the remaining position
    if want == 0.0:
        acct[ENTRY] = 0.0
        acct[BARS_IN_POS] = 0.0
    elif units == 0.0 or (units > 0.0) != (want > 0.0):
        acct[ENTRY] = fill
        acct[BARS_IN_POS] = 0.0
    elif abs(want) > abs(units):
        acct[ENTRY] = (acct[ENTRY] * abs(units) + fill * abs(delta)) / abs(want)
    acct[UNITS] = want
    acct[TARGET] = target
    return notional


@numba.njit(cache=True)
def mark_close(acct: FloatArray, close: float, cp: FloatArray) -> float:  # pragma: no cover
    """Charge the bar's borrow, mark equity at ``close``; return the borrow charged."""
    units = acct[UNITS]
    borrowed = 0.0
    if units < 0.0:
        borrowed += -units * close
    if acct[CASH] < 0.0:
        borrowed += -acct[CASH]
    cost = borrowed * cp[C_BORROW]
    acct[CASH] -= cost
    acct[BORROW] += cost
    acct[PREV_EQUITY] = acct[EQUITY]
    acct[EQUITY] = acct[CASH] + units * close
    if acct[EQUITY] > acct[PEAK]:
        acct[PEAK] = acct[EQUITY]
    if units != 0.0:
        acct[BARS_IN_POS] += 1.0
    return cost


@numba.njit(cache=True)
def unrealized_return(acct: FloatArray, price: float) -> float:  # pragma: no cover
    """Return of the open position since its average entry, signed by side (0 when flat)."""
    if acct[UNITS] == 0.0 or acct[ENTRY] <= 0.0:
        return 0.0
    side = 1.0 if acct[UNITS] > 0.0 else -1.0
    return side * (price / acct[ENTRY] - 1.0)


@numba.njit(cache=True)
def unrealized_pnl(acct: FloatArray, price: float) -> float:  # pragma: no cover - compiled
    """PnL of the open position at ``price`` against its average entry (quote currency)."""
    if acct[UNITS] == 0.0:
        return 0.0
    return acct[UNITS] * (price - acct[ENTRY])


@numba.njit(cache=True)
def drawdown(acct: FloatArray) -> float:  # pragma: no cover - compiled
    """Current drawdown from the peak of marked equity, as a fraction (0 at a new high)."""
    if acct[PEAK] <= 0.0:
        return 1.0
    return max(0.0, (acct[PEAK] - acct[EQUITY]) / acct[PEAK])
