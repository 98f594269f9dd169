"""Read OHLCV files (CSV, gzip CSV, Parquet) into raw, not yet validated bar rows.

Accepted layouts:
- Binance kline export: 12 columns, no header
  (``open_time, open, high, low, close, volume, close_time, quote_volume, trades,
  taker_buy_base, taker_buy_quote, ignore``), open times in ms or µs.
- Headed files whose time column is ``timestamp``, ``open_time``, ``datetime``, ``date`` or
  ``time`` (case-insensitive), holding ISO 8601 text (naive text is taken as UTC) or epoch
  seconds, milliseconds, microseconds or nanoseconds. The unit of an epoch value is read
  from its magnitude, value by value, so files that mix ms and µs (Binance switched spot
  archives to µs in 2025) load correctly: below 1e11 seconds, below 1e14 ms, below 1e17 µs,
  else ns (unambiguous for dates between 1973 and 5138).
- Headed CSV files whose first header cell is empty: the layout pandas writes for a frame
  indexed by time (``DataFrame.to_csv()``, e.g. ``,Open,High,Low,Close,Volume``, the layout
  of the EURUSD and GOOG bars shipped in the ``backtesting`` package); that first column is
  the time column when no named one is present.

The symbol and interval come from a file name such as ``BTCUSDT_5m_2025.csv``; a file
named only by its symbol (``EURUSD.csv``: 3 to 20 capitals and digits) gives the symbol,
and its interval is inferred from the bars (``validation.infer_interval``).

Any other column is an error unless it is one of Binance's extra kline fields, ``symbol``
or ``filled`` (the gap marker written by the repair mode): a column we do not understand
may mean we are reading the wrong file. Validation lives in ``validation.py``.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from raytrade.envs.bars import OHLCV, FloatArray, IntArray
from raytrade.envs.errors import DataFormatError, DataValidationError
from raytrade.envs.intervals import interval_to_ms

TIME_COLUMNS = ("timestamp", "open_time", "datetime", "date", "time")
BINANCE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                   "quote_volume", "trades", "taker_buy_base", "taker_buy_quote", "ignore")
KNOWN_EXTRA_COLUMNS = frozenset({
    "close_time", "quote_volume", "quote_asset_volume", "trades", "count",
    "number_of_trades", "taker_buy_base", "taker_buy_volume", "taker_buy_base_asset_volume",
    "taker_buy_quote", "taker_buy_quote_volume", "taker_buy_quote_asset_volume", "ignore",
    "symbol", "filled",
})
_NAME_PATTERN = re.compile(r"(?P<symbol>[A-Z0-9]{2,20})[-_](?P<interval>\d+[smhdw])(?![A-Za-z])")
_SYMBOL_ONLY = re.compile(r"^(?P<symbol>[A-Z][A-Z0-9]{2,19})$")
INDEX_COLUMN = "unnamed: 0"
"""The lower-cased name pandas gives a CSV's empty first header cell (an index column)."""


@dataclass(frozen=True)
class RawBars:
    """Parsed but unvalidated rows of one file.

    Attributes:
        source: the file path as given.
        ts: open times in ms UTC (int64), in file order.
        ohlcv: float64 ``[T, 5]`` in file order; NaN where a cell was empty.
        locations: for each row, where the user finds it: the 1-based line number in a
            CSV file, or the 0-based row position in a Parquet file.
        location_kind: ``"line"`` or ``"row"``, to word error messages.
        symbol: from the file name when it follows ``SYMBOL_5m...`` or ``SYMBOL-5m-...``.
        interval_hint_ms: the interval named in the file name, if any.
        filled: the repair mode's gap marker when the file carries one, else all False.
    """

    source: str
    ts: IntArray
    ohlcv: FloatArray
    locations: IntArray
    location_kind: str
    symbol: str
    interval_hint_ms: int | None
    filled: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.ts)

    def where(self, positions: npt.ArrayLike) -> list[str]:
        """User-facing locations (``"line 17"``) of the given row positions."""
        return [f"{self.location_kind} {int(self.locations[p])}" for p in np.atleast_1d(positions)]


def parse_name(path: str | Path) -> tuple[str, int | None]:
    """Symbol and interval (ms) from a file name such as ``BTCUSDT_5m_2025.csv``; the
    symbol alone from one such as ``EURUSD.csv`` (its interval is then inferred)."""
    name = Path(path).name
    match = _NAME_PATTERN.search(name)
    if match is None:
        only = _SYMBOL_ONLY.match(name.split(".", 1)[0])
        return (only.group("symbol") if only else ""), None
    return match.group("symbol"), interval_to_ms(match.group("interval"))


def load_raw(path: str | Path) -> RawBars:
    """Read a CSV, ``.csv.gz`` or Parquet file into :class:`RawBars` without validating it.

    Raises:
        DataFormatError: missing or empty file, binary content that is not Parquet,
            unknown or missing columns.
        DataValidationError: a cell that should be a number or a time is not one
            (rule ``numeric`` or ``timestamp``), naming the lines.
    """
    source = str(path)
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(source, "no such file")
    head = p.read_bytes()[:4]
    if head == b"PAR1":
        frame, kind, offset = _read_parquet(p, source), "row", 0
    else:
        frame, offset = _read_csv(p, source)
        kind = "line"
    symbol, hint = parse_name(p)
    return _to_raw(frame, source, kind, offset, symbol, hint)


