"""A real S3-compatible server on loopback for tests and benchmarks: moto's standalone
server in its own process, reached over HTTP by boto3 like any S3 endpoint.

moto is a test dependency (``pip install -e .[test]``); nothing in the product needs it.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from types import TracebackType
from typing import IO, Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Drain:
    """Reads a child's output pipe to its end on a daemon thread, keeping the last 200
    lines (moto logs every request: a pipe left unread would fill and block it, a file
    would grow for the server's life) and noting when a line contains ``marker``."""

    def __init__(self, pipe: IO[bytes] | None, marker: str) -> None:
        assert pipe is not None
        self.lines: deque[str] = deque(maxlen=200)
        self.marked = threading.Event()
        self._pipe = pipe
        self._marker = marker
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            for raw in self._pipe:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if self._marker in line:
                    self.marked.set()

    def text(self, wait_s: float = 5.0) -> str:
        """The kept lines, after waiting up to ``wait_s`` for the pipe's end (the child
        has exited: its last lines may still be in the pipe)."""
        self._thread.join(wait_s)
        return "".join(self.lines)


class MotoServer:
    """``with MotoServer() as s3: s3.endpoint_url``; ``s3.new_bucket()`` makes a bucket.

    Sets dummy AWS credentials in this process's environment (boto3's standard chain
    reads them) and restores the old values on exit.
    """

    BIND_ATTEMPTS = 3
    """Starts tried when the chosen port is taken before the server binds it."""

    def __init__(self, startup_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._saved: dict[str, str | None] = {}

    def start(self) -> MotoServer:
        """Start the server and wait until it answers. The port was free when chosen but
        can be taken before the server binds it: moto then exits with "Address already
        in use" and is started again on a fresh port (``BIND_ATTEMPTS`` in all, each
        with ``startup_timeout_s``). Any other early exit is a ``RuntimeError`` with
        moto's own output."""
        for k, v in CREDENTIALS.items():
            self._saved[k] = os.environ.get(k)
            os.environ[k] = v
        try:
            for attempt in range(1, self.BIND_ATTEMPTS + 1):
                if self._start_once():
                    return self
                if attempt < self.BIND_ATTEMPTS:
                    self.port = free_port()
                    self.endpoint_url = f"http://127.0.0.1:{self.port}"
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"moto server did not start: its port was taken "
                           f"{self.BIND_ATTEMPTS} times (last {self.endpoint_url})")

    def _start_once(self) -> bool:
        """One start on ``self.port``: True once it answers and its output says it bound
        this port (another moto on the port could answer too); False if it exited
        because the port was taken; ``RuntimeError`` for any other failure."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        output = _Drain(self._proc.stderr, f"Running on {self.endpoint_url}")
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1).close()
                if output.marked.is_set() and self._proc.poll() is None:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            if self._proc.poll() is not None:
                self._proc = None
                text = output.text()
                if "Address already in use" in text:
                    return False
                raise RuntimeError(f"moto server exited on {self.endpoint_url}: "
                                   f"{text.strip()[-1000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not answer on {self.endpoint_url} "
                                   f"within {self.startup_timeout_s:.0f} s: "
                                   f"{output.text(wait_s=0).strip()[-1000:]}")
            time.sleep(0.1)

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def new_bucket(self, prefix: str = "rt") -> str:
        """Create a fresh bucket and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved = {}

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
