"""The journal: one transaction per bar, rebuild after kill -9, refusal when locked or
corrupt."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from raytrade.actors.journal import Journal, JournalError

from tests.journal_worker import make_trader
from tests.live_setup import bars, paper_store

N = 5_300  # features are warm after about 4,500 bars (4h timeframe, pivots)
TABLES = ("bars", "decisions", "orders", "fills", "account")


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    j = Journal(path)
    out = {t: j.db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    j.close()
    return out


def test_journal_kill_9_mid_run_then_restart_equals_uninterrupted_run(tmp_path: Path) -> None:
    store, policy = paper_store(tmp_path / "store")
    # the reference: one uninterrupted run, in process
    ref = Journal(tmp_path / "ref.sqlite")
    trader = make_trader(ref, policy)
    eth, btc = bars(N)
    for i in range(N):
        trader.process(eth.bar(i), "live", float(btc.close[i]))
    ref.close()
    # the same bars in a subprocess killed with SIGKILL part-way, then restarted
    journal = tmp_path / "crash.sqlite"
    cmd = [sys.executable, "-m", "tests.journal_worker", str(journal), store.uri, str(N)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line) >= 5_150:  # decisions and fills are flowing by now
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = dump(journal)
    assert 5_150 < len(partial["bars"]) < N
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout, "the restart continued where the journal ended"
    expected, got = dump(tmp_path / "ref.sqlite"), dump(journal)
    assert len(expected["fills"]) > 10
    for table in TABLES:
        assert got[table] == expected[table], table


def test_journal_replayed_bar_is_a_no_op(tmp_path: Path) -> None:
    _, policy = paper_store(tmp_path / "store")
    j = Journal(tmp_path / "j.sqlite")
    trader = make_trader(j, policy)
    eth, btc = bars(50)
    for i in range(50):
        trader.process(eth.bar(i), "live", float(btc.close[i]))
    before = {t: j.count(t) for t in TABLES}
    again = make_trader(j, policy)
    again.restore()
    out = again.process(eth.bar(49), "live", float(btc.close[49]))
    assert not out.recorded and {t: j.count(t) for t in TABLES} == before
    j.close()


def test_journal_locked_by_another_trader_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j.sqlite")
    with pytest.raises(JournalError, match="locked"):
        Journal(tmp_path / "j.sqlite")
    first.close()
    Journal(tmp_path / "j.sqlite").close()  # free again once the first closed


def test_journal_corrupt_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="corrupt or not SQLite"):
        Journal(path)
    assert path.read_bytes().startswith(b"this is not")  # nothing overwritten
