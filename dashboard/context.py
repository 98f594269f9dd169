"""What every dashboard page shares: the run reader for the configured store, the refresh
period, the optional login gate and the empty-state helper.

Configuration comes from the environment, set by ``raytrade dashboard``:
``RAYTRADE_DASHBOARD_STORE`` (store URI), ``RAYTRADE_S3_ENDPOINT_URL`` (S3-compatible
endpoint), ``RAYTRADE_DASHBOARD_REFRESH_S`` (auto-refresh period, default 10),
``RAYTRADE_DASHBOARD_ACTIONS=1`` (show promote and rollback) and
``RAYTRADE_DASHBOARD_ALLOW`` (comma-separated e-mail allow-list: requires Streamlit's OIDC
login, configured in ``.streamlit/secrets.toml`` under ``[auth]``).
"""

from __future__ import annotations

import os

import streamlit as st
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.dashboard.run_reader import RunReader

STORE_ENV = "RAYTRADE_DASHBOARD_STORE"
ACTIONS_ENV = "RAYTRADE_DASHBOARD_ACTIONS"
ALLOW_ENV = "RAYTRADE_DASHBOARD_ALLOW"
REFRESH_ENV = "RAYTRADE_DASHBOARD_REFRESH_S"


@st.cache_resource(show_spinner=False)
def _reader(uri: str, endpoint: str | None) -> RunReader:
    return RunReader(PolicyStore(uri, endpoint_url=endpoint))


def reader() -> RunReader:
    """The cached reader of the configured store; stops the page with a clear message if
    none is configured or the viewer is not allowed."""
    _require_login()
    uri = os.environ.get(STORE_ENV)
    if not uri:
        st.error(f"No run store configured: start with `raytrade dashboard --store URI` "
                 f"(or set {STORE_ENV}).")
        st.stop()
    return _reader(uri, os.environ.get("RAYTRADE_S3_ENDPOINT_URL"))


def refresh_s() -> float:
    """Auto-refresh period of the pages, seconds."""
    return float(os.environ.get(REFRESH_ENV, "10"))


def actions_enabled() -> bool:
    """Whether promote and rollback are offered."""
    return os.environ.get(ACTIONS_ENV) == "1"


def _require_login() -> None:
    allow = {e.strip().lower() for e in os.environ.get(ALLOW_ENV, "").split(",") if e.strip()}
    if not allow:
        return
    if not _auth_configured():
        st.error("This dashboard has a login allow-list but no login provider: configure "
                 "[auth] in .streamlit/secrets.toml (Streamlit OIDC).")
        st.stop()
    if not st.user.get("is_logged_in", False):
        st.info("This dashboard needs a login.")
        st.button("Log in", on_click=st.login)
        st.stop()
    if str(st.user.get("email", "")).lower() not in allow:
        st.error("Your account is not on this dashboard's allow-list.")
        st.button("Log out", on_click=st.logout)
        st.stop()


def _auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        return False


def empty(what: str, hint: str) -> None:
    """The empty state of a page or section."""
    st.info(f"{what} yet. {hint}")


def show_errors(errors: list[str]) -> None:
    """Malformed lines skipped while reading, named."""
    for e in errors[:20]:
        st.warning(f"skipped: {e}")
