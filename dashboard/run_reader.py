"""Everything the dashboard shows, read from the run store (``file://`` or ``s3://``).

The dashboard never imports broker, journal or actor internals: it reads what training,
evaluation and the paper actors publish:

- ``metrics/train.jsonl`` (one line per iteration) and ``metrics/eval.jsonl`` (one line per
  evaluation), read incrementally (``JsonlTail``);
- ``metrics/eval_curves/<iteration>_<split>.json``: equity curves of an evaluation;
- ``policies/`` and ``channels/`` through ``PolicyStore`` (versions, manifests, pointers,
  the move log);
- ``paper/<actor>/{equity.jsonl,trades.jsonl,health.json}``;
- ``reports/walk_forward/*.json``: walk-forward reports, when present;
- ``tune/trials.json``: the last hyperparameter search's trials and winner, when present;
- ``live/<actor>/...`` and ``live/commands/`` through ``live`` (``LiveReader``).

Metrics derived here (live Sharpe, drawdown) come from ``envs.metrics``, the module every
other part uses, so the numbers on the pages equal the gate's and the backtest's; they are
annualized with the trading calendar the record's newest policy version recorded in its
manifest (``env.calendar``), as the live gate does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from raytrade.algos.manifest import manifest_calendar
from raytrade.algos.run_metrics import COST_COUNTERS
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import NotFoundError
from raytrade.algos.storage.policy_store import ChannelPointer, Move, PolicyStore
from raytrade.algos.storage.promotion import paper_actors
from raytrade.dashboard.jsonl_tail import JsonlTail
from raytrade.dashboard.live_reader import LiveReader
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import RaytradeError
from raytrade.envs.metrics import drawdown_curve, interval_of, performance

CHANNELS = ("candidate", "paper", "live")
TRAIN = keys.TRAIN_METRICS
EVAL = keys.EVAL_METRICS
METRIC_COLUMNS = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar",
                  "final_equity", "trades", "win_rate")


@dataclass
class PaperRecord:
    """One paper actor's exported record."""

    actor: str
    equity: pd.DataFrame
    """Columns ts (datetime, UTC), ts_ms (bar open time, ms), equity, position, version,
    close, the account's cumulative cost counters (``run_metrics.COST_COUNTERS``: NaN in
    records exported before they existed), halted, drawdown."""
    trades: pd.DataFrame
    health: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    calendar: TradingCalendar = ALWAYS
    """The market's trading calendar, from the newest traded version's manifest."""

    def live_metrics(self) -> dict[str, float | int | None]:
        """Shared-module metrics of the whole record (``envs.metrics.performance``)."""
        eq = self.equity
        if len(eq) < 2:
            return {}
        interval = interval_of(eq["ts_ms"].to_numpy())  # as the live gate measures it
        perf = performance(eq["equity"].to_numpy(), eq["position"].to_numpy(), interval,
                           fills=len(self.trades), calendar=self.calendar)
        return perf.to_dict()


