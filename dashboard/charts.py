"""Charts shared by the pages. Streamlit's ``st.line_chart`` always starts its value axis at
zero, which flattens an equity curve of 10,000 +/- 300 into a straight line; these scale
the axis to the data. Evaluation curves of different lengths are drawn on their own x
values, with the early stops (drawdown halt, ruin) marked."""

from __future__ import annotations

import altair as alt
import pandas as pd
from raytrade.dashboard.eval_curves import DatasetCurves


def value_lines(frame: pd.DataFrame, y_title: str = "equity") -> alt.Chart:
    """One line per column of ``frame`` over its index (times or steps), value axis fitted
    to the data (not to zero)."""
    x_name = str(frame.index.name or "step")
    long = frame.reset_index(names=x_name).melt(id_vars=x_name, var_name="series",
                                                 value_name="value")
    x_type = "T" if pd.api.types.is_datetime64_any_dtype(long[x_name]) else "Q"
    chart: alt.Chart = alt.Chart(long).mark_line().encode(
        x=alt.X(f"{x_name}:{x_type}", title=None),
        y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=y_title),
        color=alt.Color("series:N", title=None))
    return chart


def curves_with_stops(curves: DatasetCurves, value: str) -> alt.LayerChart:
    """One line per policy of an evaluation's ``value`` (``"equity"`` or ``"drawdown"``)
    over bar time (or point index), value axis fitted to the data, and a marked point with
    a label where a policy stopped early (drawdown halt or ruin)."""
    if value not in ("equity", "drawdown"):
        raise ValueError(f"value must be 'equity' or 'drawdown', got {value!r}")
    x_type = "T" if curves.aligned_on_time else "Q"
    x = alt.X(f"x:{x_type}", title=None)
    color = alt.Color("policy:N", title=None)
    lines = alt.Chart(curves.table).mark_line().encode(
        x=x, y=alt.Y(f"{value}:Q", scale=alt.Scale(zero=False), title=value,
                     axis=alt.Axis(format="%" if value == "drawdown" else ",.0f")),
        color=color)
    layers: list[alt.Chart] = [lines]
    if curves.stops:
        stops = pd.DataFrame({
            "x": [s.at for s in curves.stops], "policy": [s.policy for s in curves.stops],
            value: [getattr(s, value) for s in curves.stops],
            "label": [f"{s.policy}: {s.reason}" for s in curves.stops]})
        marks = alt.Chart(stops).encode(x=x, y=alt.Y(f"{value}:Q"), color=color,
                                        tooltip=["policy:N", "label:N", f"x:{x_type}",
                                                 f"{value}:Q"])
        layers += [marks.mark_point(shape="cross", size=160, filled=True),
                   marks.mark_text(align="left", dx=8, dy=-8).encode(text="label:N")]
    return alt.LayerChart(layer=layers)
