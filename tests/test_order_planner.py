"""Order planning, pre-trade risk and reconciliation: the pure rules of the live trader."""

from __future__ import annotations

import pytest
from raytrade.actors.live_config import LiveLimits
from raytrade.actors.live_risk import LiveRisk
from raytrade.actors.order_planner import (
    client_order_id,
    desired_position,
    limit_price,
    plan_orders,
)
from raytrade.actors.reconcile import reconcile
from raytrade.actors.venues.execution import OrderState, SymbolFilters
from raytrade.envs.errors import ConfigError

BTC = SymbolFilters("BTCUSDT", "BTC", "USDT", tick_size=0.01, step_size=0.00001,
                    min_qty=0.00001, max_qty=9000.0, min_notional=5.0)
PERP = SymbolFilters("BTCUSDT", "BTC", "USDT", tick_size=0.1, step_size=0.001,
                     min_qty=0.001, max_qty=1000.0, min_notional=100.0)


def test_filters_round_quantities_down_and_prices_away_from_the_book() -> None:
    assert BTC.floor_qty(0.0123456789) == pytest.approx(0.01234)
    assert BTC.floor_qty(0.3) == 0.3  # no binary noise: 0.3 / 1e-5 is 29999.999...
    assert BTC.round_price(43000.001, "buy") == 43000.01
    assert BTC.round_price(43000.009, "sell") == 43000.0
    assert limit_price(40000.0, "buy", 50, BTC) == 40200.0
    assert limit_price(40000.0, "sell", 50, BTC) == 39800.0


def test_spot_plan_buys_the_difference_sized_like_the_accounting_and_the_step() -> None:
    # position and its 10 bp fee together are half the equity, as the env sizes a trade
    desired = desired_position(0.5, 1000.0, 40000.0, "spot", fee_rate=0.001)
    assert desired == pytest.approx(500.0 / (40000.0 * 1.001))
    plan = plan_orders(0.0, desired, BTC, 40000.0, "spot")
    assert [(leg.side, leg.qty, leg.reduce_only) for leg in plan.legs] == [
        ("buy", 0.01248, False)]


def test_spot_plan_never_sells_more_than_it_holds_and_refuses_shorts() -> None:
    plan = plan_orders(0.01, 0.0, BTC, 40000.0, "spot")
    assert [(leg.side, leg.qty) for leg in plan.legs] == [("sell", 0.01)]
    with pytest.raises(ConfigError, match="long/flat"):
        desired_position(-0.5, 1000.0, 40000.0, "spot", fee_rate=0.001)


def test_plan_drops_a_change_under_the_exchange_minimum_and_says_why() -> None:
    plan = plan_orders(0.01, 0.01005, BTC, 40000.0, "spot")
    assert plan.legs == () and "minimum 5" in plan.skipped
    plan = plan_orders(0.01, 0.010001, BTC, 40000.0, "spot")
    assert plan.legs == () and "under one step" in plan.skipped


def test_futures_plan_closes_reduce_only_then_opens_when_crossing_zero() -> None:
    plan = plan_orders(0.05, -0.03, PERP, 40000.0, "futures")
    assert [(leg.leg, leg.side, leg.qty, leg.reduce_only) for leg in plan.legs] == [
        (0, "sell", 0.05, True), (1, "sell", 0.03, False)]
    shrink = plan_orders(-0.05, -0.002, PERP, 40000.0, "futures")
    # a reduce-only order is exempt from the minimum notional (80 < 100)
    assert [(leg.side, leg.qty, leg.reduce_only) for leg in shrink.legs] == [
        ("buy", 0.048, True)]


def test_client_order_ids_are_deterministic_distinct_and_within_binance_rules() -> None:
    a = client_order_id("live-btcusdt", 1_700_000_100_000, 12, 0)
    assert a == client_order_id("live-btcusdt", 1_700_000_100_000, 12, 0)
    others = {client_order_id("live-btcusdt", 1_700_000_100_000, 12, 1),
              client_order_id("live-btcusdt", 1_700_000_400_000, 12, 0),
              client_order_id("live-btcusdt", 1_700_000_100_000, 13, 0),
              client_order_id("live-ethusdt", 1_700_000_100_000, 12, 0)}
    assert a not in others and len(others) == 4
    import re
    assert all(re.fullmatch(r"[\.A-Z\:/a-z0-9_-]{1,36}", c) for c in {a, *others})


def _risk(**limits: float) -> LiveRisk:
    return LiveRisk(LiveLimits(**limits), stale_after_ms=600_000)  # type: ignore[arg-type]


def test_risk_refuses_stale_bars_but_lets_an_operator_flatten() -> None:
    risk = _risk()
    stale = risk.check(0.0, 0.01, 40000.0, bar_close_ms=0, now_ms=700_000,
                       other_notional=0.0, legs=1)
    assert stale.refusal.startswith("stale data") and stale.desired == 0.0
    ok = risk.check(0.01, 0.0, 40000.0, bar_close_ms=0, now_ms=700_000,
                    other_notional=0.0, legs=1, operator=True)
    assert ok.refusal == "" and ok.desired == 0.0


def test_risk_clips_to_the_symbol_and_total_caps_and_never_blocks_a_reduction() -> None:
    risk = _risk(max_symbol_notional=500.0, max_total_notional=800.0)
    v = risk.check(0.0, 0.02, 40000.0, bar_close_ms=0, now_ms=0, other_notional=0.0, legs=1)
    assert v.desired == pytest.approx(500.0 / 40000.0) and "max_symbol_notional" in v.clipped
    v = risk.check(0.0, 0.02, 40000.0, bar_close_ms=0, now_ms=0, other_notional=600.0,
                   legs=1)
    assert v.desired == pytest.approx(200.0 / 40000.0) and "max_total_notional" in v.clipped
    above = risk.check(0.03, 0.025, 40000.0, bar_close_ms=0, now_ms=0,
                       other_notional=0.0, legs=1)
    assert above.desired == pytest.approx(0.025)  # shrinking a position above the cap


def test_risk_limits_the_order_rate_over_a_sliding_minute() -> None:
    risk = _risk(max_orders_per_minute=2)
    risk.sent(0, 2)
    refused = risk.check(0.0, 0.001, 40000.0, bar_close_ms=0, now_ms=30_000,
                         other_notional=0.0, legs=1)
    assert refused.refusal.startswith("order rate")
    later = risk.check(0.0, 0.001, 40000.0, bar_close_ms=60_000, now_ms=60_001,
                       other_notional=0.0, legs=1)
    assert later.refusal == ""


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="daily_loss_limit"):
        LiveLimits(daily_loss_limit=0.0)
    with pytest.raises(ConfigError, match="max_orders_per_minute"):
        LiveLimits(max_orders_per_minute=0)


def _open(cid: str) -> OrderState:
    return OrderState(cid, "1", "BTCUSDT", "buy", "new", 0.01, 0.0, None)


def test_reconcile_flags_a_position_changed_behind_the_journal_and_unknown_orders() -> None:
    assert reconcile(0.01, 0.010004, [], set(), 0.000005).ok
    moved = reconcile(0.01, 0.02, [], set(), 0.000005)
    assert not moved.ok and "exchange 0.02, journal 0.01" in moved.detail
    foreign = reconcile(0.01, 0.01, [_open("manual-1"), _open("rt-a")], {"rt-a"}, 0.000005)
    assert not foreign.ok and foreign.unknown_orders == ("manual-1",)
