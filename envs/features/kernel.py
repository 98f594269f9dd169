"""All feature families of one FeatureSpec advanced by one compiled call over packed state.

``StreamingFeatures`` (``pipeline.py``) used to drive each family's kernel from Python and
stitch the columns together with numpy, which cost a dozen kernel dispatches, the higher
timeframes' forward fill and a handful of temporary arrays per call: most of a live bar's
~100 µs update. :func:`features_kernel` runs the same family kernels (``timeframe_kernel``,
``aggregate_kernel``, ``reference_kernel``, ``structure_kernel``, ``smc_kernel``,
``regime_kernel``) bar by bar inside one compiled loop, so a streaming update is one
dispatch and the batch path (every bar in one call) runs exactly the same code: streaming
equals batch bit for bit by construction, and the parity tests prove it.

Everything the kernels carry between calls lives in one float64 ``state`` array; the
integer parameters, the horizons and where each family's state starts live in one int64
``ints`` array (:class:`KernelLayout` builds both). Few arguments keep the dispatch cheap,
and one state array makes a copy of the whole pipeline state a single array copy.

Numba's disk cache sees only this file's source, not the family kernels it inlines; the
package keys its cache folder on a hash of every source file (``envs/__init__.py``), so a
change to any family kernel recompiles this one too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt
from raytrade.envs.bars import FloatArray, IntArray
from raytrade.envs.features.reference import reference_kernel, reference_state
from raytrade.envs.features.regime import N_COLUMNS as N_REGIME
from raytrade.envs.features.regime import regime_kernel, regime_state
from raytrade.envs.features.smc import N_COLUMNS as N_SMC
from raytrade.envs.features.smc import smc_kernel, smc_state
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.features.structure import OUT_PER_LEVEL, structure_kernel, structure_state
from raytrade.envs.features.timeframe import (
    N_SCALAR_COLUMNS,
    timeframe_kernel,
    timeframe_params,
    timeframe_state,
)
from raytrade.envs.intervals import interval_to_ms
from raytrade.envs.resample import AGG_STATE_SIZE, aggregate_kernel, new_aggregator_state

F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

# ints[0:_HEADER]: scalar parameters, then (offset, length) of each packed part.
_N_HTF, _LEVELS, _SMC_LEVEL, _OB, _CORR, _RW, _RVS, _RVL, _HAS_REF = range(9)
_BASE_H, _BASE_P, _HTF_H, _HTF_P, _REF_H, _HTF_MS = 9, 11, 13, 15, 17, 19  # ints parts
_S_BASE, _S_AGG, _S_HTF, _S_LAST, _S_REF, _S_STRUCT, _S_SMC, _S_REGIME = (
    21, 23, 25, 27, 29, 31, 33, 35)  # state parts (the HTF parts hold all timeframes)
_HEADER = 37


@dataclass(frozen=True)
class KernelLayout:
    """Packed parameters of one FeatureSpec and a fresh packed state for it.

    Attributes:
        ints: int64 parameters, horizons, timeframe lengths (ms) and where each family's
            state lies in ``state``; read-only.
        floats: float64 parameters (regime thresholds); read-only.
        state: the initial state (warm-up NaNs and zeros); copy it before use.
        htf_ms: the higher timeframes' lengths in ms, in the spec's order.
    """

    ints: IntArray
    floats: FloatArray
    state: FloatArray
    htf_ms: tuple[int, ...]

    @classmethod
    def of(cls, spec: FeatureSpec) -> KernelLayout:
        """The layout of ``spec``'s features (the columns in ``spec.names`` order)."""
        base_h, base_p = timeframe_params(
            spec.return_horizons, spec.vol_window, spec.rsi_period, spec.macd_fast,
            spec.macd_slow, spec.macd_signal, spec.atr_period, spec.bb_window,
            spec.volume_window)
        htf_h, htf_p = timeframe_params(
            spec.htf_return_horizons, spec.vol_window, spec.rsi_period, spec.macd_fast,
            spec.macd_slow, spec.macd_signal, spec.atr_period, spec.bb_window,
            spec.volume_window)
        htf_ms = tuple(interval_to_ms(tf) for tf in spec.higher_timeframes)
        ref_h = np.asarray(spec.reference_horizons, dtype=np.int64)
        n_htf = len(htf_ms)
        htf_width = len(htf_h) + N_SCALAR_COLUMNS
        one_htf = timeframe_state(htf_p)
        ints_parts = [base_h, base_p, htf_h, htf_p, ref_h, np.asarray(htf_ms, dtype=np.int64)]
        state_parts = [
            timeframe_state(base_p),
            np.concatenate([new_aggregator_state() for _ in htf_ms] or [np.zeros(0)]),
            np.tile(one_htf, n_htf),
            np.full(n_htf * htf_width, np.nan),
            reference_state(ref_h, spec.corr_window) if spec.reference_symbol else np.zeros(0),
            structure_state(spec.pivot_levels),
            smc_state(spec.ob_lookback) if spec.pivot_levels else np.zeros(0),
            regime_state(spec.regime_window, spec.regime_vol_long),
        ]
        header = np.zeros(_HEADER, dtype=np.int64)
        header[_N_HTF] = n_htf
        header[_LEVELS] = spec.pivot_levels
        header[_SMC_LEVEL] = spec.smc_level
        header[_OB] = spec.ob_lookback
        header[_CORR] = spec.corr_window
        header[_RW] = spec.regime_window
        header[_RVS] = spec.regime_vol_short
        header[_RVL] = spec.regime_vol_long
        header[_HAS_REF] = 1 if spec.reference_symbol else 0
        at = _HEADER
        for slot, part in zip(range(_BASE_H, _S_BASE, 2), ints_parts, strict=True):
            header[slot], header[slot + 1] = at, len(part)
            at += len(part)
        at = 0
        for slot, part in zip(range(_S_BASE, _HEADER, 2), state_parts, strict=True):
            header[slot], header[slot + 1] = at, len(part)
            at += len(part)
        ints = np.concatenate([header, *ints_parts]).astype(np.int64)
        floats = np.array([spec.er_threshold, spec.vol_ratio_threshold], dtype=np.float64)
        state = np.concatenate(state_parts).astype(np.float64)
        for arr in (ints, floats, state):
            arr.setflags(write=False)
        return cls(ints=ints, floats=floats, state=state, htf_ms=htf_ms)


