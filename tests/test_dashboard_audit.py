"""The dashboard's promote and rollback are logged as made by the viewer (the login, or the
proxy's identity header), never by the server's OS user; through Streamlit's AppTest on a
seeded store, and the ``raytrade dashboard`` rules that make an identity available."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from raytrade.algos.storage.policy_store import PolicyStore, default_actor, version_name
from raytrade.dashboard.context import UNAUTHENTICATED, identity
from raytrade.scripts.cli import main
from streamlit.testing.v1 import AppTest

from tests.dashboard_seed import seed_store

MODELS = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "models.py"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
        "client_id": "x", "client_secret": "y",
        "server_metadata_url": "https://login.example.com/.well-known/openid-configuration"}


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[PolicyStore, int, int]:
    store = PolicyStore((tmp_path / "store").as_uri())
    v1, v2 = seed_store(store)["versions"]
    store.move("paper", v2, reason="newer")
    return store, v1, v2


def _models(monkeypatch: pytest.MonkeyPatch, store: PolicyStore, user: dict[str, Any],
            **env: str) -> AppTest:
    monkeypatch.setenv("RAYTRADE_DASHBOARD_STORE", store.uri)
    monkeypatch.setenv("RAYTRADE_DASHBOARD_ACTIONS", "1")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(MODELS), default_timeout=60)
    at.user = user
    at.secrets["auth"] = AUTH
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _roll_back_paper(at: AppTest, reason: str) -> None:
    at.radio[0].set_value("roll back paper")
    at.text_input[0].input(reason)
    at.checkbox[0].check()
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_dashboard_rollback_is_logged_as_the_logged_in_viewer(
        seeded: tuple[PolicyStore, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    store, v1, _ = seeded
    at = _models(monkeypatch, store, {"is_logged_in": True, "email": "alice@example.com"},
                 RAYTRADE_DASHBOARD_ALLOW="alice@example.com,bob@example.com")
    _roll_back_paper(at, "bad fills on v2")
    assert any(f"paper rolled back to {version_name(v1)}" in str(s.value) for s in at.success)
    move = store.history("paper")[-1]
    assert move.by == "alice@example.com (dashboard login)" != default_actor()
    assert store.channel("paper").by == move.by  # type: ignore[union-attr]
    # the button again: v2 was rolled back from, so it is never re-activated
    _roll_back_paper(at, "still bad")
    assert any("no earlier version" in str(e.value) for e in at.error)
    assert store.channel("paper").version == v1  # type: ignore[union-attr]


def test_dashboard_move_without_login_is_logged_as_unauthenticated_not_the_server_user(
        seeded: tuple[PolicyStore, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    store = seeded[0]
    monkeypatch.delenv("RAYTRADE_DASHBOARD_ALLOW", raising=False)
    at = _models(monkeypatch, store, {})
    _roll_back_paper(at, "bad fills on v2")
    assert store.history("paper")[-1].by == UNAUTHENTICATED != default_actor()


def test_dashboard_move_with_an_unknown_viewer_moves_nothing(
        seeded: tuple[PolicyStore, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, v2 = seeded
    # a proxy identity header is configured but the request carries none
    at = _models(monkeypatch, store, {}, RAYTRADE_DASHBOARD_IDENTITY_HEADER="X-Forwarded-Email")
    _roll_back_paper(at, "bad fills on v2")
    assert any("identity is unknown" in str(e.value) for e in at.error)
    assert store.channel("paper").version == v2  # type: ignore[union-attr]


def test_identity_prefers_the_login_then_the_proxy_header() -> None:
    alice = {"is_logged_in": True, "email": "alice@example.com"}
    assert identity(login_required=True, user=alice, headers={},
                    identity_header=None) == "alice@example.com (dashboard login)"
    assert identity(login_required=True, user={"email": "x@y"}, headers={},
                    identity_header=None) is None, "not logged in: nobody"
    headers = {"x-forwarded-email": "carol@example.com"}
    assert identity(login_required=False, user={}, headers=headers,
                    identity_header="X-Forwarded-Email") == \
        "carol@example.com (via proxy header X-Forwarded-Email)"
    assert identity(login_required=False, user={}, headers={},
                    identity_header="X-Forwarded-Email") is None
    assert identity(login_required=False, user={}, headers={},
                    identity_header=None) == UNAUTHENTICATED


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0", "--behind-proxy", "--enable-actions"], "must name the viewer"),
    (["--identity-header", "X-Forwarded-Email"], "add --behind-proxy"),
])
def test_dashboard_cli_refuses_actions_it_could_not_attribute(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    assert main(["dashboard", "--store", (tmp_path / "s").as_uri(), *args]) == 1
    assert message in capsys.readouterr().err
