"""What every loopback exchange simulator shares, whatever venue it speaks: serving a
Starlette app with uvicorn on a loopback socket in a background thread with its own event
loop (``LoopbackServer``), a websocket protocol that lets the app cut a connection's TCP
stream without a close frame (``AbortableWebSocketProtocol``), and one websocket
connection's queue of frames to send (``QueuedSocket``).

Threading: every state change of a simulator happens on the server's loop; its Python API
hands calls to that loop through ``LoopbackServer._call``. The listening socket is made here
(rather than by uvicorn) so that port 0 can be resolved before ``start`` returns, and with
``IPPROTO_TCP`` as its protocol: asyncio sets ``TCP_NODELAY`` only on connections whose
socket says so, and without it every keep-alive reply waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, ClassVar, Self, TypeVar

import uvicorn
from raytrade.envs.errors import OperationalError
from starlette.applications import Starlette
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as WsRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

ABORT_EXTENSION = "raytrade.abort"
"""ASGI scope extension through which the server lets the app cut a connection's TCP
stream (``AbortableWebSocketProtocol``)."""


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, plus a scope extension that cuts the TCP connection
    without a close frame: the ``drop_user_stream`` fault needs a real abrupt drop, which
    ASGI alone cannot express."""

    def handle_connect(self, event: WsRequest) -> None:
        """Accept as uvicorn does, then offer ``transport.abort`` to the app."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = {
                "abort": self.transport.abort,
                "write_buffer_size": self.transport.get_write_buffer_size}


class QueuedSocket:
    """One server-side websocket fed from a queue of text frames (None: close with
    ``close_code``), drained by ``pump``, so that publishers never await a slow client."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_code = 1000
        """The close code sent when the queue yields None."""
        self.sending = False

    def flushed(self) -> bool:
        """Every queued frame has been handed to the socket (and, where the server tells,
        the socket's write buffer is empty)."""
        if not self.queue.empty() or self.sending:
            return False
        ext = self.ws.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if ext is None:
            return True
        buffered: Callable[[], int] = ext["write_buffer_size"]
        return buffered() == 0

    def abort(self) -> None:
        """Cut the TCP stream without a close frame (the client sees 1006); on a server
        without the extension, the closest there is: an error close (1011)."""
        ext = self.ws.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if ext is not None:
            abort: Callable[[], None] = ext["abort"]
            abort()
        else:
            self.close_code = 1011
            self.queue.put_nowait(None)

    async def serve(self, receive: Coroutine[Any, Any, None]) -> None:
        """Send queued frames (``pump``) while ``receive`` reads the client; once either
        ends (a close queued, the client gone), cancel both."""
        sender = asyncio.create_task(self.pump())
        receiver = asyncio.create_task(receive)
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            receiver.cancel()

    async def pump(self) -> None:
        """Send queued frames until a None (then close) or until the client is gone."""
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    await self.ws.close(self.close_code)
                    return
                self.sending = True
                try:
                    await self.ws.send_text(frame)
                finally:
                    self.sending = False
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("%s send ended: %s", type(self).__name__, type(exc).__name__)


class LoopbackServer:
    """A simulator's Starlette ``app`` served by uvicorn on ``host:port`` in a daemon
    thread (module docstring); a context manager (``with sim: ...`` starts and stops it).

    Subclasses set ``app`` (built with ``lifespan=self._lifespan``), name themselves in
    ``server_name`` and ``thread_prefix``, and list their background coroutines in
    ``_background``.

    Args:
        host, port: where to listen (port 0: any free port; see ``port`` after ``start``).
    """

    server_name: ClassVar[str] = "the loopback server"
    """How errors name the server ("... did not start")."""
    thread_prefix: ClassVar[str] = "loopback-server"
    """The serving thread's name, before ``:<port>``."""
    app: Starlette

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> Self:
        """Listen and serve in a background thread; returns ``self`` once accepting.

        Raises:
            OperationalError: already running, the address cannot be bound, or the server
                did not start within ``timeout_s`` seconds.
        """
        if self._thread is not None:
            raise OperationalError(f"{self.server_name} is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OperationalError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = int(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False,
            ws=AbortableWebSocketProtocol, lifespan="on", timeout_graceful_shutdown=1,
            ws_ping_interval=20.0))
        self._server = server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"{self.thread_prefix}:{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OperationalError(f"{self.server_name} did not start: {self._error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (websockets closed, held replies cut after 1 s); idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _background(self) -> Sequence[Coroutine[Any, Any, None]]:
        """The coroutines to run on the server's loop while it serves (none here)."""
        return ()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """The app's lifespan: note the loop, run ``_background``, cancel it all at exit."""
        self._loop = asyncio.get_running_loop()
        for coro in self._background():
            self._spawn(coro)
        try:
            yield
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task on the running loop, cancelled when the server stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the server's loop (thread-safe; waits up to 10 s); called directly
        when not running, since nothing else touches the state then."""
        loop = self._loop
        if loop is None or self._thread is None:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)
