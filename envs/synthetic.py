"""Seeded synthetic markets with a planted, known-exploitable structure, for learning tests.

Three structures, all on a log-price random walk with Gaussian noise of ``vol`` per bar:

- ``"regime"``: a hidden two-state Markov chain ``s_t`` in {-1, +1} that stays put with
  probability ``p_stay`` per bar; the bar's log return is ``s_t * drift + vol * z``. The
  oracle holds ``s_t`` (long in up regimes, short in down ones): deciding at the close of
  bar t, it earns ``s_t * E[r_{t+1}] = drift * (2 p_stay - 1)`` per bar before costs. The
  state is hidden but persistent, so recent returns reveal it: an agent can learn it.
- ``"mean_reversion"``: ``r_t = -phi * r_{t-1} + vol * z``. Given the close of bar t the
  expected next return is ``-phi * r_t``, so the oracle holds ``-sign(r_t)``.
- ``"randomwalk"``: ``r_t = vol * z``, no signal at all (the control: the same volatility
  as the regime market, nothing to learn). The oracle and the filter hold flat (0): the
  best a trader can do after costs is not to trade.

``drift`` and ``vol`` are per-bar log returns (0.0006 = 6 bp per bar). A regime market
with a small ``drift`` (a "weak-drift" market) still has an oracle that profits, but its
regimes are too faint for any causal policy to detect before they end: a few bp per bar
under 20 bp of noise pays neither a 10 bp fee nor the slippage.

The regime oracle sees the hidden state, which no trader can. ``causal_position`` is the
best a policy that sees only past prices can do: the HMM forward filter with the true
parameters, holding the sign of the predicted next regime. It is the honest ceiling for an
agent (on the default regime market it earns about 80% of the oracle's log growth before
costs); for ``"mean_reversion"`` the oracle is already causal and the two coincide.
``causal_position(switch_cost)`` is the same filter trading under costs: it changes
position only when the evidence against the held one crosses a band of log odds, the band
that earns most after that cost on a separate calibration market with the same parameters
(a margin on the filter's value of switching, as the agent's decision rule puts one on its
Q advantage).

Bars are continuous (each open equals the previous close), highs and lows extend the body
by half-normal wicks, volume is log-normal (median ``e**3`` = 20.1 base units per bar,
about 2,000 quote at the start price of 100, times ``volume_scale``); every bar passes
validation. The volume only matters to the modelled slippage (``envs/costs.py``): at the
default scale a 10,000 order is five bars' volume and pays the slippage cap, so markets
meant for realistic costs use ``volume_scale=1000`` (about 2 M quote per bar, the order
of ETHUSDT's 5 m bars), which makes a full-equity trade pay 2-3 bp.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import BarTable, FloatArray
from raytrade.envs.errors import ConfigError
from raytrade.envs.intervals import interval_to_ms

DEFAULT_START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
KINDS = ("regime", "mean_reversion", "randomwalk")
DEFAULT_DRIFT = 0.0006
"""The regimes' per-bar log drift unless told otherwise (6 bp per bar)."""


@dataclass(frozen=True)
class SyntheticMarket:
    """Bars plus the ground truth used to grade agents.

    Attributes:
        bars: the market.
        oracle_position: the oracle's target position in {-1, +1} decided at the close of
            each bar (held during the next bar); 0 everywhere on a random walk.
        regime: the hidden state per bar (``"regime"`` kind), the sign of the expected
            next return (``"mean_reversion"`` kind), 0 (``"randomwalk"``).
        kind, seed: how it was made.
        drift, vol, p_stay: the generating parameters (per-bar log returns; probability).
    """

    bars: BarTable
    oracle_position: FloatArray
    regime: npt.NDArray[np.int8]
    kind: str
    seed: int
    drift: float = 0.0
    vol: float = 0.0
    p_stay: float = 0.0

    def causal_position(self, switch_cost: float = 0.0) -> FloatArray:
        """The filter's causal target position decided at the close of each bar from
        closes up to that bar only (see the module docstring): in {-1, +1} without costs;
        with ``switch_cost`` (cost of trading one unit of equity, a fraction: 0.0013 =
        13 bp) it trades through the hysteresis band :func:`cost_band` calibrates, flat
        until the evidence first crosses it (and for ever when no band pays)."""
        if self.kind != "regime":
            return self.oracle_position
        closes = self.bars.close
        returns = np.diff(np.log(closes), prepend=np.log(self.bars.open[0]))
        band = cost_band(self.drift, self.vol, self.p_stay, switch_cost)
        return regime_filter_position(returns, self.drift, self.vol, self.p_stay, band=band)


