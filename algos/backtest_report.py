"""A backtest as one self-contained HTML file (Plotly, its JavaScript inlined once).

Per dataset: equity and drawdown of the policy against the baselines (a curve that stops
early hit the drawdown halt of the risk rules: flat for good), the policy's
position on the price, the metrics table (from the shared metrics module, as computed by
``run_backtest``), the cost breakdown and the trade list; then the run's config and the
policy version. No file or script is fetched from anywhere when it is opened.
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
    """The whole report."""
    parts = [f"<h1>Backtest of policy {html.escape(result.config['policy'])}</h1>"]
    first = True
    for dataset, per in result.datasets.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        fig = _figure(per, dataset)
        parts.append(to_html(fig, full_html=False, include_plotlyjs="inline" if first
                             else False))
        first = False
        parts.append("<h3>Metrics (shared metrics module)</h3>")
        parts.append(_table([{"policy": name, **{k: run.get(k) for k in METRICS}}
                             for name, run in per.items()]))
        parts.append("<h3>Costs</h3>")
        parts.append(_table([{"policy": name, "fees": run["fees"],
                              "traded_notional": run["traded_notional"],
                              "turnover_per_year": run.get("turnover_per_year"),
                              "fees / initial equity": run["fees"] /
                              result.config["initial_equity"]}
                             for name, run in per.items()]))
        trades = per["policy"]["trade_list"]
        parts.append(f"<h3>Policy trades ({len(trades)}"
                     f"{', first ' + str(TRADES_SHOWN) if len(trades) > TRADES_SHOWN else ''})"
                     "</h3>")
        if trades:
            frame = pd.DataFrame(trades[:TRADES_SHOWN])
            frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
            parts.append(frame.to_html(index=False, border=0, classes="t"))
    parts.append("<h2>Run</h2><pre>" + html.escape(json.dumps(result.config, indent=2))
                 + "</pre>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}"
             "table.t{border-collapse:collapse;font-size:13px}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;"
             "text-align:right}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>raytrade backtest"
            f"</title><style>{style}</style></head><body>" + "".join(parts) +
            "</body></html>")
