"""Download Binance public monthly kline archives into the project's data folder.

Source layout (Binance's public data site, or any mirror given as ``base_url``)::

    {base_url}/data/spot/monthly/klines/{SYMBOL}/{interval}/{SYMBOL}-{interval}-{YYYY}-{MM}.zip
    ... the same path + ".CHECKSUM"   ->  "<sha256 hex>  <file name>"

Each month is downloaded to ``{data_dir}/binance/spot/{SYMBOL}/{interval}/`` as a ``.part``
file, resumed with an HTTP ``Range`` request if one is already there, verified against its
published sha256 (a month without a checksum file is used and reported as unverified), and
only then renamed to ``.zip``; a verified ``.zip`` already on disk is not downloaded again.
The months are loaded and validated one by one (errors name the archive and line), joined,
checked for continuity across month boundaries, and written atomically as one headed CSV
``{data_dir}/{SYMBOL}_{interval}_{first month}_{last month}.csv.gz``.

Written with the standard library's ``urllib`` so the downloader needs no extra package.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from raytrade.envs.bars import BarTable
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import (
    DataError,
    DataFormatError,
    DataValidationError,
    FetchError,
    TemporaryError,
)
from raytrade.envs.intervals import interval_to_ms
from raytrade.envs.io import load_bars, sha256_file, write_bars
from raytrade.envs.validation import first_broken_rule

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.binance.vision"
_CHUNK = 1 << 16


@dataclass
class FetchReport:
    """What a fetch did: the output file and, per month, how its archive was obtained."""

    output: Path | None = None
    bars: int = 0
    downloaded: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)


def month_range(start: str, end: str) -> list[str]:
    """Months ``"YYYY-MM"`` from ``start`` to ``end`` inclusive."""
    try:
        first = np.datetime64(start, "M")
        last = np.datetime64(end, "M")
    except ValueError as exc:
        raise FetchError(f"months must look like 2025-01: {exc}") from exc
    if last < first:
        raise FetchError(f"end month {end} is before start month {start}")
    return [str(m) for m in np.arange(first, last + 1)]


def archive_url(base_url: str, symbol: str, interval: str, month: str) -> str:
    """URL of one monthly spot kline archive."""
    name = f"{symbol}-{interval}-{month}.zip"
    return f"{base_url.rstrip('/')}/data/spot/monthly/klines/{symbol}/{interval}/{name}"


def _open(url: str, headers: dict[str, str], timeout: float):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, headers={"User-Agent": "raytrade", **headers})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (429, 418) or exc.code >= 500:
            raise TemporaryError(f"{url}: HTTP {exc.code}") from exc
        raise
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TemporaryError(f"cannot reach {url}: {reason}") from exc


def _with_retries(action, url: str, retries: int):  # type: ignore[no-untyped-def]
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            return action()
        except TemporaryError as exc:
            if attempt == retries:
                raise FetchError(f"{exc} (after {retries + 1} tries); check the network "
                                 f"connection or pass --base-url for a mirror") from exc
            log.warning("%s; retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")  # pragma: no cover


def _checksum(url: str, timeout: float, retries: int) -> str | None:
    def get() -> str | None:
        try:
            with _open(url + ".CHECKSUM", {}, timeout) as resp:
                text: str = resp.read().decode("ascii", errors="replace").strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise FetchError(f"{url}.CHECKSUM: HTTP {exc.code}") from exc
        digest = text.split()[0].lower() if text else ""
        if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise FetchError(f"{url}.CHECKSUM: not a sha256 line: {text[:80]!r}")
        return digest
    result: str | None = _with_retries(get, url, retries)
    return result


def _download(url: str, part: Path, timeout: float, retries: int) -> bool:
    """Download ``url`` into ``part``, resuming it; True if a partial file was resumed."""
    def get() -> bool:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = _open(url, headers, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # asked past the end: the part is complete
                return True
            if exc.code == 404:
                raise FetchError(f"{url}: not found (HTTP 404); the month may not be "
                                 f"published yet, or the symbol or interval is wrong") from exc
            raise FetchError(f"{url}: HTTP {exc.code}") from exc
        with resp:
            resumed = have > 0 and resp.status == 206
            mode = "ab" if resumed else "wb"
            try:
                with open(part, mode) as fh:
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        fh.write(chunk)
            except OSError as exc:
                raise TemporaryError(f"download of {url} broke off: {exc}") from exc
        return resumed
    result: bool = _with_retries(get, url, retries)
    return result


def _fetch_month(base_url: str, symbol: str, interval: str, month: str, folder: Path,
                 report: FetchReport, timeout: float, retries: int) -> Path:
    url = archive_url(base_url, symbol, interval, month)
    target = folder / f"{symbol}-{interval}-{month}.zip"
    expected = _checksum(url, timeout, retries)
    if target.exists() and (expected is None or sha256_file(target) == expected):
        report.cached.append(month)
        return target
    part = target.with_suffix(".zip.part")
    resumed = _download(url, part, timeout, retries)
    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise FetchError(f"{url}: sha256 {actual} does not match the published "
                             f"{expected}; the partial download was deleted, run again")
    else:
        report.unverified.append(month)
        log.warning("%s has no CHECKSUM file; using it unverified", url)
    os.replace(part, target)
    (report.resumed if resumed else report.downloaded).append(month)
    return target


def _month_bars(archive: Path, interval_ms: int,
                calendar: TradingCalendar = ALWAYS) -> BarTable:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise FetchError(f"{archive}: expected one CSV inside, found {names}")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(zf.extract(names[0], tmp))
                try:
                    table = load_bars(path, interval_ms=interval_ms, calendar=calendar)
                except DataValidationError as exc:
                    raise DataValidationError(f"{archive}!{names[0]}", exc.rule, exc.rows,
                                              exc.detail) from exc
                except DataFormatError as exc:
                    raise DataFormatError(f"{archive}!{names[0]}", exc.message) from exc
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive}: not a valid zip archive ({exc})") from exc
    return BarTable.from_arrays(table.ts, table.ohlcv(), interval_ms=interval_ms,
                                symbol=table.symbol, source=f"{archive}!{names[0]}",
                                calendar=calendar)


def fetch_klines(symbol: str, interval: str, start: str, end: str, data_dir: str | Path, *,
                 base_url: str = DEFAULT_BASE_URL, timeout: float = 30.0,
                 retries: int = 3, calendar: TradingCalendar = ALWAYS) -> FetchReport:
    """Download, verify, validate and join monthly archives ``start..end`` (``"YYYY-MM"``).
    Validation (each month and the joins between months) accepts ``calendar``'s closures
    (the 24/7 default for Binance's spot markets: none).

    Raises:
        FetchError: unreachable server, missing month, checksum mismatch, bad archive.
        DataError: an archive's bars break a validation rule, or months do not join up.
    """
    symbol = symbol.upper()
    iv = interval_to_ms(interval)
    months = month_range(start, end)
    root = Path(data_dir)
    folder = root / "binance" / "spot" / symbol / interval
    folder.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    tables = []
    for month in months:
        archive = _fetch_month(base_url, symbol, interval, month, folder, report, timeout,
                               retries)
        tables.append(_month_bars(archive, iv, calendar))
    ts = np.concatenate([t.ts for t in tables])
    ohlcv = np.concatenate([t.ohlcv() for t in tables])
    broken = first_broken_rule(ts, ohlcv, iv, calendar)
    if broken is not None:
        rule, rows, detail = broken
        raise DataError(f"{symbol} {interval} {start}..{end}: months do not join up: rule "
                        f"'{rule}' broken at open time {int(ts[rows[0]])}: {detail}")
    joined = BarTable.from_arrays(ts, ohlcv, interval_ms=iv, symbol=symbol,
                                  source=f"binance:{symbol}:{interval}:{start}..{end}",
                                  calendar=calendar)
    out = root / f"{symbol}_{interval}_{months[0]}_{months[-1]}.csv.gz"
    report.output = write_bars(joined, out)
    report.bars = len(joined)
    return report
