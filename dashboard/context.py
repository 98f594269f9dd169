"""What every dashboard page shares: the run reader for the configured store, the refresh
period, the optional login gate and the empty-state helper.

Configuration comes from the environment, set by ``raytrade dashboard``:
``RAYTRADE_DASHBOARD_STORE`` (store URI), ``RAYTRADE_S3_ENDPOINT_URL`` (S3-compatible
endpoint), ``RAYTRADE_DASHBOARD_REFRESH_S`` (auto-refresh period, default 10),
``RAYTRADE_DASHBOARD_ACTIONS=1`` (show promote and rollback, and the Live page's kill
switch), ``RAYTRADE_DASHBOARD_ALLOW`` (comma-separated e-mail allow-list: requires
Streamlit's OIDC login, configured in ``.streamlit/secrets.toml`` under ``[auth]``) and
``RAYTRADE_DASHBOARD_IDENTITY_HEADER`` (the request header in which an authenticating
reverse proxy passes the viewer's identity, e.g. ``X-Forwarded-Email``).

Promote and rollback (in the store's move log) and the kill switch's commands (under
``live/commands/``) are recorded as made by the *viewer* (``viewer``), never by the
server's OS user: the logged-in e-mail, else the proxy's identity header, else (a loopback
dashboard without login) an explicit ``unauthenticated dashboard viewer``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import streamlit as st
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.dashboard.run_reader import RunReader

STORE_ENV = "RAYTRADE_DASHBOARD_STORE"
ACTIONS_ENV = "RAYTRADE_DASHBOARD_ACTIONS"
ALLOW_ENV = "RAYTRADE_DASHBOARD_ALLOW"
REFRESH_ENV = "RAYTRADE_DASHBOARD_REFRESH_S"
IDENTITY_HEADER_ENV = "RAYTRADE_DASHBOARD_IDENTITY_HEADER"
UNAUTHENTICATED = "unauthenticated dashboard viewer"


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
    """Whether promote and rollback, and the kill switch, are offered."""
    return os.environ.get(ACTIONS_ENV) == "1"


def _allow_list() -> set[str]:
    return {e.strip().lower() for e in os.environ.get(ALLOW_ENV, "").split(",") if e.strip()}


def identity(*, login_required: bool, user: Mapping[str, Any], headers: Mapping[str, str],
             identity_header: str | None) -> str | None:
    """Who a request acts as, for the audit log (module docstring); None when it cannot
    be told (a login or proxy identity is configured but missing): then nothing moves."""
    if login_required:
        email = str(user.get("email") or "").strip()
        return f"{email} (dashboard login)" if user.get("is_logged_in") and email else None
    if identity_header:
        wanted = identity_header.lower()  # HTTP header names are case-insensitive
        value = next((str(v).strip() for k, v in headers.items() if k.lower() == wanted), "")
        return f"{value} (via proxy header {identity_header})" if value else None
    return UNAUTHENTICATED


def viewer() -> str | None:
    """The identity the current viewer's promote, rollback or operator command is
    recorded under."""
    return identity(login_required=bool(_allow_list()), user=st.user.to_dict(),
                    headers=dict(st.context.headers),
                    identity_header=os.environ.get(IDENTITY_HEADER_ENV) or None)


def _require_login() -> None:
    allow = _allow_list()
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
