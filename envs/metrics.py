"""Performance metrics, one definition for env callbacks, backtests, paper actors, dashboard.

Inputs are per-bar simple returns of equity (or an equity curve), the bar interval and the
market's trading calendar (``envs/calendar.py``); annualization uses the calendar's bars
per year: ``365 * 24 h / interval`` for a market open around the clock (crypto, the
default), the expected session bars of a 365-day year for one that closes (forex 1h with
Christmas and New Year closed: about 6223, not 8760). Conventions follow empyrical
(checked against it in tests):

- Sharpe: ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)`` (risk-free 0);
- Sortino: ``mean(r) * bars_per_year / (sqrt(mean(min(r, 0)^2)) * sqrt(bars_per_year))``;
- max drawdown: the worst peak-to-trough fall of equity, as a negative fraction; its
  duration: the longest run of bars spent below a previous peak;
- annual return (CAGR): ``(prod(1 + r)) ** (bars_per_year / n) - 1`` (NaN when a short
  sample makes it overflow);
- Calmar: annual return / |max drawdown|;
- turnover: traded notional / mean equity, per year; exposure: share of bars with a
  position; win rate and profit factor over closed trades (a trade is a run of bars with a
  position of one sign; its PnL is the change of marked equity across it, costs included).

Costs (``performance``'s ``fees``, ``slippage``, ``borrow``: the cumulative amounts the
account paid, quote currency; see ``envs.accounting``), all as fractions of the starting
equity ``E0`` (the curve's first finite point) so they add up with the returns:

- ``fees_fraction = fees / E0``, ``slippage_fraction = slippage / E0``,
  ``borrow_fraction = borrow / E0``;
- cost drag: ``(fees + slippage + borrow) / E0``;
- gross return before costs: ``(E_final + fees + slippage + borrow - E0) / E0``, i.e. the
  net ``total_return`` plus the cost drag (what the same trades would have made at zero
  cost, to first order: the position sizes are the ones actually traded);
- turnover: traded notional / mean equity over the run (``turnover_per_year`` is the same
  per year);
- trades per day: fills / (bars stepped / the calendar's bars per day), i.e. per 24 hours of
  trading (``bars * interval / 1 day`` around the clock);
- average holding time: mean length, in bars, of the runs of consecutive points with a
  non-zero position of one sign (a reversal starts a new run; a run still open at the end
  counts with the bars seen); NaN if no position was ever held;
- ``halted``: the drawdown halt or ruin ended the run early (the caller says so with
  ``halted_bar``, the bar at whose close the run stopped, in the caller's numbering:
  evaluation and backtest pass the index into the market's bar series); a halted run's
  return is not comparable with a run that played to the end.

Undefined ratios (no variance, no loss, no drawdown) are NaN, never inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from raytrade.envs.calendar import ALWAYS, TradingCalendar

MS_PER_YEAR = 365 * 24 * 3600 * 1000
MS_PER_DAY = 24 * 3600 * 1000


def bars_per_year(interval_ms: int, calendar: TradingCalendar = ALWAYS,
                  every_bars: int = 1) -> float:
    """Periods of ``interval_ms`` in a 365-day year: of round-the-clock trading by default,
    else the bars ``calendar`` expects (``TradingCalendar.bars_per_year``). A period of
    ``every_bars`` bars (a decision interval: ``interval_ms`` is then ``every_bars`` bar
    intervals) counts the calendar's bars of ``interval_ms / every_bars`` in groups of
    ``every_bars`` (a 4-hour decision on 1h forex bars: expected 1h bars / 4)."""
    if calendar.always:
        return MS_PER_YEAR / interval_ms
    return calendar.bars_per_year(interval_ms // every_bars) / every_bars


def interval_of(ts_ms: npt.ArrayLike) -> int:
    """The bar interval (ms) of a series of bar open times: the median spacing, so a few
    missing bars do not change the annualization; 0 with fewer than two bars."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    return int(np.median(np.diff(ts))) if len(ts) > 1 else 0