def _read_text(p: Path, source: str) -> str:
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(source, f"corrupt gzip data ({exc})") from exc
    if b"\x00" in data[:65536]:
        raise DataFormatError(source, "not a CSV or Parquet file (binary content)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(source, f"not a CSV or Parquet file (not UTF-8 text: {exc})") from exc
    if not text.strip():
        raise DataFormatError(source, "file is empty")
    return text


def _read_csv(p: Path, source: str) -> tuple[pd.DataFrame, int]:
    """The file as a frame of strings, and the line number of its first data row."""
    text = _read_text(p, source)
    first = text.lstrip("\r\n").splitlines()[0]
    first_cell = first.split(",")[0].strip().strip('"')
    headerless = _is_number(first_cell)
    try:
        frame = pd.read_csv(io.StringIO(text), header=None if headerless else 0, dtype=str,
                            skip_blank_lines=True, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(source, f"not a readable CSV file ({exc})") from exc
    if frame.empty:
        raise DataFormatError(source, "file has a header but no data rows")
    if headerless:
        if frame.shape[1] != len(BINANCE_COLUMNS):
            raise DataFormatError(
                source, f"a file without a header must be Binance's 12-column kline export; "
                        f"found {frame.shape[1]} columns")
        frame.columns = list(BINANCE_COLUMNS)
        return frame, 1
    return frame, 2


def _read_parquet(p: Path, source: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataFormatError(source, f"not a readable Parquet file ({exc})") from exc
    if frame.empty:
        raise DataFormatError(source, "file is empty")
    if frame.index.name is not None and str(frame.index.name).lower() in TIME_COLUMNS:
        frame = frame.reset_index()
    return frame


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _to_raw(frame: pd.DataFrame, source: str, kind: str, offset: int,
            symbol: str, hint: int | None) -> RawBars:
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    columns = list(frame.columns)
    time_col = next((c for c in TIME_COLUMNS if c in columns), None)
    if time_col is None and columns and columns[0] == INDEX_COLUMN:
        time_col = INDEX_COLUMN  # pandas' index column: ``,Open,High,...``
    missing = [c for c in OHLCV if c not in columns]
    problems = []
    if time_col is None:
        problems.append("no time column (expected one of " + ", ".join(TIME_COLUMNS)
                        + ", or an unnamed first column)")
    if missing:
        problems.append(f"missing columns {missing}")
    if problems:
        raise DataFormatError(source, "; ".join(problems) + f"; found columns {columns}")
    assert time_col is not None
    extra = [c for c in columns if c not in OHLCV and c != time_col
             and c not in KNOWN_EXTRA_COLUMNS and c not in TIME_COLUMNS]
    if extra:
        raise DataFormatError(source, f"unknown columns {extra}; expected a time column, "
                                      f"{', '.join(OHLCV)} and optionally Binance's kline fields")
    locations = np.arange(len(frame), dtype=np.int64) + offset
    ohlcv = np.empty((len(frame), 5), dtype=np.float64)
    for j, name in enumerate(OHLCV):
        ohlcv[:, j] = _numeric(frame[name], name, source, kind, locations)
    ts = _times(frame[time_col], time_col, source, kind, locations)
    filled = np.zeros(len(frame), dtype=bool)
    if "filled" in columns:
        filled = _numeric(frame["filled"], "filled", source, kind, locations) != 0
    return RawBars(source=source, ts=ts, ohlcv=ohlcv, locations=locations, location_kind=kind,
                   symbol=symbol, interval_hint_ms=hint, filled=filled)


def _numeric(col: pd.Series, name: str, source: str, kind: str,
             locations: IntArray) -> FloatArray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(values) & col.notna().to_numpy())
    # Text such as "nan" parses to NaN on purpose; that is caught by the finite rule.
    if len(bad):
        texts = col.iloc[bad].astype(str).str.strip().str.lower()
        bad = bad[~texts.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()]
    if len(bad):
        raise DataValidationError(
            source, "numeric", [int(locations[b]) for b in bad],
            f"column '{name}' holds text that is not a number "
            f"({kind} {int(locations[bad[0]])}: {col.iloc[bad[0]]!r})")
    return values


def _times(col: pd.Series, name: str, source: str, kind: str, locations: IntArray) -> IntArray:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col, utc=True)
        return _datetimes_to_ms(parsed, name, source, kind, locations, col)
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        return _epoch_to_ms(numeric.to_numpy(dtype=np.float64), name, source, locations)
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    return _datetimes_to_ms(parsed, name, source, kind, locations, col)


def _datetimes_to_ms(parsed: pd.Series, name: str, source: str, kind: str,
                     locations: IntArray, original: pd.Series) -> IntArray:
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataValidationError(
            source, "timestamp", [int(locations[b]) for b in bad],
            f"column '{name}' holds a value that is not a time "
            f"({kind} {int(locations[bad[0]])}: {original.iloc[bad[0]]!r})")
    ns: IntArray = parsed.dt.as_unit("ns").astype("int64").to_numpy()
    out: IntArray = (ns // 1_000_000).astype(np.int64)
    return out


def _epoch_to_ms(values: FloatArray, name: str, source: str, locations: IntArray) -> IntArray:
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if len(bad):
        raise DataValidationError(source, "timestamp", [int(locations[b]) for b in bad],
                                  f"column '{name}' holds a negative or non-finite epoch time")
    mag = np.abs(values)
    scale = np.where(mag < 1e11, 1e3, np.where(mag < 1e14, 1.0, np.where(mag < 1e17, 1e-3, 1e-6)))
    return np.floor(values * scale + 1e-9).astype(np.int64)
