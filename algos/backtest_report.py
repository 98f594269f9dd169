"""A backtest as one self-contained HTML file (Plotly, its JavaScript inlined once).

Per dataset: equity and drawdown of the policy against the baselines (a curve that stops
early hit the drawdown halt of the risk rules: flat for good), the policy's
position on the price, the metrics table (from the shared metrics module, as computed by
``run_backtest``), the cost table (net beside gross return, cost drag, fees, slippage and
borrow as fractions of the starting equity and in quote currency, turnover, trades per
day, average holding bars, and where the drawdown halt or ruin stopped a run: such a
policy is labelled ``(halted)`` in every table) and the trade list; then the run's config
and the policy version. No file or script is fetched from anywhere when it is opened.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.io import to_html
from plotly.subplots import make_subplots
from raytrade.algos.backtest import BacktestResult
from raytrade.algos.run_metrics import COST_COLUMNS, halted_label
from raytrade.algos.walkforward import WalkForwardResult

METRICS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "calmar",
           "win_rate", "profit_factor", "exposure", "turnover_per_year", "trades", "fees",
           "final_equity")
TRADES_SHOWN = 500
COLORS = {"policy": "#1f4fd8", "buy_and_hold": "#2ca02c", "flat": "#7f7f7f",
          "random": "#d62728", "momentum": "#ff7f0e"}


def _figure(per: dict[str, Any], dataset: str) -> go.Figure:
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.45, 0.2, 0.35],
                        subplot_titles=("Equity", "Drawdown", "Policy position on price"),
                        specs=[[{}], [{}], [{"secondary_y": True}]])
    for name, run in per.items():
        c = run["curves"]
        ts = pd.to_datetime(c["ts"], unit="ms", utc=True)
        line = {"width": 2.5 if name == "policy" else 1.2, "color": COLORS.get(name)}
        fig.add_trace(go.Scatter(x=ts, y=c["equity"], name=name, legendgroup=name,
                                 line=line), row=1, col=1)
        fig.add_trace(go.Scatter(x=ts, y=c["drawdown"], name=name, legendgroup=name,
                                 showlegend=False, line=line), row=2, col=1)
    c = per["policy"]["curves"]
    ts = pd.to_datetime(c["ts"], unit="ms", utc=True)
    fig.add_trace(go.Scatter(x=ts, y=c["close"], name="close", line={"color": "#444"}),
                  row=3, col=1)
    fig.add_trace(go.Scatter(x=ts, y=c["position"], name="position", fill="tozeroy",
                             line={"shape": "hv", "width": 0.5}, opacity=0.4),
                  row=3, col=1, secondary_y=True)
    fig.update_layout(height=900, title=dataset, margin={"t": 60, "l": 40, "r": 20})
    return fig


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_html(index=False, float_format=lambda x: f"{x:,.4f}",
                                      na_rep="n/a", border=0, classes="t")


def render_html(result: BacktestResult) -> str:
    """The whole backtest report."""
    parts = [f"<h1>Backtest of policy {html.escape(result.config['policy'])}</h1>",
             "<h2>Decision range (after the feature warm-up)</h2>",
             _table([{"dataset": name, **{k: d[k] for k in (
                 "selection", "first_decision_utc", "first_decision_bar", "last_decision_utc",
                 "decisions", "warmup_bars", "warmup")}}
                 for name, d in result.decisions.items()])]
    _datasets(parts, result.datasets, result.config["initial_equity"], inline_js=True)
    return _page(parts, result.config)


def render_walkforward_html(result: WalkForwardResult) -> str:
    """The walk-forward report: aggregate and in-sample/out-of-sample gap first, then each
    fold's test window like a backtest."""
    parts = [f"<h1>Walk-forward of {html.escape(str(result.config['experiment']))}</h1>",
             "<h2>Aggregate out of sample (folds chained)</h2>"]
    parts.append(_table([{"dataset": d, "policy": name, **{k: run.get(k) for k in
                                                          (*METRICS[:9],
                                                           "sharpe_gap_in_minus_out",
                                                           "return_gap_in_minus_out",
                                                           "median_fold_cost_drag",
                                                           "max_fold_cost_drag",
                                                           "halted_folds")}}
                         for d, per in result.aggregate.items()
                         for name, run in per.items()]))
    parts.append("<h2>Folds</h2>")
    parts.append(_table([{"fold": f["index"], "version": f["version"],
                          "train": _span(f["train_start"], f["train_end"]),
                          "test": _span(f["test_start"], f["test_end"]),
                          "normalizer fitted": _span(*f["normalizer_fit"]),
                          "iterations": f["iterations"]} for f in result.folds]))
    parts.append(_table([{"fold": f["index"], "dataset": d, "policy": halted_label(name, run),
                          "in-sample Sharpe": f["in_sample"][d][name].get("sharpe"),
                          "out-of-sample Sharpe": run.get("sharpe"),
                          "in-sample return": f["in_sample"][d][name].get("total_return"),
                          "out-of-sample return": run.get("total_return"),
                          **{f"out-of-sample {k}": run.get(k) for k in COST_COLUMNS[1:]}}
                         for f in result.folds for d, per in f["out_of_sample"].items()
                         for name, run in per.items()]))
    for i, f in enumerate(result.folds):
        window = _span(f["test_start"], f["test_end"])
        parts.append(f"<h2>Fold {f['index']}: test window {window}</h2>")
        _datasets(parts, f["out_of_sample"], result.config["initial_equity"],
                  inline_js=i == 0)
    return _page(parts, result.config)


