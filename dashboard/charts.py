"""Charts shared by the pages. Streamlit's ``st.line_chart`` always starts its value axis at
zero, which flattens an equity curve of 10,000 +/- 300 into a straight line; these scale
the axis to the data."""

from __future__ import annotations

import altair as alt
import pandas as pd


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
