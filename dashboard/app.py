"""The raytrade dashboard (Streamlit): ``raytrade dashboard --store URI`` runs this file.

Pages live in ``views/``, one file each; ``context.py`` holds what they share.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="raytrade", layout="wide")
page = st.navigation([
    st.Page(VIEWS / "overview.py", title="Overview", default=True),
    st.Page(VIEWS / "training.py", title="Training"),
    st.Page(VIEWS / "evaluation.py", title="Evaluation"),
    st.Page(VIEWS / "paper.py", title="Paper trading"),
    st.Page(VIEWS / "models.py", title="Models"),
    st.Page(VIEWS / "walk_forward.py", title="Walk-forward"),
])
page.run()