def planted_market(n_bars: int = 20_000, *, kind: str = "regime", seed: int = 0,
                   vol: float = 0.002, drift: float = DEFAULT_DRIFT, p_stay: float = 0.995,
                   phi: float = 0.3, interval: str = "5m", symbol: str = "SYNTHUSDT",
                   start_ms: int = DEFAULT_START_MS, start_price: float = 100.0,
                   volume_scale: float = 1.0) -> SyntheticMarket:
    """Generate a planted-signal market; the same arguments always give the same bars.

    Args:
        n_bars: number of bars.
        kind: ``"regime"``, ``"mean_reversion"`` or ``"randomwalk"`` (module docstring).
        seed: seed of the ``numpy.random.Generator``.
        vol: per-bar standard deviation of the log-return noise (0.002 = 20 bp).
        drift: per-bar log drift magnitude of the regimes (``"regime"``; 0.0006 = 6 bp).
        p_stay: per-bar probability of staying in the regime (``"regime"``).
        phi: first-order mean-reversion coefficient of returns (``"mean_reversion"``).
        interval, symbol, start_ms, start_price: labelling of the bars.
        volume_scale: multiplier of the bar volumes (module docstring); prices unchanged.
    """
    if n_bars < 2:
        raise ConfigError("n_bars must be at least 2")
    if not 0 < p_stay < 1 or not 0 <= phi < 1 or vol <= 0:
        raise ConfigError("need 0 < p_stay < 1, 0 <= phi < 1 and vol > 0")
    if not (math.isfinite(drift) and drift >= 0) or not (math.isfinite(volume_scale)
                                                         and volume_scale > 0):
        raise ConfigError(f"need drift >= 0 and volume_scale > 0, got drift={drift}, "
                          f"volume_scale={volume_scale}")
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
    elif kind == "randomwalk":
        returns = noise
        state = np.zeros(n_bars, dtype=np.int8)
        oracle = np.zeros(n_bars)
    else:
        raise ConfigError(f"unknown synthetic market kind {kind!r}: one of {', '.join(KINDS)}")
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick_hi = np.abs(rng.standard_normal(n_bars)) * vol * 0.5
    wick_lo = np.abs(rng.standard_normal(n_bars)) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    volume = rng.lognormal(mean=3.0, sigma=0.5, size=n_bars)
    if volume_scale != 1.0:  # (multiplying by 1.0 would not change a bar either)
        volume = volume * volume_scale
    iv = interval_to_ms(interval)
    ts = (start_ms // iv) * iv + iv * np.arange(n_bars, dtype=np.int64)
    bars = BarTable.from_arrays(ts, np.column_stack([open_, high, low, close, volume]),
                                interval_ms=iv, symbol=symbol,
                                source=f"synthetic:{kind}:seed={seed}")
    return SyntheticMarket(bars=bars, oracle_position=oracle, regime=state, kind=kind, seed=seed,
                           drift=drift, vol=vol, p_stay=p_stay)


def regime_filter_position(returns: FloatArray, drift: float, vol: float,
                           p_stay: float, *, band: float = 0.0) -> FloatArray:
    """Position for the next bar from the HMM forward filter, per bar.

    ``returns[t]`` is bar t's log return; the state is +1 or -1 with Gaussian emissions of
    mean ``state * drift`` and standard deviation ``vol``, staying with ``p_stay``. The
    filter tracks the log odds of +1 (:func:`filter_log_odds`). The output at t is the
    position for bar t + 1.

    With ``band`` 0 that is the sign of the predicted next regime, in {-1, +1}. With a
    ``band`` (log odds, > 0) the position changes only when the evidence against it is
    strong: long once the log odds reach ``band``, short once they reach ``-band``, held
    in between, flat until the first of these; ``inf`` never trades.
    """
    if not band >= 0:
        raise ConfigError(f"band must be >= 0, got {band}")
    log_odds = filter_log_odds(np.asarray(returns, dtype=np.float64), drift, vol, p_stay)
    if band == 0.0:
        return np.where(log_odds >= 0.0, 1.0, -1.0)
    return _hysteresis(log_odds, band)


def filter_log_odds(returns: FloatArray, drift: float, vol: float,
                    p_stay: float) -> FloatArray:
    """Per bar, the filtered log odds that the regime is +1 after bar t's return (and so
    that bar t + 1's is: the symmetric transition keeps the sign). Each bar applies the
    transition, then the log-likelihood ratio ``2 drift r / vol**2``; clipped to +-50 so a
    long regime cannot make the filter deaf to a switch."""
    return _log_odds_kernel(np.ascontiguousarray(returns, dtype=np.float64), drift, vol,
                            p_stay)


@numba.njit(cache=True)
def _log_odds_kernel(returns: FloatArray, drift: float, vol: float,
                     p_stay: float) -> FloatArray:  # pragma: no cover - compiled
    out = np.empty(returns.shape[0])
    log_odds = 0.0
    for t in range(returns.shape[0]):
        p_up = 1.0 / (1.0 + math.exp(-log_odds))
        p_up = p_stay * p_up + (1.0 - p_stay) * (1.0 - p_up)  # the regime may switch
        log_odds = math.log(p_up / (1.0 - p_up)) + 2.0 * drift * returns[t] / vol**2
        log_odds = min(50.0, max(-50.0, log_odds))
        out[t] = log_odds
    return out


@numba.njit(cache=True)
def _hysteresis(log_odds: FloatArray, band: float) -> FloatArray:  # pragma: no cover
    out = np.empty(log_odds.shape[0])
    held = 0.0
    for t in range(log_odds.shape[0]):
        if log_odds[t] >= band:
            held = 1.0
        elif log_odds[t] <= -band:
            held = -1.0
        out[t] = held
    return out


FILTER_BANDS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0,
                10.0, 12.0, 15.0, 20.0, math.inf)