@numba.njit(cache=True)
def features_kernel(ts: IntArray, x: FloatArray, ref_close: FloatArray, use: BoolArray,
                    need: IntArray, last: BoolArray, state: FloatArray, ints: IntArray,
                    floats: FloatArray, out: F32Array) -> None:  # pragma: no cover - compiled
    """Advance ``state`` over bars ``ts[T]``, ``x[T, 5]``; write features ``out[T, F]``.

    ``ref_close[T]`` is the reference close (ignored, may be empty, without a reference
    asset). ``use``, ``need`` and ``last`` (``[n_htf, T]``) are each higher timeframe's
    ``bucket_inputs``. The caller has validated the bars (``pipeline.py``).
    """
    n_htf = ints[_N_HTF]
    levels = ints[_LEVELS]
    base_h = ints[ints[_BASE_H]:ints[_BASE_H] + ints[_BASE_H + 1]]
    base_p = ints[ints[_BASE_P]:ints[_BASE_P] + ints[_BASE_P + 1]]
    htf_h = ints[ints[_HTF_H]:ints[_HTF_H] + ints[_HTF_H + 1]]
    htf_p = ints[ints[_HTF_P]:ints[_HTF_P] + ints[_HTF_P + 1]]
    ref_h = ints[ints[_REF_H]:ints[_REF_H] + ints[_REF_H + 1]]
    htf_ms = ints[ints[_HTF_MS]:ints[_HTF_MS] + n_htf]
    base_state = state[ints[_S_BASE]:ints[_S_BASE] + ints[_S_BASE + 1]]
    ref_state = state[ints[_S_REF]:ints[_S_REF] + ints[_S_REF + 1]]
    struct_state = state[ints[_S_STRUCT]:ints[_S_STRUCT] + ints[_S_STRUCT + 1]]
    smc_st = state[ints[_S_SMC]:ints[_S_SMC] + ints[_S_SMC + 1]]
    regime_st = state[ints[_S_REGIME]:ints[_S_REGIME] + ints[_S_REGIME + 1]]
    base_width = base_h.shape[0] + N_SCALAR_COLUMNS
    htf_width = htf_h.shape[0] + N_SCALAR_COLUMNS
    htf_len = ints[_S_HTF + 1] // n_htf if n_htf > 0 else 0
    ref_width = ref_h.shape[0] + 2
    struct_width = levels * OUT_PER_LEVEL
    smc_col = (ints[_SMC_LEVEL] - 1) * OUT_PER_LEVEL
    # scratch, once per call (not per bar)
    agg_ts = np.empty(1, dtype=np.int64)
    agg_at = np.empty(1, dtype=np.int64)
    agg_x = np.empty((1, 5), dtype=np.float64)
    htf_row = np.empty((1, htf_width), dtype=np.float64)
    raw = np.empty((1, max(struct_width, 1)), dtype=np.float64)  # swing prices stay float64
    swing_high = np.empty(1, dtype=np.float64)
    swing_low = np.empty(1, dtype=np.float64)
    for t in range(ts.shape[0]):
        xt = x[t:t + 1]
        close = x[t:t + 1, 3]
        timeframe_kernel(base_state, xt, base_h, base_p, out[t:t + 1, 0:base_width])
        col = base_width
        for i in range(n_htf):
            a0 = ints[_S_AGG] + i * AGG_STATE_SIZE
            s0 = ints[_S_HTF] + i * htf_len
            l0 = ints[_S_LAST] + i * htf_width
            done = aggregate_kernel(state[a0:a0 + AGG_STATE_SIZE], ts[t:t + 1], xt, htf_ms[i],
                                  use[i, t:t + 1], need[i, t:t + 1], last[i, t:t + 1],
                                  agg_ts, agg_x, agg_at)
            if done:  # a higher-timeframe bar closed with this bar: its row replaces the last
                timeframe_kernel(state[s0:s0 + htf_len], agg_x, htf_h, htf_p, htf_row)
                for j in range(htf_width):
                    state[l0 + j] = htf_row[0, j]
            for j in range(htf_width):
                out[t, col + j] = state[l0 + j]
            col += htf_width
        if ints[_HAS_REF]:
            reference_kernel(ref_state, close, ref_close[t:t + 1], ref_h, ints[_CORR],
                             out[t:t + 1, col:col + ref_width])
            col += ref_width
        if levels > 0:
            structure_kernel(struct_state, xt, levels, raw)
            c = x[t, 3]
            for level in range(levels):
                k = level * OUT_PER_LEVEL
                out[t, col + k] = math.log(c / raw[0, k])  # log distance to the swing high
                out[t, col + k + 1] = math.log(c / raw[0, k + 1])  # ... and the swing low
                out[t, col + k + 2] = raw[0, k + 2]
                out[t, col + k + 3] = raw[0, k + 3]
            col += struct_width
            swing_high[0] = raw[0, smc_col]
            swing_low[0] = raw[0, smc_col + 1]
            smc_kernel(smc_st, xt, swing_high, swing_low, ints[_OB],
                       out[t:t + 1, col:col + N_SMC])
            col += N_SMC
        regime_kernel(regime_st, close, ints[_RW], ints[_RVS], ints[_RVL], floats[0], floats[1],
                      out[t:t + 1, col:col + N_REGIME])

