"""Seeded run data for the dashboard tests: what training, evaluation, a paper actor and
two live actors publish, in their documented formats, written into a store."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.actors.paper_export import upload_paper
from raytrade.algos.evaluation import evaluate
from raytrade.algos.export import random_bundle
from raytrade.algos.storage import keys
from raytrade.algos.storage.blobstore import BlobStore
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.envs.metrics import performance

from tests.live_setup import quick_experiment

T0 = 1_743_638_400_000  # 2025-04-03 00:00 UTC
BAR = 300_000


def train_rows(n: int) -> list[dict[str, Any]]:
    """``n`` iterations shaped like ``algos.train.iteration_metrics`` records."""
    return [{"iteration": i, "time_s": 2.0 * i, "env_steps_sampled": 1000.0 * i,
             "env_steps_trained": 4000.0 * i, "episode_return_mean": -5 + 0.1 * i,
             "qf_loss": 1.0 / i, "qf_mean": 0.01 * i, "td_error_mean": 0.5 / i,
             "episode_sharpe": math.nan if i % 3 else 0.1 * i, "sampled_per_s": 500.0,
             "trained_per_s": 2000.0, "replay_size": min(1000 * i, 50_000),
             "epsilon": {"0": 0.4, "1": 0.4 ** 8}} for i in range(1, n + 1)]


def _linear_q(seed: int) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]:
    """A fixed random linear Q-function: a greedy policy that trades often, as an
    undertrained one does."""
    weights: list[npt.NDArray[np.float64]] = []

    def q(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if not weights:
            weights.append(np.random.default_rng(seed).normal(size=(obs.shape[1], 3)))
        out: npt.NDArray[np.float64] = obs.astype(np.float64) @ weights[0]
        return out

    return q


@functools.lru_cache(maxsize=4)
def _evaluation_json(seed: int) -> tuple[str, str]:
    exp = quick_experiment()
    curves: dict[str, Any] = {}
    record = evaluate(_linear_q(seed), exp, "validation", seed=exp.seed, curves=curves)
    return json.dumps(record), json.dumps(curves)


def demo_evaluation(iteration: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One validation evaluation as ``raytrade demo`` writes it: the record for
    ``metrics/eval.jsonl`` and the curves for ``metrics/eval_curves/`` (both with
    ``iteration``), made by ``algos.evaluation.evaluate`` itself on the bundled ETH and BTC
    data, for a random linear greedy policy (``seed``).

    Shaped like the demo's: the validation split has 3,888 bars per dataset, so curves are
    subsampled to 2,000 points; the random baseline and this greedy policy lose half their
    equity to costs and hit the drawdown halt (``max_drawdown = 0.5``), so their curves end
    early and are shorter. Computed once per process (about 1 s once features are cached).
    """
    record_json, curves_json = _evaluation_json(seed)
    record, curves = json.loads(record_json), json.loads(curves_json)
    record["iteration"] = curves["iteration"] = iteration
    return record, curves


