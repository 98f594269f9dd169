"""Paper broker: the shared accounting, live spread, rejections that change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from raytrade.actors.events import QuoteEvent
from raytrade.actors.paper_broker import BrokerConfig, Fill, PaperBroker, Rejection
from raytrade.envs.bars import BarTable
from raytrade.envs.costs import CostModel
from raytrade.envs.execution import simulate


def run(broker: PaperBroker, table: BarTable, targets: np.ndarray) -> list[object]:
    out = []
    for i in range(len(table)):
        out.append(broker.on_bar(table.bar(i)))
        broker.decide(float(targets[i]), float(table.close[i]))
    return out


def test_broker_equals_backtest_simulation_on_real_bars(eth: BarTable) -> None:
    table = eth.slice(0, 2_000)
    targets = np.sign(np.sin(np.arange(len(table)) / 37.0))
    broker = PaperBroker(BrokerConfig(), "ETHUSDT")
    equity = []
    for i in range(len(table)):
        broker.on_bar(table.bar(i))
        broker.decide(float(targets[i]), float(table.close[i]))
        equity.append(broker.equity)
    sim = simulate(table, targets)
    # broker equity after bar i's close == simulation's record at bar i
    np.testing.assert_array_equal(np.array(equity)[1:], sim.equity[1:])


def test_broker_uses_the_quoted_spread_when_two_sided(eth: BarTable) -> None:
    table = eth.slice(0, 30)
    targets = (np.arange(30) >= 20).astype(float)  # buy at bar 20's close, fill at 21
    wide = QuoteEvent("ETHUSDT", 1, 99.7, 1.0, 100.3, 1.0)  # 0.3 % half spread
    costs = CostModel(impact_coef=0.0, fee_bps=0.0)
    a = PaperBroker(BrokerConfig(costs=costs), "ETHUSDT")
    b = PaperBroker(BrokerConfig(costs=costs), "ETHUSDT")
    b.on_quote(wide)
    fa = run(a, table, targets)[21]
    fb = run(b, table, targets)[21]
    assert isinstance(fa, Fill) and isinstance(fb, Fill)
    assert fa.price == pytest.approx(table.open[21] * 1.0001)
    assert fb.price == pytest.approx(table.open[21] * 1.003)


@pytest.mark.parametrize("quote", [QuoteEvent("E", 1, 0.0, 0.0, 0.0, 0.0),
                                   QuoteEvent("E", 1, 0.0, 0.0, 101.0, 3.0),
                                   QuoteEvent("E", 1, 99.0, 2.0, 0.0, 0.0)])
def test_broker_empty_or_one_sided_book_rejects_and_changes_nothing(
        eth: BarTable, quote: QuoteEvent) -> None:
    broker = PaperBroker(BrokerConfig(), "ETHUSDT")
    broker.on_quote(quote)
    broker.on_bar(eth.bar(0))
    broker.decide(1.0, float(eth.close[0]))
    cash_before = broker.acct.copy()
    result = broker.on_bar(eth.bar(1))
    assert isinstance(result, Rejection) and "one-sided" in result.reason
    assert broker.position == 0.0 and broker.acct[0] == cash_before[0]  # cash unchanged


def test_broker_insufficient_balance_rejects_with_the_numbers(eth: BarTable) -> None:
    broker = PaperBroker(BrokerConfig(max_leverage=1.0), "ETHUSDT")
    broker.on_bar(eth.bar(0))
    broker.decide(2.0, float(eth.close[0]))
    result = broker.on_bar(eth.bar(1))
    assert isinstance(result, Rejection) and "insufficient balance" in result.reason
    assert "needs notional 20000.00" in result.reason and "buying power is 1" in result.reason
    assert broker.equity == 10_000.0 and broker.position == 0.0


def test_broker_fill_ids_are_deterministic(eth: BarTable) -> None:
    table = eth.slice(0, 50)
    targets = np.where(np.arange(50) % 7 < 3, 1.0, -1.0)
    ids = [[f.fill_id for f in run(PaperBroker(BrokerConfig(), "ETHUSDT", "acct"), table,
                                   targets) if isinstance(f, Fill)] for _ in range(2)]
    assert ids[0] == ids[1] and len(ids[0]) == len(set(ids[0])) > 5
    assert ids[0][0] == f"acct:ETHUSDT:{int(table.ts[1])}"


def test_broker_state_round_trips_exactly(eth: BarTable) -> None:
    table = eth.slice(0, 100)
    targets = np.sign(np.cos(np.arange(100) / 5.0))
    a = PaperBroker(BrokerConfig(), "ETHUSDT")
    run(a, table.slice(0, 60), targets[:60])
    b = PaperBroker(BrokerConfig(), "ETHUSDT")
    import json
    b.restore(json.loads(json.dumps(a.state())))
    for broker in (a, b):
        for i in range(60, 100):
            broker.on_bar(table.bar(i))
            broker.decide(float(targets[i]), float(table.close[i]))
    assert np.array_equal(a.acct, b.acct)
