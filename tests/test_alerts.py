"""Alerts through webhook and Telegram notifiers, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from raytrade.actors.alerts import AlertDispatcher, TelegramNotifier, WebhookNotifier


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
