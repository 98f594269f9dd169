"""Calendars on the data side, on the real EURUSD hourly bars shipped in the ``backtesting``
package (read in place): validation accepts the weekends and holidays a forex calendar
expects and still refuses a gap inside a session, repair fills only in-session gaps, and
features skip closures: the bar sequence is what matters, not the hours between bars."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from raytrade.envs.bars import BarTable
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.errors import ConfigError, DataValidationError, FeatureError
from raytrade.envs.features import FeaturePipeline, FeatureSpec, pipeline
from raytrade.envs.io import describe, load_bars, load_bars_repaired
from raytrade.envs.market import backtesting_path, load_markets, resolve_sources
from raytrade.envs.resample import resample

H = 3_600_000
FX = TradingCalendar(kind="forex", holidays=("12-25", "01-01"))
SPEC = FeatureSpec(base_interval="1h", higher_timeframes=("4h",), reference_symbol=None,
                   pivot_levels=2, regime_vol_long=96)


def _lines() -> list[str]:
    return backtesting_path("EURUSD").read_text().splitlines()


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "EURUSD.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _line_of(lines: list[str], stamp: str) -> int:
    """The 1-based file line of the bar opening at ``stamp``."""
    return next(i for i, line in enumerate(lines) if line.startswith(stamp + ",")) + 1


def test_eurusd_loads_under_the_forex_calendar_and_fails_around_the_clock() -> None:
    [path] = resolve_sources(("backtesting:EURUSD",))
    bars = load_bars(path, calendar=FX)
    assert bars.symbol == "EURUSD" and bars.interval == "1h" and len(bars) == 5000
    assert bars.calendar == FX
    summary = describe(bars)
    # 40 weekends and the two long holiday weekends; the two summer Friday bars opening
    # at 21:00 UTC (17:00 New York, just after the close) are kept and counted
    assert summary["closures"] == 42 and summary["bars_in_closures"] == 2
    with pytest.raises(DataValidationError, match="regular_interval"):
        load_bars(path)
    # without the holidays, Christmas and New Year's Day are gaps of 24 session bars
    with pytest.raises(DataValidationError, match="24 bars the forex") as err:
        load_bars(path, calendar=TradingCalendar(kind="forex"))
    assert err.value.rows[0] == _line_of(_lines(), "2017-12-25 22:00:00")


def test_gap_inside_a_session_is_refused_naming_file_line_and_rule(tmp_path: Path) -> None:
    lines = _lines()
    # drop the last Friday bar before a summer weekend: the weekend step now skips a bar
    # the session expects
    friday = _line_of(lines, "2017-06-16 20:00:00")
    path = _write(tmp_path, lines[:friday - 1] + lines[friday:])
    with pytest.raises(DataValidationError) as err:
        load_bars(path, calendar=FX)
    assert err.value.rule == "regular_interval" and err.value.rows[0] == friday
    assert str(path) in str(err.value) and "1 bars the forex" in str(err.value)
    # repair fills that one bar, never the weekend behind it
    table, report = load_bars_repaired(path, calendar=FX)
    assert report.filled == 1 and int(table.filled.sum()) == 1
    assert int(table.ts[table.filled][0]) == int(np.datetime64("2017-06-16T20:00", "ms")
                                                 .astype(np.int64))
    assert report.closures == 42 and report.bars_in_closures == 2
    assert np.array_equal(table.ts, load_bars(backtesting_path("EURUSD"), calendar=FX).ts)


def test_features_skip_closures_so_a_weekend_changes_nothing_but_clock_buckets() -> None:
    fx = load_bars(backtesting_path("EURUSD"), calendar=FX).slice(0, 1500)
    # the same bars, one hour apart with no weekend between them, around the clock
    ts = fx.ts[0] + H * np.arange(len(fx), dtype=np.int64)
    flat = BarTable.from_arrays(ts, fx.ohlcv(), interval_ms=H, symbol="EURUSD")
    spec = dataclasses.replace(SPEC, higher_timeframes=())
    a = FeaturePipeline(spec).compute(fx).values
    b = FeaturePipeline(spec).compute(flat).values
    assert np.array_equal(a, b, equal_nan=True) and np.isfinite(a[-1]).all()
    # higher timeframes are clock-aligned buckets: there, and only there, time matters
    a = FeaturePipeline(SPEC).compute(fx)
    b = FeaturePipeline(SPEC).compute(flat)
    differ = {n for j, n in enumerate(a.names)
              if not np.array_equal(a.values[:, j], b.values[:, j], equal_nan=True)}
    assert differ and all(n.startswith("4h_") for n in differ)
    # a 4h bucket cut short by the Friday close is complete with its session bars
    four = resample(fx, "4h")
    friday = int(np.datetime64("2017-04-21T20:00", "ms").astype(np.int64))
    assert friday in four.ts.tolist() and four.calendar == FX


def test_streaming_features_step_over_a_weekend_but_not_over_a_gap() -> None:
    fx = load_bars(backtesting_path("EURUSD"), calendar=FX).slice(0, 200)
    stream = FeaturePipeline(SPEC).stream(FX)
    weekend = int(np.flatnonzero(np.diff(fx.ts) > H)[0]) + 1
    stream.update_many(fx.ts[:weekend], fx.ohlcv()[:weekend])
    stream.update(fx.bar(weekend))              # Sunday evening follows Friday afternoon
    with pytest.raises(FeatureError, match="backfill the gap"):
        stream.update(fx.bar(weekend + 2))      # a missing Sunday bar is a gap
    around_the_clock = FeaturePipeline(SPEC).stream(ALWAYS)
    around_the_clock.update_many(fx.ts[:weekend], fx.ohlcv()[:weekend])
    with pytest.raises(FeatureError, match="backfill the gap"):
        around_the_clock.update(fx.bar(weekend))


def test_streaming_bar_by_bar_over_forex_weekends_equals_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "SPAN_BARS", 100)  # calendar tables of 5 days: 13 of them
    fx = load_bars(backtesting_path("EURUSD"), calendar=FX).slice(0, 1500)
    full = FeaturePipeline(SPEC).compute(fx).values
    stream = FeaturePipeline(SPEC).stream(FX)
    rows = np.stack([stream.update(fx.bar(i)) for i in range(len(fx))])
    np.testing.assert_array_equal(rows, full)
    assert np.isfinite(full[-1]).all() and (np.diff(fx.ts) > H).sum() >= 5  # weekends crossed


def test_forex_markets_load_for_an_env_and_synthetic_markets_keep_session_bars() -> None:
    [m], _ = load_markets(["backtesting:EURUSD"], spec=SPEC, split="train", window=8,
                          calendar=FX)
    assert m.name == "EURUSD" and len(m.ts) == 5000 and m.first < m.last
    [s], _ = load_markets(["synthetic:regime:seed=1:n=12000"], spec=SPEC, split="all",
                          window=8, calendar=FX)
    assert FX.expected_mask(s.ts, H).all() and len(s.ts) < 12000 // 12


def test_backtesting_source_names_the_package_and_its_files() -> None:
    with pytest.raises(ConfigError, match=r"backtesting.*no NOPE\.csv.*EURUSD"):
        resolve_sources(("backtesting:NOPE",))


def test_cli_validates_under_an_experiments_calendar(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    from raytrade.algos.experiments import experiment_path
    from raytrade.scripts.cli import main

    assert main(["data", "validate", "backtesting:EURUSD", "--calendar-from",
                 str(experiment_path("eurusd_1h"))]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["symbol"] == "EURUSD" and summary["closures"] == 42
    assert summary["calendar"].startswith("forex (Sun 17:00 to Fri 17:00 America/New_York")
    assert main(["data", "validate", "backtesting:EURUSD"]) == 1
    assert "regular_interval" in capsys.readouterr().err
