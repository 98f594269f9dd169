"""Trading calendars (``envs/calendar.py``): forex sessions read in New York time through
daylight-saving changes, holidays, the steps a closure explains, warm-up spans in expected
bars, annualization, and the ``[env.calendar]`` TOML and manifest round trips."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
from raytrade.algos.run_metrics import record_performance
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.metrics import performance
from raytrade.envs.typed_json import decode, encode
from raytrade.envs.validation import first_broken_rule

H = 3_600_000
FX = TradingCalendar(kind="forex", holidays=("12-25", "01-01"))


def ms(text: str) -> int:
    """``"2017-10-06 21:00"`` (UTC) in ms."""
    return int(np.datetime64(text.replace(" ", "T"), "ms").astype(np.int64))


def test_forex_session_follows_new_york_time_through_daylight_saving() -> None:
    # summer (EDT, UTC-4): Friday 17:00 New York is 21:00 UTC, Sunday 17:00 too
    assert FX.is_open(ms("2017-10-06 20:59")) and not FX.is_open(ms("2017-10-06 21:00"))
    assert not FX.is_open(ms("2017-10-08 20:59")) and FX.is_open(ms("2017-10-08 21:00"))
    # the clocks go back on Sunday 2017-11-05: that evening opens at 22:00 UTC
    assert not FX.is_open(ms("2017-11-05 21:30"))
    assert FX.next_open_ms(ms("2017-11-04 12:00")) == ms("2017-11-05 22:00")
    # winter (EST, UTC-5): the Friday close is 22:00 UTC
    assert FX.is_open(ms("2017-11-10 21:59")) and not FX.is_open(ms("2017-11-10 22:00"))
    assert FX.next_open_ms(ms("2017-11-08 12:00")) == ms("2017-11-08 12:00")
    # Christmas 2017 was a Monday: its trading day (Sunday 17:00 to Monday 17:00 New
    # York) is closed, and the market opens Monday 22:00 UTC
    assert FX.next_open_ms(ms("2017-12-22 22:00")) == ms("2017-12-25 22:00")
    assert not FX.is_open(ms("2017-12-24 23:00"))
    assert ALWAYS.is_open(ms("2017-12-25 03:00"))


def test_forex_bar_expected_when_its_middle_trades() -> None:
    assert FX.bar_expected(ms("2017-10-06 20:00"), H)
    assert not FX.bar_expected(ms("2017-10-06 21:00"), H)   # a quote after the close
    assert FX.bar_expected(ms("2017-10-08 20:00"), 4 * H)    # opens inside, ends in session
    opens = np.array([ms("2017-10-06 19:00"), ms("2017-10-07 12:00"), ms("2017-10-09 00:00")])
    assert FX.expected_mask(opens, H).tolist() == [True, False, True]
    assert ALWAYS.expected_mask(opens, H).all()


def test_expected_between_is_zero_across_a_closure_and_counts_a_gap_inside_a_session(
        ) -> None:
    # Friday 20:00 UTC (the last summer bar) to Sunday 21:00 UTC: a closure
    assert FX.expected_between(ms("2017-10-13 20:00"), ms("2017-10-15 21:00"), H) == 0
    # one Friday bar missing before the weekend: a gap of one bar
    assert FX.expected_between(ms("2017-10-13 19:00"), ms("2017-10-15 21:00"), H) == 1
    # the first Sunday bar missing too
    assert FX.expected_between(ms("2017-10-13 19:00"), ms("2017-10-15 22:00"), H) == 2
    # Christmas Monday: Friday 21:00 UTC (winter) to Monday 22:00 UTC is one closure
    assert FX.expected_between(ms("2017-12-22 21:00"), ms("2017-12-25 22:00"), H) == 0
    assert ALWAYS.expected_between(ms("2017-10-13 20:00"), ms("2017-10-15 21:00"), H) == 48
    ts = np.array([ms("2017-10-13 19:00"), ms("2017-10-13 20:00"), ms("2017-10-15 21:00"),
                   ms("2017-10-15 23:00")])
    assert FX.closure_steps(ts, H).tolist() == [False, True, False]


def test_start_for_bars_skips_the_weekend() -> None:
    end = ms("2017-10-09 02:00")
    # 5 bars Sunday 21:00..Monday 01:00, then 5 before the Friday close
    assert FX.start_for_bars(end, 10, H) == ms("2017-10-06 16:00")
    assert ALWAYS.start_for_bars(end, 10, H) == end - 10 * H
    assert FX.start_for_bars(end, 1, H) == ms("2017-10-09 01:00")
    assert FX.start_for_bars(end + 1, 1, H) == ms("2017-10-09 02:00")


def test_forex_bars_per_year_matches_a_hand_count() -> None:
    # 2000-01-01..2028-01-01: 10227 days, 1461 weeks of 120 session hours; Dec 25 and
    # Jan 1 each fall Monday to Friday in 20 of those 28 years and close 24 bars then
    hand = (1461 * 120 - 2 * 20 * 24) / 10227 * 365
    assert FX.bars_per_year(H) == pytest.approx(hand, rel=1e-12)
    assert TradingCalendar(kind="forex").bars_per_year(H) == pytest.approx(
        1461 * 120 / 10227 * 365, rel=1e-12)
    assert ALWAYS.bars_per_year(H) == 365 * 24
    # 4h bars on the UTC grid count when their middle trades: a week has the Sunday 20:00
    # bar (middle 22:00), Monday to Thursday's 24 and Friday's 5 (20:00 has its middle
    # after the close): 30 in summer (21:00 UTC open and close) and winter (22:00) alike;
    # a holiday closes the Sunday 20:00 bar and five of the Monday's
    assert TradingCalendar(kind="forex").bars_per_year(4 * H) == pytest.approx(
        1461 * 30 / 10227 * 365, rel=1e-12)
    assert FX.bars_per_year(4 * H) == pytest.approx(hand / 4, rel=1e-12)
    # daily UTC bars: Monday to Friday (a Sunday's middle, 12:00, is closed), less a
    # holiday falling Monday to Friday: five a week, about 259 a year, not 365 or 312
    assert FX.bars_per_year(24 * H) == pytest.approx(
        (1461 * 5 - 2 * 20) / 10227 * 365, rel=1e-12)


def test_forex_daily_bars_monday_to_friday_pass_validation_and_repair_adds_no_sunday(
        ) -> None:
    days = ["2017-04-17", "2017-04-18", "2017-04-19", "2017-04-20", "2017-04-21",
            "2017-04-24", "2017-04-25", "2017-12-22", "2017-12-26"]
    ts = np.array([ms(d + " 00:00") for d in days], dtype=np.int64)
    ohlcv = np.tile([1.1, 1.2, 1.0, 1.15, 100.0], (len(ts), 1))
    assert first_broken_rule(ts, ohlcv, 24 * H, FX) is not None  # Apr 25 -> Dec 22
    week = slice(0, 7)
    assert first_broken_rule(ts[week], ohlcv[week], 24 * H, FX) is None
    assert FX.expected_between(int(ts[-2]), int(ts[-1]), 24 * H) == 0  # Christmas Monday
    assert not FX.bar_expected(ms("2017-04-23 00:00"), 24 * H)  # a Sunday
    assert FX.bar_expected(ms("2017-04-21 00:00"), 24 * H)  # a Friday


def test_always_calendar_takes_an_empty_holiday_list() -> None:
    assert TradingCalendar(kind="always", holidays=[]) == ALWAYS  # type: ignore[arg-type]


def test_env_calendar_toml_round_trips_through_the_env_config_and_json() -> None:
    doc = tomllib.loads('[env.calendar]\nkind = "forex"\nholidays = ["12-25", "01-01"]\n')
    env = EnvConfig.from_dict(doc["env"])
    assert env.calendar == FX
    again = decode(EnvConfig, json.loads(json.dumps(encode(env))), "env")
    assert again == env and again.calendar.holidays == ("12-25", "01-01")
    assert EnvConfig().calendar == ALWAYS
    assert "calendar.holidays" in env.differences(EnvConfig())


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "stocks"}, r"EnvConfig\.calendar: .*kind must be one of"),
    ({"kind": "forex", "weekly_open": "Sunday 5pm"}, r"weekly_open: 'Sunday 5pm'"),
    ({"kind": "forex", "holidays": ["12-32"]}, r"holidays: '12-32'"),
    ({"kind": "forex", "holidays": "12-25"}, r"EnvConfig\.calendar\.holidays: expected a list"),
    ({"kind": "forex", "timezone": "Mars/Olympus"}, r"timezone: unknown time zone"),
    ({"kind": "always", "holidays": ["12-25"]}, r"only to kind 'forex'"),
    ({"kind": "forex", "open": "Sun 17:00"}, r"EnvConfig\.calendar\.open: unknown field"),
])
def test_env_calendar_bad_table_is_refused_naming_the_field(table: dict[str, object],
                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EnvConfig.from_dict({"calendar": table})


def test_calendar_json_with_an_unknown_kind_is_refused_with_its_path() -> None:
    data = encode(FX) | {"kind": "crypto"}
    with pytest.raises(ConfigError, match=r"env\.calendar\.kind: expected one of"):
        decode(TradingCalendar, data, "env.calendar")


def test_performance_annualizes_with_the_calendars_bars_per_year() -> None:
    rng = np.random.default_rng(0)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(2e-4, 1e-3, 500))
    position = np.ones(500)
    returns = equity[1:] / equity[:-1] - 1.0
    hand = (1461 * 120 - 2 * 20 * 24) / 10227 * 365     # forex 1h, see above
    fx = performance(equity, position, H, fills=10, calendar=FX)
    assert fx.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1) * hand ** 0.5)
    assert fx.annual_return == pytest.approx(np.prod(1 + returns) ** (hand / 499) - 1)
    # ten fills over 499 session hours: days of trading are hand / 365 bars each
    assert fx.trades_per_day == pytest.approx(10 / (499 / (hand / 365)))
    crypto = performance(equity, position, H, fills=10)
    assert crypto.sharpe == pytest.approx(fx.sharpe * (8760 / hand) ** 0.5)
    assert crypto == performance(equity, position, H, fills=10, calendar=ALWAYS)


def test_paper_record_metrics_annualize_with_the_calendar_across_weekends() -> None:
    # a paper record's rows, one per hourly bar, with a weekend between two weeks
    ts = [ms("2017-10-13 00:00") + H * i for i in range(21)] + \
        [ms("2017-10-15 21:00") + H * i for i in range(100)]  # Friday, then from Sunday
    assert FX.closure_steps(np.array(ts), H).sum() == 1
    rng = np.random.default_rng(1)
    equity = 1000.0 * np.cumprod(1.0 + rng.normal(1e-4, 1e-3, len(ts)))
    rows = [{"ts": t, "equity": e, "position": 1.0} for t, e in zip(ts, equity, strict=True)]
    fx = record_performance(rows, FX)
    assert fx["sharpe"] == pytest.approx(
        performance(equity, np.ones(len(ts)), H, calendar=FX).sharpe)
    assert record_performance(rows)["sharpe"] == pytest.approx(
        fx["sharpe"] * (8760 / FX.bars_per_year(H)) ** 0.5)
