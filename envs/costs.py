"""Trading costs: taker fees, the slippage model, borrow/funding, and their causal inputs.

Slippage, as a fraction of the reference price (the bar open a market order fills at)::

    slip = min(max_slippage, half_spread + impact * sigma * sqrt(notional / bar_volume))

``notional`` is the order's quote value, ``bar_volume`` the quote volume of the last
*closed* bar and ``sigma`` its per-bar volatility, both known when the order is decided:
the cost model never reads the bar being filled. Buys pay ``open * (1 + slip)``, sells get
``open * (1 - slip)``. A fixed slippage (``fixed_slippage_bps``) replaces the model; zero
turns it off. Fees are ``fee_bps`` of traded notional at the fill price. Borrow is charged
at each bar's close on short notional and on borrowed cash (leverage above 1).

``sigma_t = sqrt(EWMA(r^2))`` of close-to-close log returns with ``alpha = 2 / (span + 1)``,
seeded with the first squared return; computed by one numba kernel with state so the
backtest and the live broker get the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from raytrade.envs.bars import BarTable, FloatArray
from raytrade.envs.errors import ConfigError

# Layout of the float64 parameter vector the kernels take.
C_FEE, C_HALF_SPREAD, C_IMPACT, C_MAX_SLIP, C_FIXED_SLIP, C_BORROW = range(6)
N_COST_PARAMS = 6


@dataclass(frozen=True)
class CostModel:
    """Execution costs. All rates in basis points (1 bp = 0.01 %)."""

    fee_bps: float = 10.0
    """Taker fee, bps of traded notional (Binance spot default tier: 10)."""
    half_spread_bps: float = 1.0
    """Half the bid-ask spread paid by every market order, bps."""
    impact_coef: float = 1.0
    """Multiplier of ``sigma * sqrt(notional / bar quote volume)`` (dimensionless)."""
    max_slippage_bps: float = 50.0
    """Cap on the modelled slippage, bps."""
    fixed_slippage_bps: float | None = None
    """If set, a fixed slippage in bps replaces the model (0 turns slippage off)."""
    borrow_bps_per_bar: float = 0.0
    """Borrow or funding cost per bar on short notional and borrowed cash, bps."""
    sigma_span: int = 20
    """EWMA span of the volatility estimate feeding the impact term, bars."""

    def __post_init__(self) -> None:
        for name in ("fee_bps", "half_spread_bps", "impact_coef", "max_slippage_bps",
                     "borrow_bps_per_bar"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"CostModel.{name} must be finite and >= 0, got {value}")
        fixed = self.fixed_slippage_bps
        if fixed is not None and (not math.isfinite(fixed) or fixed < 0):
            raise ConfigError(f"CostModel.fixed_slippage_bps must be >= 0, got {fixed}")
        if self.sigma_span < 1:
            raise ConfigError("CostModel.sigma_span must be >= 1")

    @classmethod
    def free(cls) -> CostModel:
        """No fees, no slippage, no borrow (for conservation checks)."""
        return cls(fee_bps=0.0, half_spread_bps=0.0, impact_coef=0.0, fixed_slippage_bps=0.0,
                   borrow_bps_per_bar=0.0)

    def params(self) -> FloatArray:
        """The float64 parameter vector (rates as fractions) the kernels read."""
        fixed = -1.0 if self.fixed_slippage_bps is None else self.fixed_slippage_bps / 1e4
        return np.array([self.fee_bps / 1e4, self.half_spread_bps / 1e4, self.impact_coef,
                         self.max_slippage_bps / 1e4, fixed, self.borrow_bps_per_bar / 1e4])


@numba.njit(cache=True)
def slippage_fraction(notional: float, bar_quote_volume: float, sigma: float,
                      cp: FloatArray) -> float:  # pragma: no cover - compiled
    """Slippage as a fraction of the reference price for an order of ``notional`` (quote)."""
    if cp[C_FIXED_SLIP] >= 0.0:
        return cp[C_FIXED_SLIP]
    if notional <= 0.0:
        return 0.0
    if bar_quote_volume > 0.0 and sigma == sigma:
        slip = cp[C_HALF_SPREAD] + cp[C_IMPACT] * sigma * math.sqrt(notional / bar_quote_volume)
    else:
        slip = cp[C_MAX_SLIP]  # no volume (or no estimate yet): assume the worst
    return min(slip, cp[C_MAX_SLIP])


@numba.njit(cache=True)
def cost_input_kernel(state: FloatArray, close: FloatArray, volume: FloatArray, alpha: float,
                      out_quote_volume: FloatArray,
                      out_sigma: FloatArray) -> None:  # pragma: no cover - compiled
    """Per closed bar: its quote volume and the EWMA volatility up to it (NaN on bar 0).

    state: [bars seen, previous close, EWMA of squared log returns].
    """
    for t in range(close.shape[0]):
        c = close[t]
        out_quote_volume[t] = volume[t] * c
        n = int(state[0])
        if n == 0:
            out_sigma[t] = np.nan
        else:
            r = math.log(c / state[1])
            if n == 1:
                state[2] = r * r
            else:
                state[2] += alpha * (r * r - state[2])
            out_sigma[t] = math.sqrt(state[2])
        state[0] = n + 1
        state[1] = c


def cost_inputs(bars: BarTable, costs: CostModel) -> tuple[FloatArray, FloatArray]:
    """Quote volume and volatility per bar, as the execution model reads them."""
    qv = np.empty(len(bars))
    sigma = np.empty(len(bars))
    cost_input_kernel(np.zeros(3), bars.close, bars.volume, 2.0 / (costs.sigma_span + 1.0),
                      qv, sigma)
    return qv, sigma
