"""Loopback servers that hold a port a test's server was meant to bind, as another
process can between a port being found free and being bound (tests of the demo
dashboard's and the S3 server's retries), and the check that a process has gone."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any


class _Holder:
    port: int

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SilentListener(_Holder):
    """Listens and never answers: a connection waits until the client's timeout."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class GrpcLikeServer(_Holder):
    """Not HTTP: reads the request and answers with an HTTP/2 SETTINGS frame, as Ray's
    gRPC servers do to an HTTP/1.1 request (urllib raises ``BadStatusLine``)."""

    FRAME = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00\x40\x00"

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65_536)  # the client's request, read as gRPC reads it
                    conn.sendall(self.FRAME)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # Linux: wakes the accept, which closing does not
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


class HealthyServer(_Holder):
    """HTTP that answers every GET with 200 and ``ok``: what another Streamlit's health
    check or another moto server's ``/moto-api/`` gives, an answer that must not be taken
    for the server under test."""

    def __init__(self) -> None:
        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def process_gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting to be reaped (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