"""The hysteresis bands (log odds) :func:`cost_band` chooses from; ``inf``: never trade."""
CALIBRATION_BARS = 200_000
CALIBRATION_SEED = 2**31 - 1


@functools.lru_cache(maxsize=64)
def cost_band(drift: float, vol: float, p_stay: float, switch_cost: float) -> float:
    """The filter's hysteresis band that maximizes log growth after ``switch_cost`` per
    unit of equity traded (a fraction: 0.0013 = 13 bp) on a long calibration market
    with the same parameters and its own seed (never the bars it will trade): the cost
    of a change of position ``|dx| * switch_cost`` against the edge of switching sooner.
    0 for a zero cost (the cost-blind filter); ``inf`` when no band pays the costs."""
    if not math.isfinite(switch_cost) or switch_cost < 0:
        raise ConfigError(f"switch_cost must be finite and >= 0, got {switch_cost}")
    if switch_cost == 0.0:
        return 0.0
    m = planted_market(CALIBRATION_BARS, seed=CALIBRATION_SEED, vol=vol, drift=drift,
                       p_stay=p_stay)
    returns = np.diff(np.log(m.bars.close), prepend=np.log(m.bars.open[0]))
    log_odds = filter_log_odds(returns, drift, vol, p_stay)
    best, best_growth = math.inf, 0.0
    for band in FILTER_BANDS[:-1]:
        pos = np.where(log_odds >= 0.0, 1.0, -1.0) if band == 0 else _hysteresis(log_odds,
                                                                                 band)
        growth = net_log_growth(pos, returns, switch_cost)
        if growth > best_growth:
            best, best_growth = band, growth
    return best


def net_log_growth(position: FloatArray, returns: FloatArray, switch_cost: float) -> float:
    """Log growth of holding ``position[t]`` over bar t + 1 (``returns`` are per-bar log
    returns), less ``switch_cost`` per unit of position changed, starting flat: the
    frictionless approximation the calibration ranks bands by (the env's accounting is
    the exact one)."""
    pos = np.asarray(position, dtype=np.float64)
    held = np.concatenate([[0.0], pos[:-1]])
    turnover = float(np.abs(pos[:-1] - held[:-1]).sum())
    return float((pos[:-1] * np.asarray(returns)[1:]).sum() - switch_cost * turnover)
