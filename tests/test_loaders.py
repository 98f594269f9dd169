"""Loading every accepted file layout, and clear errors for everything else."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.errors import DataFormatError, DataValidationError
from raytrade.envs.io import load_bars, write_bars
from raytrade.envs.loaders import load_raw, parse_name
from raytrade.envs.market import resolve_sources
from raytrade.envs.sample import SYMBOLS
from raytrade.envs.validation import first_broken_rule

from tests.conftest import write_lines


def _binance_rows(table: BarTable, unit: str) -> list[str]:
    mult = 1000 if unit == "us" else 1
    rows = []
    for i in range(len(table)):
        t = int(table.ts[i])
        close_t = (t + table.interval_ms - 1) * mult + (999 if unit == "us" else 0)
        rows.append(f"{t * mult},{table.open[i]},{table.high[i]},{table.low[i]},{table.close[i]},"
                    f"{table.volume[i]},{close_t},1.0,10,0.5,0.5,0")
    return rows


def _same(a: BarTable, b: BarTable) -> None:
    np.testing.assert_array_equal(a.ts, b.ts)
    np.testing.assert_allclose(a.ohlcv(), b.ohlcv(), rtol=1e-12)


def test_load_bundled_real_file_gives_regular_5m_table(btc: BarTable) -> None:
    assert len(btc) == 25_920
    assert btc.symbol == "BTCUSDT" and btc.interval == "5m"
    assert btc.start_ms == 1_743_699_900_000  # 2025-04-03 17:05 UTC
    assert not btc.ts.flags.writeable and not btc.close.flags.writeable


@pytest.mark.parametrize("unit", ["ms", "us", "mixed"])
def test_load_binance_12_column_export_matches_headed_file(tmp_path: Path, btc: BarTable,
                                                           unit: str) -> None:
    part = btc.slice(0, 500)
    if unit == "mixed":
        rows = _binance_rows(part.slice(0, 250), "ms") + _binance_rows(part.slice(250, 500), "us")
    else:
        rows = _binance_rows(part, unit)
    loaded = load_bars(write_lines(tmp_path / "BTCUSDT-5m-2025-04.csv", rows))
    _same(loaded, part)
    assert loaded.symbol == "BTCUSDT"


@pytest.mark.parametrize("column", ["timestamp", "open_time", "datetime", "date", "time", "Date"])
@pytest.mark.parametrize("encoding", ["iso", "iso_naive", "s", "ms", "us", "ns"])
def test_load_headed_time_columns_and_encodings_agree(tmp_path: Path, btc: BarTable,
                                                      column: str, encoding: str) -> None:
    part = btc.slice(100, 400)
    frame = part.to_frame().rename(columns={"timestamp": column})
    if encoding == "iso_naive":
        frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    elif encoding != "iso":
        scale = {"s": 1_000, "ms": 1, "us": 1e-3, "ns": 1e-6}[encoding]
        frame[column] = (part.ts / scale).astype(np.int64)
    frame.to_csv(tmp_path / "x.csv", index=False)
    _same(load_bars(tmp_path / "x.csv"), part)


def test_load_parquet_with_datetime_or_epoch_column(tmp_path: Path, btc: BarTable) -> None:
    part = btc.slice(0, 300)
    part.to_frame().to_parquet(tmp_path / "a.parquet")
    frame = part.to_frame()
    frame["open_time"] = part.ts
    frame.drop(columns="timestamp").to_parquet(tmp_path / "b.parquet")
    _same(load_bars(tmp_path / "a.parquet"), part)
    _same(load_bars(tmp_path / "b.parquet"), part)
    assert load_raw(tmp_path / "a.parquet").location_kind == "row"


def test_write_then_load_round_trips_csv_gz_and_parquet(tmp_path: Path, btc: BarTable) -> None:
    part = btc.slice(0, 1000)
    for name in ("x.csv", "x.csv.gz", "x.parquet"):
        _same(load_bars(write_bars(part, tmp_path / name)), part)


def test_parse_name_reads_symbol_and_interval() -> None:
    assert parse_name("BTCUSDT_5m_2025-04-03.csv") == ("BTCUSDT", 300_000)
    assert parse_name("ETHUSDT-1h-2025-01.csv") == ("ETHUSDT", 3_600_000)
    assert parse_name("prices.csv") == ("", None)


def test_unknown_column_is_rejected_with_its_name(tmp_path: Path, btc_lines: list[str]) -> None:
    lines = [btc_lines[0] + ",sentiment"] + [row + ",0.5" for row in btc_lines[1:50]]
    with pytest.raises(DataFormatError, match=r"unknown columns \['sentiment'\]") as err:
        load_bars(write_lines(tmp_path / "x.csv", lines))
    assert "x.csv" in str(err.value)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    write_lines(tmp_path / "x.csv", ["when,open,high,low,close", "1,1,1,1,1"])
    with pytest.raises(DataFormatError, match=r"no time column.*missing columns \['volume'\]"):
        load_bars(tmp_path / "x.csv")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(DataFormatError, match="empty"):
        load_bars(tmp_path / "x.csv")


def test_header_only_file_is_rejected(tmp_path: Path, btc_lines: list[str]) -> None:
    with pytest.raises(DataFormatError, match="no data rows"):
        load_bars(write_lines(tmp_path / "x.csv", btc_lines[:1]))


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.csv", "timestamp,open\n")
    return buf.getvalue()


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    _zip_bytes(),
    bytes(range(256)) * 4,
    b"\xff\xfe\xfa not utf8 \xc3\x28",
])
def test_file_that_is_not_csv_is_rejected(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(DataFormatError, match="not a CSV or Parquet file"):
        load_bars(tmp_path / "x.csv")


def test_text_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("Dear trader,\nthis is a letter, not prices.\n")
    with pytest.raises(DataFormatError):
        load_bars(tmp_path / "x.csv")


def test_corrupt_parquet_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 10)
    with pytest.raises(DataFormatError, match="not a readable Parquet"):
        load_bars(tmp_path / "x.parquet")


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file"):
        load_bars(tmp_path / "nope.csv")


def test_price_text_names_the_line(tmp_path: Path, btc_lines: list[str]) -> None:
    lines = list(btc_lines[:100])
    parts = lines[41].split(",")
    parts[4] = "abc"
    lines[41] = ",".join(parts)
    with pytest.raises(DataValidationError) as err:
        load_bars(write_lines(tmp_path / "x.csv", lines))
    assert err.value.rule == "numeric" and err.value.rows == [42]
    assert "column 'close'" in str(err.value) and "'abc'" in str(err.value)


def test_bad_time_text_names_the_line(tmp_path: Path, btc_lines: list[str]) -> None:
    lines = list(btc_lines[:100])
    lines[10] = "yesterday" + lines[10][lines[10].index(","):]
    with pytest.raises(DataValidationError) as err:
        load_bars(write_lines(tmp_path / "x.csv", lines))
    assert err.value.rule == "timestamp" and err.value.rows == [11]


def test_to_frame_and_between_select_by_time(btc: BarTable) -> None:
    frame = btc.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(btc)
    sub = btc.between(int(btc.ts[10]), int(btc.ts[20]))
    assert len(sub) == 10 and sub.ts[0] == btc.ts[10]


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_sample_every_bundled_symbol_loads_validated_through_its_source_name(
        symbol: str) -> None:
    (path,) = resolve_sources((f"sample:{symbol.lower()}",))
    bars = load_bars(path)  # validates every rule; raises on any broken bar
    assert bars.symbol == symbol and bars.interval == "5m"
    assert len(bars) == 25_920
    assert bars.start_ms >= 1_743_699_900_000  # 2025-04-03 17:05 UTC (XRP 5 min later)
    assert first_broken_rule(bars.ts, bars.ohlcv(), bars.interval_ms) is None


def test_sample_unknown_symbol_names_the_available_ones() -> None:
    with pytest.raises(DataFormatError, match=r"DOGEUSDT.*BTCUSDT, ETHUSDT, SOLUSDT, "
                                              r"BNBUSDT, XRPUSDT"):
        resolve_sources(("sample:DOGEUSDT",))
