"""Alerts through webhook and Telegram notifiers, against real local HTTP servers (one
that records, one that fails), and the notifiers' secrets: a webhook URL (Slack and
Discord carry the credential in its path) and a bot token never appear in captured logs,
reprs or raised errors."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from raytrade.actors.alerts import Alert, AlertDispatcher, TelegramNotifier, WebhookNotifier


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, object]]] = []  # noqa: RUF012 - test server state
    fail_next = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Recorder.fail_next:
            _Recorder.fail_next -= 1
            self.send_response(500)
        else:
            _Recorder.received.append((self.path, body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_server() -> Iterator[str]:
    _Recorder.received = []
    _Recorder.fail_next = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_alerts_reach_webhook_and_telegram_with_retry(http_server: str) -> None:
    _Recorder.fail_next = 1  # the first delivery fails and is retried
    tg = TelegramNotifier("123:SECRET", "42", api_base=http_server)
    alerts = AlertDispatcher([WebhookNotifier(f"{http_server}/hook"), tg])
    assert alerts.alert("halt", "paper-eth", "ETHUSDT", "drawdown halt fired")
    alerts.close()
    paths = sorted(p for p, _ in _Recorder.received)
    assert paths == ["/bot123:SECRET/sendMessage", "/hook"]
    hook = dict(_Recorder.received)["/hook"]
    assert hook["kind"] == "halt" and hook["symbol"] == "ETHUSDT"
    telegram = dict(_Recorder.received)["/bot123:SECRET/sendMessage"]
    assert telegram["chat_id"] == "42" and "drawdown halt fired" in str(telegram["text"])
    assert alerts.sent == 2 and alerts.failed == 0
    assert "SECRET" not in repr(tg)


def test_alerts_quiet_period_and_off_by_default(http_server: str) -> None:
    assert not AlertDispatcher([]).alert("feed_down", "a", "X", "down")
    alerts = AlertDispatcher([WebhookNotifier(http_server)], quiet_s=60)
    assert alerts.alert("feed_down", "a", "X", "down")
    assert not alerts.alert("feed_down", "a", "X", "still down")
    assert alerts.alert("feed_down", "a", "Y", "down")  # another symbol
    alerts.close()
    assert len(_Recorder.received) == 2 and alerts.suppressed == 1


def test_alerts_unreachable_endpoint_never_raises() -> None:
    alerts = AlertDispatcher([WebhookNotifier("http://127.0.0.1:9/none", timeout_s=0.2)],
                             retries=2)
    assert alerts.alert("policy_rejected", "a", "X", "v3 bad checksum")
    alerts.close()
    assert alerts.failed == 1 and alerts.sent == 0


class _Failing(BaseHTTPRequestHandler):
    """A webhook endpoint that is down: every POST gets a 500."""

    paths: list[str] = []  # noqa: RUF012 - test server state

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Failing.paths.append(self.path)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def failing_server() -> Iterator[str]:
    _Failing.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# webhook paths shaped like Slack's and Discord's: the credential is in the path
SLACK = "/services/T0SECRET1/B0SECRET2/slackSECRETtoken0123456789"
DISCORD = "/api/webhooks/112233445566778899/discordSECRETtoken_abc-XYZ"
SECRETS = ("T0SECRET1", "B0SECRET2", "slackSECRETtoken0123456789", "112233445566778899",
           "discordSECRETtoken_abc-XYZ")


def _shown(notifier: WebhookNotifier | TelegramNotifier, error: BaseException,
           logs: str) -> list[str]:
    """Everything that formats the notifier or its errors."""
    return [logs, repr(notifier), str(notifier), repr(vars(notifier)), str(error),
            repr(error), "".join(traceback.format_exception(error)),
            repr(AlertDispatcher([notifier]).notifiers)]


@pytest.mark.parametrize("path", [SLACK, DISCORD])
def test_webhook_failing_endpoint_never_shows_the_secret_in_logs_reprs_or_errors(
        failing_server: str, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib's and http's included
    notifier = WebhookNotifier(failing_server + path, timeout_s=2)
    alerts = AlertDispatcher([notifier], retries=2)
    assert alerts.alert("halt", "paper-eth", "ETHUSDT", "drawdown halt fired")
    alerts.close()
    assert alerts.failed == 1 and alerts.sent == 0
    assert _Failing.paths == [path, path], "the endpoint was called with the secret URL"
    with pytest.raises(OSError) as info:
        notifier.send(Alert("halt", "paper-eth", "ETHUSDT", "again", 0.0))
    assert "failed (try 2)" in caplog.text, "the failures were logged"
    for text in _shown(notifier, info.value, caplog.text):
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert str(info.value) == "webhook to 127.0.0.1 failed: HTTP 500 Internal Server Error"
    # the notifier still travels to a Ray actor (pickled) with its URL intact
    assert pickle.loads(pickle.dumps(notifier))._url == notifier._url


@pytest.mark.parametrize(("url", "cause"), [
    # refused: nothing listens on port 9
    (f"http://127.0.0.1:9{SLACK}", "ConnectionRefusedError"),
    # http.client quotes the path of a URL it refuses
    (f"http://127.0.0.1:9{SLACK} x", "InvalidURL"),
    # urllib quotes the whole URL when the scheme is missing
    (f"discord.com{DISCORD}", "ValueError: unknown url type"),
    (f"hxxps://discord.com{DISCORD}", "unknown url type: hxxps"),
])
def test_webhook_errors_that_quote_the_url_are_scrubbed(
        url: str, cause: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = WebhookNotifier(url, timeout_s=1)
    with pytest.raises(OSError) as info:
        notifier.send(Alert("halt", "a", "X", "m", 0.0))
    assert cause in str(info.value)
    for text in _shown(notifier, info.value, caplog.text):
        for secret in SECRETS:
            assert secret not in text, (secret, text)


def test_telegram_failing_endpoint_never_shows_the_token(
        failing_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = TelegramNotifier("123456:TGsecretTOKEN", "42", api_base=failing_server,
                                timeout_s=2)
    alerts = AlertDispatcher([notifier], retries=1)
    assert alerts.alert("halt", "a", "X", "m")
    alerts.close()
    assert alerts.failed == 1 and _Failing.paths == ["/bot123456:TGsecretTOKEN/sendMessage"]
    with pytest.raises(OSError) as info:
        notifier.send(Alert("halt", "a", "X", "m", 0.0))
    for text in _shown(notifier, info.value, caplog.text):
        assert "TGsecretTOKEN" not in text, text


def test_paper_cli_alert_secrets_come_from_the_environment_never_from_flags(
        http_server: str) -> None:
    from raytrade.envs.errors import ConfigError
    from raytrade.scripts.cli import build_parser
    from raytrade.scripts.paper_cli import alert_notifiers

    env = {"HOOK": http_server + SLACK, "TG": "123:SECRET"}
    hook, telegram = alert_notifiers("HOOK", "42", "TG", env)
    assert isinstance(hook, WebhookNotifier) and isinstance(telegram, TelegramNotifier)
    alerts = AlertDispatcher([hook])  # Telegram's real API is not reachable from tests
    assert alerts.alert("halt", "paper-eth", "ETHUSDT", "drawdown halt fired")
    alerts.close()
    assert [p for p, _ in _Recorder.received] == [SLACK]
    assert dict(_Recorder.received)[SLACK]["kind"] == "halt"
    with pytest.raises(ConfigError, match=r"\$HOOK, which is not set"):
        alert_notifiers("HOOK", None, "TG", {})
    with pytest.raises(ConfigError, match=r"bot token in \$TG"):
        alert_notifiers(None, "42", "TG", {})
    assert alert_notifiers(None, None, "TG", env) == []
    # a URL given where the variable's name belongs is refused without being echoed
    with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
        alert_notifiers(http_server + SLACK, None, "TG", env)
    assert all(secret not in str(info.value) for secret in SECRETS)
    # no flag takes a webhook URL any more
    with pytest.raises(SystemExit):
        build_parser().parse_args(["paper", "--store", "file:///tmp/x", "--symbols", "ETHUSDT",
                                   "--webhook", http_server + SLACK])
