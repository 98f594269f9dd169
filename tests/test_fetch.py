"""``raytrade data fetch`` against a real HTTP server on loopback serving Binance-format zips."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.errors import DataValidationError, FetchError
from raytrade.envs.fetch import archive_url, fetch_klines
from raytrade.envs.io import load_bars
from raytrade.scripts.cli import main

MONTH_MS = {"2025-05": (1_746_057_600_000, 1_748_736_000_000),
            "2025-06": (1_748_736_000_000, 1_751_328_000_000)}


class ArchiveServer:
    """Serves ``files`` (path -> bytes) with Range support; records every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def path_of(self, month: str, symbol: str = "BTCUSDT") -> str:
        return archive_url(self.url, symbol, "5m", month)[len(self.url):]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def binance_zip(table: BarTable, month: str, unit: str, break_line: int | None = None) -> bytes:
    """A monthly archive exactly as Binance publishes it: one headerless 12-column CSV."""
    lo, hi = MONTH_MS[month]
    part = table.between(lo, hi)
    mult = 1000 if unit == "us" else 1
    rows = []
    for i in range(len(part)):
        t = int(part.ts[i])
        high = part.high[i] if break_line != i + 1 else part.low[i] / 2
        rows.append(f"{t * mult},{part.open[i]:.2f},{high:.2f},{part.low[i]:.2f},"
                    f"{part.close[i]:.2f},{part.volume[i]:.5f},{(t + 299_999) * mult},"
                    f"1.0,100,0.5,0.5,0")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"BTCUSDT-5m-{month}.csv", "\n".join(rows) + "\n")
    return buf.getvalue()


def publish(server: ArchiveServer, month: str, body: bytes, checksum: bool = True) -> None:
    path = server.path_of(month)
    server.files[path] = body
    if checksum:
        digest = hashlib.sha256(body).hexdigest()
        server.files[path + ".CHECKSUM"] = f"{digest}  BTCUSDT-5m-{month}.zip\n".encode()


@pytest.fixture()
def server(btc: BarTable) -> Iterator[ArchiveServer]:
    srv = ArchiveServer()
    publish(srv, "2025-05", binance_zip(btc, "2025-05", "ms"))
    publish(srv, "2025-06", binance_zip(btc, "2025-06", "us"))  # Binance's 2025 switch to µs
    yield srv
    srv.close()


def test_fetch_downloads_verifies_and_joins_months(server: ArchiveServer, btc: BarTable,
                                                   tmp_path: Path) -> None:
    report = fetch_klines("btcusdt", "5m", "2025-05", "2025-06", tmp_path, base_url=server.url)
    assert report.downloaded == ["2025-05", "2025-06"] and report.unverified == []
    table = load_bars(report.output)  # type: ignore[arg-type]
    expected = btc.between(MONTH_MS["2025-05"][0], MONTH_MS["2025-06"][1])
    np.testing.assert_array_equal(table.ts, expected.ts)
    np.testing.assert_allclose(table.close, np.round(expected.close, 2))
    assert report.output.name == "BTCUSDT_5m_2025-05_2025-06.csv.gz"  # type: ignore[union-attr]
    again = fetch_klines("BTCUSDT", "5m", "2025-05", "2025-06", tmp_path, base_url=server.url)
    assert again.cached == ["2025-05", "2025-06"]
    zip_gets = [p for p, _ in server.requests if p.endswith(".zip")]
    assert len(zip_gets) == 2  # the second run only re-read the checksums


def test_fetch_resumes_a_partial_download(server: ArchiveServer, tmp_path: Path) -> None:
    body = server.files[server.path_of("2025-05")]
    folder = tmp_path / "binance" / "spot" / "BTCUSDT" / "5m"
    folder.mkdir(parents=True)
    (folder / "BTCUSDT-5m-2025-05.zip.part").write_bytes(body[:5000])
    report = fetch_klines("BTCUSDT", "5m", "2025-05", "2025-05", tmp_path, base_url=server.url)
    assert report.resumed == ["2025-05"]
    assert (server.path_of("2025-05"), "bytes=5000-") in server.requests
    assert (folder / "BTCUSDT-5m-2025-05.zip").read_bytes() == body


def test_checksum_mismatch_fails_and_leaves_nothing(server: ArchiveServer, tmp_path: Path) -> None:
    path = server.path_of("2025-05")
    server.files[path] = server.files[path][:-10] + b"0123456789"
    with pytest.raises(FetchError, match="does not match the published"):
        fetch_klines("BTCUSDT", "5m", "2025-05", "2025-05", tmp_path, base_url=server.url)
    assert not list(tmp_path.rglob("*.zip*")) and not list(tmp_path.glob("*.csv.gz"))


def test_missing_month_is_a_clear_error(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"2025-07\.zip: not found \(HTTP 404\)"):
        fetch_klines("BTCUSDT", "5m", "2025-06", "2025-07", tmp_path, base_url=server.url)
    assert not list(tmp_path.glob("*.csv.gz"))


def test_month_without_checksum_is_used_and_reported_unverified(btc: BarTable,
                                                                tmp_path: Path) -> None:
    srv = ArchiveServer()
    try:
        publish(srv, "2025-05", binance_zip(btc, "2025-05", "ms"), checksum=False)
        report = fetch_klines("BTCUSDT", "5m", "2025-05", "2025-05", tmp_path, base_url=srv.url)
    finally:
        srv.close()
    assert report.unverified == ["2025-05"] and report.bars == 8928


def test_bad_row_inside_an_archive_names_archive_and_line(btc: BarTable, tmp_path: Path) -> None:
    srv = ArchiveServer()
    try:
        publish(srv, "2025-05", binance_zip(btc, "2025-05", "ms", break_line=77))
        with pytest.raises(DataValidationError) as err:
            fetch_klines("BTCUSDT", "5m", "2025-05", "2025-05", tmp_path, base_url=srv.url)
    finally:
        srv.close()
    assert err.value.rule == "high_ge_open_close" and err.value.rows == [77]
    assert err.value.source.endswith("BTCUSDT-5m-2025-05.zip!BTCUSDT-5m-2025-05.csv")
    assert "line 77" in str(err.value)


def test_no_network_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"cannot reach .* check the network"):
        fetch_klines("BTCUSDT", "5m", "2025-05", "2025-05", tmp_path,
                     base_url="http://127.0.0.1:9", timeout=2, retries=1)


def test_cli_fetch_prints_report(server: ArchiveServer, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "fetch", "--symbol", "BTCUSDT", "--start", "2025-06", "--end",
                 "2025-06", "--data-dir", str(tmp_path), "--base-url", server.url])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bars"] == 8640 and out["downloaded"] == ["2025-06"]
    assert main(["data", "fetch", "--symbol", "BTCUSDT", "--start", "2025-09", "--end",
                 "2025-06", "--data-dir", str(tmp_path), "--base-url", server.url]) == 1
