"""A helper server run as a child process: its output goes to a log file, it lives in its
own process group, and it is stopped with SIGTERM to the whole group (SIGKILL if it does
not exit in time), so nothing it started outlives the parent's shutdown.

Own process group: the terminal's Ctrl-C goes to the foreground group only, so the
parent decides the shutdown order instead of every child dying at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from raytrade.envs.errors import OperationalError


class ChildProcess:
    """``cmd`` started in a new session; stderr (and stdout unless ``banner``) to ``log``."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, *,
                 env: Mapping[str, str] | None = None, banner: bool = False) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self._log_from = self._log_fh.tell()  # where this start's output begins
        self._stopped = False
        self.proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE if banner else self._log_fh,
            stderr=self._log_fh, stdin=subprocess.DEVNULL, start_new_session=True,
            env=None if env is None else dict(env))

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def output(self) -> str:
        """What this start of the process has written to its log so far (the log file is
        appended to, so earlier starts' output is left out)."""
        with open(self.log, "rb") as fh:
            fh.seek(self._log_from)
            return fh.read().decode(errors="replace")

    def _died(self, what: str) -> OperationalError:
        tail = self.output().strip().splitlines()[-15:]
        return OperationalError(f"{self.name} {what} (exit code {self.proc.poll()}); last "
                                f"lines of {self.log}:\n" + "\n".join(tail))

    def read_banner(self) -> dict[str, Any]:
        """The JSON object the process prints as its first stdout line (its addresses).
        ``OperationalError`` with the log's tail if it exits first."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise self._died("exited before it was ready")
        try:
            banner = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OperationalError(f"{self.name}: expected a JSON banner, got "
                                   f"{line[:200]!r}") from exc
        if not isinstance(banner, dict):
            raise OperationalError(f"{self.name}: the banner is not a JSON object")
        return banner

    def wait_http(self, url: str, expect: bytes, timeout_s: float, *,
                  log_marker: re.Pattern[str] | None = None) -> None:
        """Poll ``url`` until it answers ``expect``; ``OperationalError`` if the process
        exits or ``timeout_s`` passes first. An answer that is not HTTP (another server
        holds the port: Ray's gRPC servers answer with binary HTTP/2 frames) counts as no
        answer, like a refused connection. With ``log_marker``, also wait until this
        start's output matches it: proof that the answer came from this process and not
        from another server of the same kind on the port."""
        deadline = time.monotonic() + timeout_s
        while True:
            answered = False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    answered = response.read().strip() == expect
            except (OSError, http.client.HTTPException):
                pass
            if answered and (log_marker is None or log_marker.search(self.output())) \
                    and self.alive():
                return
            if not self.alive():
                raise self._died("exited before it answered")
            if time.monotonic() > deadline:
                raise OperationalError(f"{self.name} did not answer {url} within "
                                       f"{timeout_s:.0f} s (log: {self.log})")
            time.sleep(0.25)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``; the exit code.
        Stopping again does nothing (the group's id may belong to another process by
        then)."""
        if self._stopped:
            return self.proc.returncode
        try:
            if self.alive():
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(5)
            else:
                self._signal(signal.SIGKILL)  # anything it left behind in its group
            self._stopped = True
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log_fh.close()
        return self.proc.returncode

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
