"""Our accounting against backtesting.py on the same real bars, signal and commission.

Conventions made to match: backtesting.py fills market orders at the next bar's open
(as we do), sizes an all-in order so that units * price * (1 + commission) fits the
equity (as we do), and charges the commission on entry and on exit (as we do). Two
differences remain and are mapped here: it trades whole units, so we run it through its
``FractionalBacktest`` in satoshis; and it counts round-trip trades where we count fills.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from backtesting import Strategy
from backtesting.lib import FractionalBacktest
from raytrade.envs.bars import BarTable
from raytrade.envs.costs import CostModel
from raytrade.envs.execution import simulate


def sma_cross_signal(close: np.ndarray, fast: int = 20, slow: int = 80) -> np.ndarray:
    s = pd.Series(close)
    return np.where(s.rolling(fast).mean() > s.rolling(slow).mean(), 1.0, 0.0)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("commission", [0.0, 0.001])
def test_sma_crossover_final_equity_and_trades_match_backtesting_py(btc: BarTable,
                                                                    commission: float) -> None:
    bars = btc.slice(0, 8000)
    signal = sma_cross_signal(bars.close)

    class Signal(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            if signal[i] == 1 and not self.position:
                self.buy()
            elif signal[i] == 0 and self.position:
                self.position.close()

    frame = bars.to_frame().set_index("timestamp")
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]
    frame.index = frame.index.tz_localize(None)
    bt = FractionalBacktest(frame, Signal, cash=10_000.0, commission=commission,
                            fractional_unit=1e-8, finalize_trades=False)
    stats = bt.run()

    ours = simulate(bars, signal, costs=CostModel(fee_bps=commission * 1e4,
                                                  fixed_slippage_bps=0.0))
    assert ours.equity[-1] == pytest.approx(stats["Equity Final [$]"], rel=1e-6)
    open_at_end = int(ours.units[-1] != 0)
    assert ours.trades[-1] == 2 * stats["# Trades"] + open_at_end
    assert stats["# Trades"] > 20