def _span(start_ms: int, end_ms: int) -> str:
    a, b = pd.to_datetime([start_ms, end_ms], unit="ms", utc=True)
    return f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M}"


def _datasets(parts: list[str], datasets: dict[str, dict[str, Any]], initial_equity: float,
              *, inline_js: bool) -> None:
    first = inline_js
    for dataset, per in datasets.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        fig = _figure(per, dataset)
        parts.append(to_html(fig, full_html=False, include_plotlyjs="inline" if first
                             else False))
        first = False
        parts.append("<h3>Metrics (shared metrics module)</h3>")
        parts.append(_table([{"policy": halted_label(name, run),
                              **{k: run.get(k) for k in METRICS}}
                             for name, run in per.items()]))
        parts.append("<h3>Costs (fractions of the starting equity "
                     f"{initial_equity:,.2f})</h3>")
        parts.append(_table([cost_row(name, run) for name, run in per.items()]))
        trades = per["policy"]["trade_list"]
        parts.append(f"<h3>Policy trades ({len(trades)}"
                     f"{', first ' + str(TRADES_SHOWN) if len(trades) > TRADES_SHOWN else ''})"
                     "</h3>")
        if trades:
            frame = pd.DataFrame(trades[:TRADES_SHOWN])
            frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
            parts.append(frame.to_html(index=False, border=0, classes="t"))


def cost_row(name: str, run: dict[str, Any]) -> dict[str, Any]:
    """One policy's row of the cost table (module docstring)."""
    halted_at = run.get("halted_ts")
    return {"policy": halted_label(name, run), **{k: run.get(k) for k in COST_COLUMNS},
            "fees": run.get("fees"), "slippage": run.get("slippage"),
            "borrow": run.get("borrow"), "traded_notional": run.get("traded_notional"),
            "halted at": "" if halted_at is None
            else f"{pd.to_datetime(halted_at, unit='ms', utc=True):%Y-%m-%d %H:%M}"}


def _page(parts: list[str], config: dict[str, Any]) -> str:
    parts.append("<h2>Run</h2><pre>" + html.escape(json.dumps(config, indent=2))
                 + "</pre>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}"
             "table.t{border-collapse:collapse;font-size:13px}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;"
             "text-align:right}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>raytrade backtest"
            f"</title><style>{style}</style></head><body>" + "".join(parts) +
            "</body></html>")
