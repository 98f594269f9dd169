"""Seeded synthetic markets with a planted, known-exploitable structure, for learning tests.

Two structures, both on a log-price random walk with Gaussian noise of ``vol`` per bar:

- ``"regime"``: a hidden two-state Markov chain ``s_t`` in {-1, +1} that stays put with
  probability ``p_stay`` per bar; the bar's log return is ``s_t * drift + vol * z``. The
  oracle holds ``s_t`` (long in up regimes, short in down ones): deciding at the close of
  bar t, it earns ``s_t * E[r_{t+1}] = drift * (2 p_stay - 1)`` per bar before costs. The
  state is hidden but persistent, so recent returns reveal it: an agent can learn it.
- ``"mean_reversion"``: ``r_t = -phi * r_{t-1} + vol * z``. Given the close of bar t the
  expected next return is ``-phi * r_t``, so the oracle holds ``-sign(r_t)``.

The regime oracle sees the hidden state, which no trader can. ``causal_position`` is the
best a policy that sees only past prices can do: the HMM forward filter with the true
parameters, holding the sign of the predicted next regime. It is the honest ceiling for an
agent (on the default regime market it earns about 80% of the oracle's log growth before
costs); for ``"mean_reversion"`` the oracle is already causal and the two coincide.

Bars are continuous (each open equals the previous close), highs and lows extend the body
by half-normal wicks, volume is log-normal; every bar passes validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import BarTable, FloatArray
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

DEFAULT_START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC


@dataclass(frozen=True)
class SyntheticMarket:
    """Bars plus the ground truth used to grade agents.

    Attributes:
        bars: the market.
        oracle_position: the oracle's target position in {-1, +1} decided at the close of
            each bar (held during the next bar).
        regime: the hidden state per bar (``"regime"`` kind), or the sign of the expected
            next return (``"mean_reversion"`` kind).
        kind, seed: how it was made.
    """

    bars: BarTable
    oracle_position: FloatArray
    regime: npt.NDArray[np.int8]
    kind: str
    seed: int
    drift: float = 0.0
    vol: float = 0.0
    p_stay: float = 0.0

    def causal_position(self) -> FloatArray:
        """The Bayes-optimal causal target position in {-1, +1} decided at the close of
        each bar from closes up to that bar only (see the module docstring)."""
        if self.kind != "regime":
            return self.oracle_position
        closes = self.bars.close
        returns = np.diff(np.log(closes), prepend=np.log(self.bars.open[0]))
        return regime_filter_position(returns, self.drift, self.vol, self.p_stay)


def planted_market(n_bars: int = 20_000, *, kind: str = "regime", seed: int = 0,
                   vol: float = 0.002, drift: float = 0.0006, p_stay: float = 0.995,
                   phi: float = 0.3, interval: str = "5m", symbol: str = "SYNTHUSDT",
                   start_ms: int = DEFAULT_START_MS, start_price: float = 100.0) -> SyntheticMarket:
    """Generate a planted-signal market; the same arguments always give the same bars.

    Args:
        n_bars: number of bars.
        kind: ``"regime"`` or ``"mean_reversion"`` (see the module docstring).
        seed: seed of the ``numpy.random.Generator``.
        vol: per-bar standard deviation of the log-return noise.
        drift: per-bar log drift magnitude of the regimes (``"regime"``).
        p_stay: per-bar probability of staying in the regime (``"regime"``).
        phi: first-order mean-reversion coefficient of returns (``"mean_reversion"``).
        interval, symbol, start_ms, start_price: labelling of the bars.
    """
    if n_bars < 2:
        raise ConfigError("n_bars must be at least 2")
    if not 0 < p_stay < 1 or not 0 <= phi < 1 or vol <= 0:
        raise ConfigError("need 0 < p_stay < 1, 0 <= phi < 1 and vol > 0")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(n_bars) * vol
    if kind == "regime":
        flips = rng.random(n_bars) >= p_stay
        state = np.where(np.cumsum(flips) % 2 == 0, 1, -1).astype(np.int8)
        if rng.random() < 0.5:
            state = (-state).astype(np.int8)
        returns = state * drift + noise
        oracle = state.astype(np.float64)
    elif kind == "mean_reversion":
        returns = np.empty(n_bars)
        prev = 0.0
        for t in range(n_bars):
            prev = -phi * prev + noise[t]
            returns[t] = prev
        state = np.where(returns <= 0, 1, -1).astype(np.int8)
        oracle = state.astype(np.float64)
    else:
        raise ConfigError(f"unknown synthetic market kind {kind!r}: 'regime' or 'mean_reversion'")
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick_hi = np.abs(rng.standard_normal(n_bars)) * vol * 0.5
    wick_lo = np.abs(rng.standard_normal(n_bars)) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    volume = rng.lognormal(mean=3.0, sigma=0.5, size=n_bars)
    iv = interval_to_ms(interval)
    ts = (start_ms // iv) * iv + iv * np.arange(n_bars, dtype=np.int64)
    bars = BarTable.from_arrays(ts, np.column_stack([open_, high, low, close, volume]),
                                interval_ms=iv, symbol=symbol,
                                source=f"synthetic:{kind}:seed={seed}")
    return SyntheticMarket(bars=bars, oracle_position=oracle, regime=state, kind=kind, seed=seed,
                           drift=drift, vol=vol, p_stay=p_stay)


def regime_filter_position(returns: FloatArray, drift: float, vol: float,
                           p_stay: float) -> FloatArray:
    """Sign of the predicted next regime from the HMM forward filter, per bar.

    ``returns[t]`` is bar t's log return; the state is +1 or -1 with Gaussian emissions of
    mean ``state * drift`` and standard deviation ``vol``, staying with ``p_stay``. The
    filter tracks the log odds of +1 (clipped to +-50 so a long regime cannot make it
    deaf to a switch); each bar it applies the transition, then the log-likelihood ratio
    ``2 drift r / vol**2``. The output at t is the position for bar t + 1.
    """
    out = np.empty(len(returns))
    log_odds = 0.0
    llr = 2.0 * drift * np.asarray(returns, dtype=np.float64) / vol**2
    for t in range(len(returns)):
        p_up = 1.0 / (1.0 + np.exp(-log_odds))
        p_up = p_stay * p_up + (1.0 - p_stay) * (1.0 - p_up)  # the regime may switch
        log_odds = float(np.clip(np.log(p_up / (1.0 - p_up)) + llr[t], -50.0, 50.0))
        # predicted regime of the next bar: the transition keeps the sign of the log odds
        out[t] = 1.0 if log_odds >= 0.0 else -1.0
    return out