class RunReader:
    """Reads one run store; keep one per store (it caches and reads incrementally)."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._tails: dict[str, JsonlTail] = {}
        self.live = LiveReader(store.blobs)
        """The live actors' records and the operator commands."""

    @property
    def uri(self) -> str:
        return self.store.uri

    def _rows(self, key: str) -> tuple[list[dict[str, Any]], list[str]]:
        tail = self._tails.setdefault(key, JsonlTail(key))
        return tail.read(self.store.blobs), tail.errors

    # ---- training and evaluation
    def train(self) -> tuple[pd.DataFrame, list[str]]:
        """Per-iteration training metrics; epsilon per runner as ``epsilon_<k>``."""
        rows, errors = self._rows(TRAIN)
        flat = []
        for r in rows:
            row = {k: v for k, v in r.items() if not isinstance(v, dict)}
            for k, v in (r.get("epsilon") or {}).items():
                row[f"epsilon_{k}"] = v
            flat.append(row)
        frame = pd.DataFrame(flat)
        return frame.apply(pd.to_numeric, errors="coerce") if len(frame) else frame, errors

    def evaluations(self) -> tuple[pd.DataFrame, list[str]]:
        """One row per (evaluation, dataset, policy): iteration, split, dataset, policy and
        the shared metrics (``METRIC_COLUMNS``)."""
        rows, errors = self._rows(EVAL)
        out = []
        for r in rows:
            for dataset, per in (r.get("datasets") or {}).items():
                for policy, metrics in per.items():
                    if not isinstance(metrics, dict):
                        continue
                    out.append({"iteration": r.get("iteration"), "split": r.get("split"),
                                "dataset": dataset, "policy": policy,
                                **{k: metrics.get(k) for k in METRIC_COLUMNS}})
        return pd.DataFrame(out), errors

    def latest_evaluation(self, split: str) -> dict[str, Any] | None:
        """The raw record of the newest evaluation on ``split`` (None if there is none)."""
        rows, _ = self._rows(EVAL)
        chosen = [r for r in rows if r.get("split") == split]
        return max(chosen, key=lambda r: r.get("iteration") or 0) if chosen else None

    def eval_curves(self, iteration: int, split: str) -> dict[str, Any] | None:
        """The equity curves of one evaluation, if training saved them."""
        try:
            data = self.store.blobs.get(keys.eval_curve_key(iteration, split))
        except NotFoundError:
            return None
        parsed: dict[str, Any] = json.loads(data.data)
        return parsed

    # ---- models
    def channels(self) -> dict[str, ChannelPointer | None]:
        """Where each channel points now."""
        return {c: self.store.channel(c) for c in CHANNELS}

    def history(self) -> list[Move]:
        """Every logged channel move, oldest first."""
        return self.store.history()

    def versions(self) -> list[int]:
        """Complete policy versions, ascending."""
        return self.store.versions()

    def manifest(self, version: int) -> dict[str, Any]:
        """The manifest of ``version``."""
        return self.store.manifest(version)

    # ---- paper trading
    def actors(self) -> list[str]:
        """Paper actors that exported a record."""
        return paper_actors(self.store)

    def paper(self, actor: str) -> PaperRecord:
        """The actor's equity, trades and health."""
        equity_rows, errors = self._rows(keys.paper_key(actor, keys.EQUITY))
        trade_rows, trade_errors = self._rows(keys.paper_key(actor, keys.TRADES))
        equity = pd.DataFrame(equity_rows, columns=["ts", "equity", "position", "version",
                                                    "close", *COST_COUNTERS, "halted"])
        if len(equity):
            equity["ts_ms"] = pd.to_numeric(equity["ts"], errors="coerce")
            equity["ts"] = pd.to_datetime(equity["ts_ms"], unit="ms", utc=True)
            for col in ("equity", "position", "close"):
                equity[col] = pd.to_numeric(equity[col], errors="coerce")
            equity["drawdown"] = drawdown_curve(equity["equity"].to_numpy())
        trades = pd.DataFrame(trade_rows)
        if len(trades) and "bar_ts" in trades:
            trades["time"] = pd.to_datetime(trades["bar_ts"], unit="ms", utc=True)
        try:
            health = json.loads(self.store.blobs.get(keys.paper_key(actor, keys.HEALTH)).data)
        except NotFoundError:
            health = {}
        except json.JSONDecodeError as exc:
            health = {"unresolved_faults": [f"health.json is malformed: {exc}"]}
        return PaperRecord(actor, equity, trades, health, errors + trade_errors,
                           self._calendar(equity))

    def _calendar(self, equity: pd.DataFrame) -> TradingCalendar:
        """The calendar of the newest version in a paper record (its manifest's
        ``env.calendar``); around the clock when the record is empty or the manifest can
        no longer be read (retained away)."""
        versions = pd.to_numeric(equity["version"], errors="coerce").dropna() \
            if len(equity) else pd.Series(dtype=float)
        if not len(versions):
            return ALWAYS
        try:
            return manifest_calendar(self.store.manifest(int(versions.max())))
        except (NotFoundError, RaytradeError):
            return ALWAYS

    # ---- walk-forward reports
    def walk_forward_reports(self) -> list[str]:
        """Keys of the walk-forward reports in the store."""
        return sorted(k for k in self.store.blobs.list(keys.WALK_FORWARD_REPORTS)
                      if k.endswith(".json"))

    def report(self, key: str) -> dict[str, Any]:
        """One walk-forward report."""
        parsed: dict[str, Any] = json.loads(self.store.blobs.get(key).data)
        return parsed

    def tune_trials(self) -> dict[str, Any] | None:
        """The ``raytrade tune`` trials document (``algos/tune.py``), or None."""
        try:
            raw = self.store.blobs.get(keys.TUNE_TRIALS).data
        except NotFoundError:
            return None
        parsed: dict[str, Any] = json.loads(raw)
        return parsed


def finite(value: Any) -> float | None:
    """``value`` as a float, or None when missing or not finite (for display)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
