"""The raytrade dashboard (Streamlit): ``raytrade dashboard --store URI`` runs this file.

Pages live in ``views/``, one file each, listed in ``navigation.py``; ``context.py`` holds
what they share.
"""

from __future__ import annotations

import streamlit as st
from raytrade.dashboard.navigation import PAGES

st.set_page_config(page_title="raytrade", layout="wide")
page = st.navigation([st.Page(p.path, title=p.title, default=p.default) for p in PAGES])
page.run()