def returns_from_equity(equity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Simple per-bar returns of an equity curve (NaN entries dropped)."""
    e = np.asarray(equity, dtype=np.float64)
    e = e[np.isfinite(e)]
    if len(e) < 2:
        return np.zeros(0)
    return e[1:] / e[:-1] - 1.0


def sharpe(returns: npt.ArrayLike, periods: float) -> float:
    """Annualized Sharpe ratio (risk-free 0); NaN with fewer than 2 returns or no variance."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return math.nan
    sd = r.std(ddof=1)
    if sd == 0:
        return math.nan
    return float(r.mean() / sd * math.sqrt(periods))


def t_stat(returns: npt.ArrayLike) -> float:
    """``mean(r) / std(r, ddof=1) * sqrt(len(r))``: the mean return in standard errors;
    NaN with fewer than 2 returns or no variance."""
    r = np.asarray(returns, dtype=np.float64)
    return sharpe(r, len(r))


def sortino(returns: npt.ArrayLike, periods: float) -> float:
    """Annualized Sortino ratio (target 0); NaN without downside."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(periods)
    if downside == 0:
        return math.nan
    return float(r.mean() * periods / downside)


def drawdown_curve(equity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Drawdown at each bar as a fraction of the running peak (<= 0)."""
    e = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(e)
    out: npt.NDArray[np.float64] = e / peak - 1.0
    return out


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Worst drawdown as a negative fraction (0 if equity never fell)."""
    e = np.asarray(equity, dtype=np.float64)
    if len(e) == 0:
        return 0.0
    return float(min(0.0, drawdown_curve(e).min()))


def max_drawdown_duration(equity: npt.ArrayLike) -> int:
    """Longest run of consecutive bars below a previous peak."""
    under = drawdown_curve(equity) < 0
    longest = run = 0
    for flag in under:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest


def annual_return(returns: npt.ArrayLike, periods: float) -> float:
    """Compound annual growth rate implied by the returns."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) == 0:
        return math.nan
    if np.any(1.0 + r <= 0):
        return -1.0
    exponent = float(np.sum(np.log1p(r))) * periods / len(r)
    if exponent > 700:  # a short, violent sample: the annual figure is not representable
        return math.nan
    return math.expm1(exponent)


def calmar(returns: npt.ArrayLike, periods: float) -> float:
    """Annual return over |max drawdown|; NaN without drawdown."""
    r = np.asarray(returns, dtype=np.float64)
    mdd = max_drawdown(np.concatenate([[1.0], np.cumprod(1.0 + r)]))
    if mdd == 0:
        return math.nan
    return annual_return(r, periods) / abs(mdd)


def trade_pnls(equity: npt.ArrayLike, position: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """PnL of each closed trade: equity change over each run of same-sign positions.

    ``position[t]`` is the position held after the close of bar t and ``equity[t]`` the
    equity marked then; a trade opened between closes ``a - 1`` and ``a`` and closed
    between ``b - 1`` and ``b`` earns ``equity[b] - equity[a - 1]``. A trade still open at
    the end is not counted.
    """
    e = np.asarray(equity, dtype=np.float64)
    side = np.sign(np.nan_to_num(np.asarray(position, dtype=np.float64)))
    pnls = []
    start = None
    for t in range(1, len(side)):
        if side[t] != side[t - 1]:
            if side[t - 1] != 0 and start is not None:
                pnls.append(e[t] - e[start])
            start = t - 1 if side[t] != 0 else None
    return np.asarray(pnls, dtype=np.float64)


def holding_runs(position: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Length in points (bars) of each run of consecutive non-zero positions of one sign,
    oldest first; a run still open at the end is included with the points seen."""
    side = np.sign(np.nan_to_num(np.asarray(position, dtype=np.float64)))
    runs: list[int] = []
    length = 0
    for t, s in enumerate(side):
        if length and (s == 0 or s != side[t - 1]):
            runs.append(length)
            length = 0
        if s != 0:
            length += 1
    if length:
        runs.append(length)
    return np.asarray(runs, dtype=np.int64)


def average_holding_bars(position: npt.ArrayLike) -> float:
    """Mean length in bars of the runs of a held position (``holding_runs``); NaN if none."""
    runs = holding_runs(position)
    return float(runs.mean()) if len(runs) else math.nan


def trades_per_day(fills: int, bars: int, interval_ms: int,
                   calendar: TradingCalendar = ALWAYS, every_bars: int = 1) -> float:
    """Fills per day of trading over ``bars`` periods of ``interval_ms`` (a day: the
    calendar's periods per year / 365, see :func:`bars_per_year`; 24 h around the clock);
    NaN without bars or interval."""
    if calendar.always or interval_ms <= 0:
        days = bars * interval_ms / MS_PER_DAY
    else:
        days = bars / (bars_per_year(interval_ms, calendar, every_bars) / 365)
    return fills / days if days > 0 else math.nan


def win_rate(pnls: npt.ArrayLike) -> float:
    """Share of closed trades with a positive PnL; NaN without trades."""
    p = np.asarray(pnls, dtype=np.float64)
    return float(np.mean(p > 0)) if len(p) else math.nan


def profit_factor(pnls: npt.ArrayLike) -> float:
    """Gross profit over gross loss of closed trades; NaN without a losing trade."""
    p = np.asarray(pnls, dtype=np.float64)
    loss = -p[p < 0].sum()
    return float(p[p > 0].sum() / loss) if loss > 0 else math.nan


@dataclass(frozen=True)
class Performance:
    """The standard metric set of one equity curve. Ratios annualized; fractions not %."""

    total_return: float
    annual_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_bars: int
    calmar: float
    turnover_per_year: float
    exposure: float
    trades: int
    win_rate: float
    profit_factor: float
    gross_return: float
    """Return before costs: net ``total_return`` plus ``cost_drag`` (module docstring)."""
    cost_drag: float
    """(fees + slippage + borrow) / starting equity."""
    fees_fraction: float
    """Fees paid / starting equity."""
    slippage_fraction: float
    """Slippage paid / starting equity."""
    borrow_fraction: float
    """Borrow and funding paid / starting equity."""
    turnover: float
    """Traded notional / mean equity over the run (not annualized)."""
    trades_per_day: float
    """Fills per day of the run (bar interval times bars stepped)."""
    avg_holding_bars: float
    """Mean bars a position was held (runs of one sign); NaN if never held."""
    halted: bool
    """The drawdown halt or ruin ended the run early."""
    halted_bar: int | None
    """The bar at whose close the run stopped, when ``halted`` (the caller's numbering)."""
    t_stat: float = math.nan
    """The mean per-period return in standard errors: ``mean(r) / std(r, ddof=1) *
    sqrt(len(r))`` (the Sharpe ratio not annualized but scaled by the run's length): how
    far the return is from what a zero-mean strategy's noise makes (for one strategy
    tested once, 2 or more happens by luck about 1 time in 40). NaN like the Sharpe
    ratio."""

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly dict (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def performance(equity: npt.ArrayLike, position: npt.ArrayLike, interval_ms: int, *,
                traded_notional: float = 0.0, fills: int = 0, fees: float = 0.0,
                slippage: float = 0.0, borrow: float = 0.0,
                halted_bar: int | None = None, calendar: TradingCalendar = ALWAYS,
                every_bars: int = 1) -> Performance:
    """All metrics of an equity curve and the positions held along it.

    ``traded_notional``, ``fees``, ``slippage`` and ``borrow`` are the run's totals in
    quote currency, ``fills`` its fill count; ``halted_bar`` the bar at which the drawdown
    halt or ruin stopped the run (None: it ran to the end); ``calendar`` the market's
    trading calendar, which sets the bars per year, and ``every_bars`` the bars in one
    point's period (a decision interval; :func:`bars_per_year`). Definitions in the module
    docstring.
    """
    e = np.asarray(equity, dtype=np.float64)
    pos = np.asarray(position, dtype=np.float64)
    keep = np.isfinite(e)
    e, pos = e[keep], pos[keep]
    periods = bars_per_year(interval_ms, calendar, every_bars)
    r = returns_from_equity(e)
    pnls = trade_pnls(e, pos)
    years = max(len(r), 1) / periods
    mean_equity = float(e.mean()) if len(e) else math.nan
    e0 = float(e[0]) if len(e) else math.nan

    def of_start(amount: float) -> float:
        return amount / e0 if e0 > 0 else math.nan

    drag = of_start(fees + slippage + borrow)
    total = float(e[-1] / e[0] - 1.0) if len(e) else math.nan
    return Performance(
        total_return=total,
        annual_return=annual_return(r, periods), sharpe=sharpe(r, periods),
        sortino=sortino(r, periods), max_drawdown=max_drawdown(e),
        max_drawdown_bars=max_drawdown_duration(e), calmar=calmar(r, periods),
        turnover_per_year=traded_notional / mean_equity / years if mean_equity else math.nan,
        exposure=float(np.mean(np.nan_to_num(pos) != 0)) if len(pos) else math.nan,
        trades=int(fills), win_rate=win_rate(pnls), profit_factor=profit_factor(pnls),
        gross_return=total + drag, cost_drag=drag, fees_fraction=of_start(fees),
        slippage_fraction=of_start(slippage), borrow_fraction=of_start(borrow),
        turnover=traded_notional / mean_equity if mean_equity else math.nan,
        trades_per_day=trades_per_day(int(fills), len(r), interval_ms, calendar, every_bars),
        avg_holding_bars=average_holding_bars(pos),
        halted=halted_bar is not None, halted_bar=halted_bar, t_stat=t_stat(r))
