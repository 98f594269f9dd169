"""The metrics of one played episode and the Q gap of a greedy policy, for every report.

``run_performance`` turns what ``evaluation.play`` returns (the equity and position after
every step, the account's cumulative fees, slippage, borrow and traded notional, and
where the drawdown halt or ruin stopped the episode) into the shared metric dict of
``envs.metrics.performance`` plus the raw cost amounts. The evaluation, the backtest and
every walk-forward fold call it, so they report the same cost metrics (net and gross
return, cost drag, fees, slippage, borrow, turnover, trades per day, holding time,
``halted``) from the same numbers.

``QGapRecorder`` wraps a Q-function and records, at every greedy decision, how much the
best action's Q exceeds the Q of the action the account already holds (the position the
env reports, read from the observation's position slot, which the env writes from the
same account field as ``info["position"]``; the nearest action is taken). Q is in reward
units (``reward_scale`` times the discounted sum of per-bar rewards, for ``log_return`` a
sum of log returns), so the gap is comparable with the cost of the switch in the same
units: ``reward_scale * (fee + slippage) * |p_best - p_held|`` with fee and slippage as
fractions of the traded notional (the fixed slippage when the cost model has one, else the
half spread, the modelled slippage's floor). A policy whose gaps are mostly below that
cost changes position on Q differences it cannot pay for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.decision import held_actions, target_positions, unit_switch_cost
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.metrics import (
    average_holding_bars,
    drawdown_curve,
    interval_of,
    performance,
    trades_per_day,
)
from raytrade.envs.observation import N_POSITION_STATE

COST_COLUMNS = ("total_return", "gross_return", "cost_drag", "fees_fraction",
                "slippage_fraction", "borrow_fraction", "turnover", "trades_per_day",
                "avg_holding_bars", "halted")
"""The cost metrics every report shows per policy, net return first (fractions of starting
equity; turnover a multiple of mean equity; holding time in bars)."""

QFunction = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.floating[Any]]]


def run_performance(run: dict[str, Any], interval_ms: int,
                    calendar: TradingCalendar = ALWAYS) -> dict[str, Any]:
    """The shared metrics of one ``play`` result, with its costs (module docstring).

    Adds to ``performance(...).to_dict()``: ``final_equity``, and the amounts in quote
    currency ``fees``, ``slippage``, ``borrow`` and ``traded_notional``. ``halted_bar`` is
    the market bar whose close ended a halted episode (None when it played to the end).
    With a decision interval (``interval_ms`` the decision period, one equity point per
    decision) holding time, drawdown duration and trades per day are counted in bars
    from ``run["bar"]`` (:func:`bar_counts`), as for a run decided every bar. ``calendar``
    is the market's trading calendar (``EnvConfig.calendar``): it sets the bars per year.
    """
    fees = float(run["fees"])
    slippage = float(run["slippage"])
    borrow = float(run["borrow"])
    traded = float(run["traded_notional"])
    halted_bar = run.get("halted_bar")
    bars = np.asarray(run.get("bar", ()), dtype=np.int64)
    steps = np.diff(bars)
    every = decision_every(steps, calendar)
    perf = performance(run["equity"], run["position"], interval_ms, traded_notional=traded,
                       fills=int(run["trades"]), fees=fees, slippage=slippage, borrow=borrow,
                       halted_bar=None if halted_bar is None else int(halted_bar),
                       calendar=calendar, every_bars=every).to_dict()
    if len(steps) and int(steps.max()) > 1:  # a decision interval: one point per decision
        perf.update(bar_counts(np.asarray(run["equity"], dtype=np.float64),
                               np.asarray(run["position"], dtype=np.float64), steps))
        # ``interval_ms`` is the decision period; a full step is ``every_bars`` bars
        perf["trades_per_day"] = trades_per_day(int(run["trades"]), int(steps.sum()),
                                                interval_ms // every, calendar)
    return {**perf, "final_equity": float(run["equity"][-1]), "fees": fees,
            "slippage": slippage, "borrow": borrow, "traded_notional": traded}


def decision_every(steps: npt.NDArray[np.int64], calendar: TradingCalendar) -> int:
    """The decision interval in bars of a run whose points are ``steps`` bars apart: the
    longest step (the last one may be cut short by the end of the data); with a calendar
    that closes, the most common one (the longest of those), since a broker's bar inside a
    closure can lengthen one step."""
    if not len(steps):
        return 1
    if calendar.always:
        return max(int(steps.max()), 1)
    counts = np.bincount(steps)
    return max(int(np.flatnonzero(counts == counts.max())[-1]), 1)


def bar_counts(equity: npt.NDArray[np.float64], position: npt.NDArray[np.float64],
               steps: npt.NDArray[np.int64]) -> dict[str, Any]:
    """``avg_holding_bars`` and ``max_drawdown_bars`` in bars, from points one decision
    apart (``steps[i]`` bars between point ``i`` and ``i + 1``): the position after a
    decision is held for the bars of its step, and a drawdown lasts the bars of the steps
    it spans."""
    held = np.repeat(position[1:], steps)
    under = drawdown_curve(equity)[1:] < 0
    longest = run = 0
    for flag, n in zip(under, steps, strict=True):
        run = run + int(n) if flag else 0
        longest = max(longest, run)
    avg = average_holding_bars(held)
    return {"avg_holding_bars": None if math.isnan(avg) else avg,
            "max_drawdown_bars": longest}


COST_COUNTERS = ("fees", "slippage", "borrow", "traded_notional", "trades")
"""Cumulative account counters a paper record's equity rows carry (quote currency; trades a
count), read from the paper broker's account after each bar."""


