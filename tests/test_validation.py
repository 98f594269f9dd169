"""Every validation rule on a deliberately broken real file; the repair mode; the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from raytrade.envs.errors import DataValidationError
from raytrade.envs.io import load_bars, load_bars_repaired
from raytrade.scripts.cli import main

from tests.conftest import write_lines

Edit = Callable[[list[str]], list[str]]


def _set(lines: list[str], index: int, column: int, value: str) -> list[str]:
    out = list(lines)
    parts = out[index].split(",")
    parts[column] = value
    out[index] = ",".join(parts)
    return out


# Each case: rule, edit of the real file's lines (list index i is file line i + 1, the
# header is line 1), the line the error must name, and whether repair mode fixes it.
CASES: list[tuple[str, Edit, int, bool]] = [
    ("sorted_unique", lambda ls: ls[:50] + [ls[49]] + ls[50:], 51, True),       # exact repeat
    ("sorted_unique", lambda ls: ls[:30] + [ls[31], ls[30]] + ls[32:], 32, False),  # swapped
    ("regular_interval", lambda ls: ls[:70] + ls[71:], 71, True),               # missing bar
    ("finite", lambda ls: _set(ls, 20, 2, "nan"), 21, False),
    ("finite", lambda ls: _set(ls, 21, 5, "inf"), 22, False),
    ("finite", lambda ls: _set(ls, 22, 3, ""), 23, False),
    ("positive_prices", lambda ls: _set(_set(_set(_set(ls, 33, 1, "0"), 33, 2, "0"),
                                              33, 3, "0"), 33, 4, "0"), 34, False),
    ("positive_prices", lambda ls: _set(ls, 34, 3, "-5"), 35, False),
    ("nonnegative_volume", lambda ls: _set(ls, 40, 5, "-1"), 41, False),
    ("high_ge_open_close", lambda ls: _set(ls, 60, 2, "1"), 61, False),
    ("low_le_open_close", lambda ls: _set(ls, 61, 3, "99999999"), 62, False),
]


@pytest.mark.parametrize(("rule", "edit", "line", "repairable"), CASES)
def test_validate_broken_real_file_names_file_rule_and_line(
        tmp_path: Path, btc_lines: list[str], rule: str, edit: Edit, line: int,
        repairable: bool) -> None:
    path = write_lines(tmp_path / "BTCUSDT_5m_broken.csv", edit(btc_lines[:200]))
    with pytest.raises(DataValidationError) as err:
        load_bars(path)
    assert err.value.rule == rule
    assert err.value.rows[0] == line
    assert str(path) in str(err.value) and f"line {line}" in str(err.value)


@pytest.mark.parametrize(("rule", "edit", "line", "repairable"), CASES)
def test_cli_validate_broken_file_exits_nonzero_and_repair_writes_only_when_fixed(
        tmp_path: Path, btc_lines: list[str], capsys: pytest.CaptureFixture[str],
        rule: str, edit: Edit, line: int, repairable: bool) -> None:
    path = write_lines(tmp_path / "BTCUSDT_5m_broken.csv", edit(btc_lines[:200]))
    assert main(["data", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"rule '{rule}'" in err and str(path) in err and f"line {line}" in err
    out = tmp_path / "out.csv"
    code = main(["data", "validate", str(path), "--repair", str(out)])
    assert code == (0 if repairable else 1)
    assert out.exists() == repairable
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")]
    assert leftovers == []
    if repairable:
        assert len(load_bars(out)) == 199  # 199 data rows either way: dup dropped or gap filled


def test_cli_validate_prints_summary_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    from raytrade.envs.sample import sample_path
    assert main(["data", "validate", str(sample_path("BTCUSDT")),
                 str(sample_path("ETHUSDT"))]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT"]
    assert rows[0] == {"file": str(sample_path("BTCUSDT")), "symbol": "BTCUSDT",
                       "interval": "5m", "bars": 25920, "first": "2025-04-03T17:05:00+00:00",
                       "last": "2025-07-02T17:00:00+00:00", "filled_bars": 0}


def test_repair_drops_exact_duplicates_and_fills_gaps_reporting_each(
        tmp_path: Path, btc_lines: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    lines = btc_lines[:300]
    broken = lines[:50] + [lines[49]] + lines[50:100] + lines[103:]  # dup of line 50, 3 missing
    path = write_lines(tmp_path / "BTCUSDT_5m_x.csv", broken)
    table, report = load_bars_repaired(path)
    assert report.dropped == 1 and report.filled == 3
    assert len(table) == 299 and int(table.filled.sum()) == 3
    filled = np.flatnonzero(table.filled)
    assert filled.tolist() == [99, 100, 101]
    prev_close = table.close[98]
    assert np.all(table.ohlcv()[filled, :4] == prev_close) and np.all(table.volume[filled] == 0)
    out = tmp_path / "repaired.csv"
    assert main(["data", "validate", str(path), "--repair", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dropped_duplicate at line 51" in printed and "filled_gap" in printed
    again = load_bars(out)
    np.testing.assert_array_equal(again.ts, table.ts)
    np.testing.assert_array_equal(again.filled, table.filled)


def test_repair_refuses_conflicting_duplicates_and_writes_nothing(
        tmp_path: Path, btc_lines: list[str]) -> None:
    lines = btc_lines[:100]
    conflicting = _set([lines[0], lines[40]], 1, 4, "123.0")[1]
    path = write_lines(tmp_path / "x.csv", lines[:60] + [conflicting] + lines[60:])
    out = tmp_path / "out.csv"
    assert main(["data", "validate", str(path), "--repair", str(out)]) == 1
    assert not out.exists()
    with pytest.raises(DataValidationError, match="different values"):
        load_bars_repaired(path)


def test_repair_does_not_fix_bad_prices(tmp_path: Path, btc_lines: list[str]) -> None:
    path = write_lines(tmp_path / "x.csv", _set(btc_lines[:100], 10, 3, "-1"))
    with pytest.raises(DataValidationError) as err:
        load_bars_repaired(path)
    assert err.value.rule == "positive_prices"


def test_interval_mismatch_with_file_name_is_reported(tmp_path: Path,
                                                      btc_lines: list[str]) -> None:
    path = write_lines(tmp_path / "BTCUSDT_1h_x.csv", btc_lines[:50])
    with pytest.raises(DataValidationError) as err:
        load_bars(path)
    assert err.value.rule == "regular_interval"
