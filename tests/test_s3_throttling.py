"""S3 throttling (``503 SlowDown``) against moto's S3 server over HTTP.

A loopback HTTP proxy sits between boto3 and moto: it answers the first ``throttle``
requests with S3's real ``503 SlowDown`` error (status, XML body, headers), then forwards
every request to moto unchanged. The store must retry with bounded, jittered exponential
backoff and succeed; past its attempt budget it must raise ``StoreUnavailableError`` that
names the key, the S3 code and the attempts made.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from raytrade.algos.storage.blobstore import S3BlobStore, StoreUnavailableError, s3_attempts
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.errors import ConfigError
from raytrade.scripts.s3_local import MotoServer

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message>"
             b"<RequestId>7A3C1B2D4E5F6071</RequestId><HostId>throttle-proxy</HostId></Error>")


class ThrottlingProxy:
    """Forwards HTTP to ``upstream``; the first ``throttle`` requests get 503 SlowDown."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.throttle = 0
        self.arrivals: list[tuple[float, str, int]] = []  # (monotonic s, method, status)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    throttled = proxy.throttle > 0
                    if throttled:
                        proxy.throttle -= 1
                    proxy.arrivals.append((time.monotonic(), self.command,
                                           503 if throttled else 0))
                if throttled:
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.send_header("x-amz-request-id", "7A3C1B2D4E5F6071")
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname or "127.0.0.1",
                                                  proxy.upstream.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body,
                                 headers={k: v for k, v in self.headers.items()})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, throttle: int) -> None:
        with self.lock:
            self.throttle = throttle
            self.arrivals.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy(moto_server: MotoServer) -> Iterator[ThrottlingProxy]:
    p = ThrottlingProxy(moto_server.endpoint_url)
    yield p
    p.close()


def _gaps(arrivals: list[tuple[float, str, int]]) -> list[float]:
    return [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]


def test_s3_store_throttled_twice_retries_with_bounded_backoff_and_succeeds(
        moto_server: MotoServer, proxy: ThrottlingProxy) -> None:
    bucket = moto_server.new_bucket()
    store = S3BlobStore(bucket, "run", endpoint_url=proxy.endpoint_url, max_attempts=3)
    proxy.reset(throttle=2)
    store.put("metrics/train.jsonl", b'{"iteration": 1}\n')
    statuses = [a[2] for a in proxy.arrivals]
    assert statuses == [503, 503, 0], "two throttled attempts, then the one that landed"
    # full jitter: retry i sleeps rand(0, 1) * min(2 ** i, 20) s (1 s base when throttled)
    bounds = [1.0, 2.0]
    for gap, bound in zip(_gaps(proxy.arrivals), bounds, strict=True):
        assert gap <= bound + 0.5, (gap, bound)
    proxy.reset(throttle=2)
    assert store.get("metrics/train.jsonl").data == b'{"iteration": 1}\n'
    assert [a[2] for a in proxy.arrivals] == [503, 503, 0]
    # the data really went through to moto
    direct = S3BlobStore(bucket, "run", endpoint_url=moto_server.endpoint_url)
    assert direct.get("metrics/train.jsonl").data == b'{"iteration": 1}\n'


def test_s3_store_throttled_past_its_budget_raises_store_unavailable(
        moto_server: MotoServer, proxy: ThrottlingProxy) -> None:
    store = PolicyStore(S3BlobStore(moto_server.new_bucket(), endpoint_url=proxy.endpoint_url,
                                    max_attempts=3))
    proxy.reset(throttle=100)
    with pytest.raises(StoreUnavailableError,
                       match=r"channels/paper\.json: S3 error SlowDown after 3 attempts"):
        store.channel("paper")
    assert len(proxy.arrivals) == 3, "exactly the budget, then a clear error"
    assert all(gap <= bound + 0.5 for gap, bound in zip(_gaps(proxy.arrivals), [1.0, 2.0],
                                                          strict=True))
    proxy.reset(throttle=0)
    assert store.channel("paper") is None  # the throttle lifted: the store works again


def test_s3_attempt_budget_comes_from_the_argument_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYTRADE_S3_MAX_ATTEMPTS", raising=False)
    assert s3_attempts() == 6 and s3_attempts(2) == 2
    monkeypatch.setenv("RAYTRADE_S3_MAX_ATTEMPTS", "9")
    assert s3_attempts() == 9
    for bad in ("0", "many", "50"):
        monkeypatch.setenv("RAYTRADE_S3_MAX_ATTEMPTS", bad)
        with pytest.raises(ConfigError, match="RAYTRADE_S3_MAX_ATTEMPTS"):
            s3_attempts()
