"""``raytrade dashboard``: start the Streamlit dashboard on a run store.

It binds 127.0.0.1 unless told otherwise; a non-loopback address is refused unless an
allow-list of logins (``--allow``, Streamlit OIDC configured in ``secrets.toml``) is given
or ``--behind-proxy`` says an authenticating reverse proxy is in front. Error details are
never shown to viewers (``client.showErrorDetails = none``) unless ``--dev``.

Promote and rollback, and the Live page's kill switch (``--enable-actions``), are logged
as made by the viewer: the login's e-mail, or the identity the proxy passes in
``--identity-header``. On a non-loopback address they are refused unless one of the two
tells who the viewer is.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from raytrade.envs.errors import ConfigError

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line for ``args``."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", args.host, "--server.port", str(args.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # the URL line is printed whatever a user's config says: it is how a user
            # (and the demo, which waits for it) knows which server answers
            "--logger.hideWelcomeMessage", "false",
            "--client.showErrorDetails", "full" if args.dev else "none",
            "--client.toolbarMode", "developer" if args.dev else "minimal"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_dashboard(args: argparse.Namespace) -> int:
    if not _loopback(args.host) and not (args.allow or args.behind_proxy):
        raise ConfigError(f"--host {args.host} exposes the dashboard: give --allow "
                          "(OIDC login allow-list) or --behind-proxy (an authenticating "
                          "reverse proxy in front)")
    if args.identity_header and not args.behind_proxy:
        raise ConfigError("--identity-header is trusted only from an authenticating proxy: "
                          "add --behind-proxy")
    if args.enable_actions and not _loopback(args.host) and not (args.allow or
                                                                 args.identity_header):
        raise ConfigError(f"--enable-actions on {args.host}: the move log must name the "
                          "viewer; give --allow (login) or --identity-header (the proxy's "
                          "identity header)")
    env = {**os.environ, "RAYTRADE_DASHBOARD_STORE": args.store,
           "RAYTRADE_DASHBOARD_REFRESH_S": str(args.refresh)}
    if args.s3_endpoint_url:
        env["RAYTRADE_S3_ENDPOINT_URL"] = args.s3_endpoint_url
    if args.enable_actions:
        env["RAYTRADE_DASHBOARD_ACTIONS"] = "1"
    if args.allow:
        env["RAYTRADE_DASHBOARD_ALLOW"] = args.allow
    if args.identity_header:
        env["RAYTRADE_DASHBOARD_IDENTITY_HEADER"] = args.identity_header
    cmd = streamlit_command(args)
    # become Streamlit: a signal to this process (Ctrl-C, a supervisor's SIGTERM) reaches
    # the server itself instead of orphaning a child
    os.execve(cmd[0], cmd, env)
    return 1  # not reached


def add_dashboard_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dashboard``."""
    p = sub.add_parser("dashboard", help="Streamlit dashboard over a run store")
    p.add_argument("--store", required=True, help="run store: file:///path or s3://bucket/x")
    p.add_argument("--s3-endpoint-url", help="S3-compatible endpoint")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--refresh", type=float, default=10.0, help="auto-refresh seconds")
    p.add_argument("--enable-actions", action="store_true",
                   help="show promote and rollback, and the Live page's kill switch (halt, "
                        "flatten, resume); reason and confirmation required")
    p.add_argument("--allow", help="comma-separated e-mails allowed to log in (OIDC, "
                   "configured under [auth] in .streamlit/secrets.toml)")
    p.add_argument("--behind-proxy", action="store_true",
                   help="an authenticating reverse proxy guards this address")
    p.add_argument("--identity-header", help="request header in which the authenticating "
                   "proxy passes the viewer's identity (e.g. X-Forwarded-Email); names the "
                   "viewer in the move log")
    p.add_argument("--dev", action="store_true", help="show error details (development)")
    p.set_defaults(func=_cmd_dashboard)
