"""Subprocess for the kill -9 test: trade bars ``[0, N)`` into a journal, restoring first.

Usage: python -m tests.journal_worker JOURNAL STORE N
Prints each bar index after its transaction commits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import BrokerConfig, PaperBroker
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.algos.policy import Policy
from raytrade.algos.storage.policy_store import PolicyStore

from tests.live_setup import bars, experiment


def make_trader(journal: Journal, policy: Policy) -> SymbolTrader:
    exp = experiment()
    broker = PaperBroker(BrokerConfig(costs=exp.env.costs, risk=exp.env.risk), "ETHUSDT", "t")
    return SymbolTrader("ETHUSDT", exp.features, exp.env.window, broker, journal,
                        lambda: policy)


def main() -> None:
    journal_path, store_uri, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = PolicyStore(store_uri)
    version = store.channel("paper").version  # type: ignore[union-attr]
    policy = Policy(store.files(version), version)
    journal = Journal(Path(journal_path))
    trader = make_trader(journal, policy)
    trader.restore()
    eth, btc = bars(n)
    for i in range(n):
        out = trader.process(eth.bar(i), "live", float(btc.close[i]))
        if out.recorded:
            print(i, flush=True)
    journal.close()


if __name__ == "__main__":
    main()