def record_performance(rows: Sequence[Mapping[str, Any]],
                       calendar: TradingCalendar = ALWAYS) -> dict[str, Any]:
    """The shared metrics, costs included, of a paper-trading record (or a slice of it).

    ``rows``: one per decided bar, oldest first, with ``ts`` (bar open time, ms), ``equity``,
    ``position`` and, when the exporter wrote them, the account's cumulative
    ``COST_COUNTERS`` and ``halted`` after that bar. The costs of the slice are the counters'
    growth from its first row to its last, as fractions of the first row's equity (as in
    ``envs.metrics``). Rows without counters (records exported before they existed) leave
    the costs unknown: NaN amounts, so the cost fractions and the gross return are None in
    ``to_dict`` and the fill count is 0. ``halted_bar`` is the index (in ``rows``) of the
    first halted row, and ``halted_ts`` its bar time. ``calendar``: the market's trading
    calendar (the policy manifest's ``env.calendar``), for the bars per year; the bar
    interval is the median spacing of ``ts``, which closures do not move. Empty dict with
    fewer than two rows or no bar interval.
    """
    if len(rows) < 2:
        return {}
    ts = np.asarray([int(r["ts"]) for r in rows], dtype=np.int64)
    interval = interval_of(ts)
    if interval <= 0:
        return {}

    def grown(key: str) -> float:
        first, last = _present(rows[0].get(key)), _present(rows[-1].get(key))
        return math.nan if first is None or last is None else float(last) - float(first)

    fills = grown("trades")

    halted = [i for i, r in enumerate(rows) if _present(r.get("halted"))]
    perf = performance(np.asarray([float(r["equity"]) for r in rows]),
                       np.asarray([float(r["position"]) for r in rows]), interval,
                       traded_notional=grown("traded_notional"),
                       fills=0 if math.isnan(fills) else int(fills),
                       fees=grown("fees"), slippage=grown("slippage"), borrow=grown("borrow"),
                       halted_bar=halted[0] if halted else None,
                       calendar=calendar).to_dict()
    return {**perf, "final_equity": float(rows[-1]["equity"]),
            **{k: _present(grown(k)) for k in COST_COUNTERS if k != "trades"},
            "halted_ts": int(ts[halted[0]]) if halted else None}


def _present(value: Any) -> Any:
    """``value``, or None when missing or NaN (a column absent from older rows)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else value


def halted_label(name: str, record: dict[str, Any]) -> str:
    """``name``, marked ``(halted)`` when the drawdown halt or ruin ended its run early, so a
    halted run is never read as an ordinary return."""
    return f"{name} (halted)" if record.get("halted") else name


class QGapRecorder:
    """A Q-function that records the Q gap at every call (module docstring).

    Call it as the wrapped function; each observation row passed in is one decision.
    ``summary()`` gives the distribution; ``reset()`` starts a new episode's record.
    """

    def __init__(self, q_values: QFunction, config: EnvConfig) -> None:
        self._q = q_values
        self._config = config
        self._targets = target_positions(config)
        self._unit_cost = unit_switch_cost(config)
        self.gaps: list[float] = []
        self.costs: list[float] = []

    def __call__(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]]:
        q = self._q(obs)
        rows = np.asarray(q, dtype=np.float64).reshape(len(obs), -1)
        held_pos = np.asarray(obs, dtype=np.float64)[:, -N_POSITION_STATE]
        for row, held in zip(rows, held_actions(self._config, held_pos), strict=True):
            best = int(np.argmax(row))
            self.gaps.append(float(row[best] - row[held]))
            self.costs.append(self._unit_cost * abs(self._targets[best] - self._targets[held]))
        return q

    def reset(self) -> None:
        """Forget the recorded decisions."""
        self.gaps.clear()
        self.costs.clear()

    def summary(self) -> dict[str, float | int | None]:
        """``q_gap_summary`` of the recorded decisions."""
        return q_gap_summary(self.gaps, self.costs, self._unit_cost)


def q_gap_summary(gaps: Sequence[float], costs: Sequence[float],
                  unit_cost: float) -> dict[str, float | int | None]:
    """Distribution of Q gaps against the cost of switching, in Q units.

    ``decisions``; ``p50``, ``p90``, ``p99``, ``mean`` of the gaps; ``switch_cost``: the
    cost of a unit position change; ``wants_switch_share``: share of decisions whose best
    action is not the held one (gap > 0); ``below_cost_share``: share of decisions whose
    gap is below ``switch_cost`` (Q differences too small to pay a unit switch; decisions
    that hold have gap 0 and count when costs are on); ``unpaid_switch_share``: of the
    decisions that want a switch, the share whose gap does not pay the cost of that switch
    (``costs``: the unit cost times the position change it asks for). Statistics are None
    without decisions.
    """
    g = np.asarray(gaps, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    out: dict[str, float | int | None] = {"decisions": len(g), "switch_cost": unit_cost}
    if not len(g):
        return {**out, **dict.fromkeys(("p50", "p90", "p99", "mean", "wants_switch_share",
                                        "below_cost_share", "unpaid_switch_share"))}
    p50, p90, p99 = (float(x) for x in np.percentile(g, [50, 90, 99]))
    wants = g > 0
    unpaid = float(np.mean(g[wants] < c[wants])) if wants.any() else None
    return {**out, "p50": p50, "p90": p90, "p99": p99, "mean": float(g.mean()),
            "wants_switch_share": float(wants.mean()),
            "below_cost_share": float(np.mean(g < unit_cost)),
            "unpaid_switch_share": unpaid}