def paper_rows(n: int, version: int, seed: int = 0) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """``n`` bars of an actor's equity export and its fills; each row carries the account's
    cumulative cost counters as ``paper_export.equity_records`` writes them (fee 0.5,
    slippage 0.1 and one ETH of notional per fill, borrow 0.01 per bar held)."""
    rng = np.random.default_rng(seed)
    close = 1800 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    position = np.where(np.arange(n) // 20 % 2 == 0, 1.0, 0.0)
    equity = 10_000 * np.exp(np.cumsum(np.r_[0, np.diff(np.log(close))] * position))
    fills = [{"fill_id": f"eth:ETHUSDT:{T0 + i * BAR}", "symbol": "ETHUSDT",
              "bar_ts": T0 + i * BAR, "target": float(position[i]),
              "qty": 1.0 if position[i] else -1.0, "price": float(close[i]),
              "notional": float(close[i]), "fee": 0.5, "slippage": 0.1}
             for i in range(1, n) if position[i] != position[i - 1]]
    filled = {f["bar_ts"]: f for f in fills}
    rows = []
    counters = {"fees": 0.0, "slippage": 0.0, "borrow": 0.0, "traded_notional": 0.0,
                "trades": 0}
    for i in range(n):
        ts = T0 + i * BAR
        if ts in filled:
            counters["fees"] += 0.5
            counters["slippage"] += 0.1
            counters["traded_notional"] += filled[ts]["notional"]
            counters["trades"] += 1
        if i:  # the first row is the first decision: nothing paid yet
            counters["borrow"] += 0.01 * float(position[i])
        rows.append({"ts": ts, "equity": float(equity[i]), "position": float(position[i]),
                     "version": version, "close": float(close[i]), **counters,
                     "halted": False})
    return rows, fills


def seed_store(store: PolicyStore, *, bars: int = 400) -> dict[str, Any]:
    """Versions on every channel, training metrics, two evaluations with their curves (as
    the demo writes them: see :func:`demo_evaluation`), and one paper actor; returns what
    the tests check against."""
    v1 = store.publish(random_bundle(quick_experiment(), seed=1), reason="iteration 10")
    v2 = store.publish(random_bundle(quick_experiment(), seed=2), reason="iteration 20")
    store.move("paper", v1, reason="seed: paper")
    store.move("live", v1, reason="seed: live", kind="force")
    lines = "".join(json.dumps(r) + "\n" for r in train_rows(30))
    store.blobs.put("metrics/train.jsonl", lines.encode())
    evals = [demo_evaluation(10, seed=1), demo_evaluation(20, seed=2)]
    store.blobs.put("metrics/eval.jsonl", "".join(json.dumps(e) + "\n" for e, _ in evals)
                    .encode())
    for _, curves in evals:  # as algos.train writes them
        store.blobs.put(f"metrics/eval_curves/{curves['iteration']:06d}_validation.json",
                        json.dumps(curves).encode())
    rows, fills = paper_rows(bars, v1)
    health = {"actor": "eth", "symbol": "ETHUSDT", "state": "running", "stale": False,
              "feed": {"state": "live", "counters": {"disconnects": 2, "rejected": 1,
                                                     "malformed": 3}},
              "trader": {"equity": rows[-1]["equity"], "position": rows[-1]["position"]},
              "executor": {"version": v1}, "unresolved_faults": []}
    upload_paper(store.blobs, "eth", {
        "equity.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
        "trades.jsonl": "".join(json.dumps(f) + "\n" for f in fills).encode(),
        "health.json": json.dumps(health).encode()})
    perf = performance(np.array([r["equity"] for r in rows]),
                       np.array([r["position"] for r in rows]), BAR, fills=len(fills))
    last = rows[-1]
    cost_perf = performance(np.array([r["equity"] for r in rows]),
                            np.array([r["position"] for r in rows]), BAR,
                            fills=int(last["trades"]), fees=last["fees"],
                            slippage=last["slippage"], borrow=last["borrow"],
                            traded_notional=last["traded_notional"])
    return {"versions": (v1, v2), "paper_perf": perf, "paper_cost_perf": cost_perf,
            "fills": len(fills), "bars": bars,
            "evaluation": evals[-1][0], "curves": evals[-1][1],
            "live": seed_live(store.blobs, version=v1)}


HALTED_BY = "alice@example.com (dashboard login)"
"""Who halted the seeded ``btc`` live actor."""


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def live_export(actor: str, symbol: str, *, version: int, bars: int, network: str,
                venue: str, halted: dict[str, Any] | None, paper: bool, seed: int
                ) -> dict[str, Any]:
    """One live actor's export (``dashboard/live_records.py``): ``bars`` bars of equity
    (with paper's equity beside it when ``paper``), an order per position change (the
    market order's ``new`` state, then its ``filled`` one), a fill per order with paper's
    fill price on the same bar (a few basis points apart, both directions; the last fill
    unmatched when not ``paper``), a rejected order, one open limit order, and events.
    Returns the exported objects by file name."""
    rng = np.random.default_rng(seed)
    price = 1800 * np.exp(np.cumsum(rng.normal(0, 0.002, bars)))
    target = np.where(np.arange(bars) // 6 % 2 == 0, 0.5, 0.0)
    qty = np.zeros(bars)  # sized when the target changes, then held
    for i in range(bars):
        held = qty[i - 1] if i else 0.0
        changed = not i or target[i] != target[i - 1]
        qty[i] = round(target[i] * 10_000 / price[i], 4) if changed else held
    equity_rows, orders, fills, cash = [], [], [], 10_000.0
    for i in range(bars):
        ts = T0 + i * BAR
        change = float(qty[i] - (qty[i - 1] if i else 0.0))
        if change:
            side = "buy" if change > 0 else "sell"
            cid = f"{actor}-{ts}-{version}-0"
            paper_price = float(price[i])
            slip = float(rng.normal(2.0, 3.0))  # bps, positive: live paid more
            live_price = paper_price * (1 + (slip if side == "buy" else -slip) / 1e4)
            sent = ts + BAR
            new = {"client_order_id": cid, "symbol": symbol, "bar_ts": ts,
                   "version": version, "leg": 0, "side": side, "qty": abs(change),
                   "kind": "market", "limit_price": None, "reduce_only": side == "sell",
                   "status": "new", "venue_order_id": str(1000 + i), "filled_qty": 0.0,
                   "avg_price": None, "reason": "target change", "sent_ms": sent,
                   "ack_ms": sent + 4, "updated_ms": sent + 4}
            orders += [new, {**new, "status": "filled", "filled_qty": abs(change),
                             "avg_price": live_price, "updated_ms": sent + 9}]
            fills.append({"fill_id": f"{symbol}-{1000 + i}-1", "client_order_id": cid,
                          "symbol": symbol, "side": side, "qty": abs(change),
                          "price": live_price, "commission": abs(change) * live_price * 1e-3,
                          "commission_asset": "USDT", "at_ms": sent + 9, "bar_ts": ts,
                          "paper_price": paper_price, "slippage_bps": slip})
            cash -= change * live_price
        value = cash + float(qty[i] * price[i])
        equity_rows.append({"ts": ts, "equity": value, "cash": cash,
                            "position_qty": float(qty[i]), "target": float(target[i]),
                            "price": float(price[i]),
                            "paper_equity": value * 1.0005 if paper else None,
                            "pnl": value - 10_000.0})
    if not paper:
        fills[-1] = {**fills[-1], "paper_price": None, "slippage_bps": None}
    end = T0 + bars * BAR
    rejected = {**orders[0], "client_order_id": f"{actor}-{end}-{version}-0", "bar_ts": end,
                "status": "rejected", "venue_order_id": None, "ack_ms": None,
                "reason": "-2010 Account has insufficient balance for requested action.",
                "sent_ms": end + 100, "updated_ms": end + 150}
    open_order = {**orders[0], "client_order_id": f"{actor}-{end}-{version}-1",
                  "bar_ts": end, "kind": "limit", "limit_price": float(price[-1]) * 0.99,
                  "status": "new", "venue_order_id": "2000", "sent_ms": end + 200,
                  "ack_ms": end + 205, "updated_ms": end + 205}
    orders += [rejected, open_order]
    events = [{"at_ms": T0, "kind": "reconciled", "by": None,
               "detail": "balances, orders and position match the journal"},
              {"at_ms": end + 150, "kind": "risk", "by": None,
               "detail": "order rejected: insufficient balance"}]
    if halted:
        events.append({"at_ms": halted["at_ms"], "kind": "halt", "by": halted["by"],
                       "detail": halted["reason"]})
    last = equity_rows[-1]
    health = {"actor": actor, "symbol": symbol, "venue": venue,
              "market": "spot" if venue == "binance-spot" else "futures",
              "network": network, "dry_run": False, "state": "halted" if halted else "running",
              "updated_at": end / 1000 + 600, "halted": halted,
              "position_qty": last["position_qty"], "target": last["target"],
              "equity": last["equity"], "day_pnl": last["pnl"], "price": last["price"],
              "open_orders": [open_order], "stream_up": True,
              "last_reconcile": {"at_ms": end, "ok": True, "detail": "all match"},
              "order_latency_ms": {"p50": 4.0, "p99": 9.5}, "unresolved_faults": []}
    return {keys.LIVE_HEALTH: health, keys.LIVE_ORDERS: orders, keys.LIVE_FILLS: fills,
            keys.LIVE_EQUITY: equity_rows, keys.LIVE_EVENTS: events}


def seed_live(blobs: BlobStore, *, version: int = 1) -> dict[str, dict[str, Any]]:
    """Two live actors' exports under ``live/``: ``eth`` (testnet futures, trading, with
    paper's equity and fill prices) and ``btc`` (mainnet spot, halted by an operator,
    one fill paper did not match); returns each actor's objects by file name."""
    halt = {"kind": "operator", "reason": "exchange maintenance", "by": HALTED_BY,
            "at_ms": T0 + 41 * BAR}
    exports = {
        "eth": live_export("eth", "ETHUSDT", version=version, bars=60, network="testnet",
                           venue="binance-futures", halted=None, paper=True, seed=3),
        "btc": live_export("btc", "BTCUSDT", version=version, bars=40, network="mainnet",
                           venue="binance-spot", halted=halt, paper=False, seed=4)}
    for actor, files in exports.items():
        for name, content in files.items():
            data = (json.dumps(content).encode() if name == keys.LIVE_HEALTH
                    else _jsonl(content))
            blobs.put(keys.live_key(actor, name), data)
    return exports
