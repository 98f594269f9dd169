"""``raytrade dwx sim``: the simulated DWX Connect EA (``actors/simulators/dwx_ea.py``) on a
folder, argument parsing only.

It plays the MetaTrader 4 side of the DWX Connect file protocol in ``FILES_DIR/DWX`` (point
a client at ``FILES_DIR`` as it would be pointed at a terminal's ``MQL4/Files``), replaying
real bars as the market. The command prints one JSON line (the folder, the truth file, the
symbol) once the EA is running, then serves until SIGINT or SIGTERM (which stop the EA as
MetaTrader does: its files are deleted). Run it again on the same folder to resume the
account and its orders, as a terminal does after a crash.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from types import FrameType


def _cmd_dwx_sim(args: argparse.Namespace) -> int:
    from raytrade.actors.simulators.dwx_ea import SimulatedEa
    from raytrade.actors.simulators.dwx_ea_bars import load_ea_bars
    from raytrade.actors.simulators.dwx_ea_broker import BrokerSpec
    from raytrade.actors.simulators.dwx_ea_faults import load_ea_faults
    from raytrade.actors.simulators.dwx_ea_files import EaSettings
    from raytrade.envs.errors import ConfigError

    symbol = args.symbol.upper()
    if len(symbol) < 6:
        raise ConfigError(f"--symbol {symbol!r}: expected a forex pair such as EURUSD")
    for name in ("bar_seconds", "balance", "contract_size", "min_lot", "max_lot", "lot_step",
                 "maximum_lot_size"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be above 0")
    if args.leverage < 1 or args.maximum_orders < 1 or args.timer_ms < 1:
        raise ConfigError("--leverage, --maximum-orders and --timer-ms must be >= 1")
    if args.spread_points < 0 or args.commission_per_lot < 0 or not 0 <= args.digits <= 8:
        raise ConfigError("--spread-points and --commission-per-lot must be >= 0, --digits "
                          "in 0..8")
    if args.min_lot > args.max_lot:
        raise ConfigError(f"--min-lot {args.min_lot} is above --max-lot {args.max_lot}")
    bars = load_ea_bars(args.bars, args.timeframe)
    spec = BrokerSpec(symbol=symbol, digits=args.digits, contract_size=args.contract_size,
                      min_lot=args.min_lot, max_lot=args.max_lot, lot_step=args.lot_step,
                      leverage=args.leverage, spread_points=args.spread_points,
                      slippage_points=args.slippage_points,
                      commission_per_lot=args.commission_per_lot,
                      currency=(args.currency or symbol[3:6]).upper(),
                      account_number=args.account_number, account_name=args.account_name,
                      account_kind=args.account)
    start_bar = args.start_bar if args.start_bar is not None else min(200, len(bars) - 1)
    settings = EaSettings(files_dir=Path(args.files_dir), bar_seconds=args.bar_seconds,
                          start_bar=start_bar, timer_ms=args.timer_ms,
                          maximum_orders=args.maximum_orders,
                          maximum_lot_size=args.maximum_lot_size,
                          server_utc_offset_h=args.server_utc_offset_hours,
                          trade_mode_field=args.trade_mode_field, encoding=args.encoding,
                          balance=args.balance, pace=args.pace,
                          start_on_subscribe=args.start_on_subscribe)
    faults = load_ea_faults(args.faults) if args.faults else ()
    ea = SimulatedEa(settings, spec, bars, faults)
    stopping: list[bool] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stopping.append(True)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def _ready() -> None:
        print(json.dumps({"files_dir": str(settings.files_dir),
                          "dwx_dir": str(settings.dwx_dir),
                          "state_file": str(settings.state_path), "symbol": symbol,
                          "timeframe": args.timeframe, "server_time": ea.broker.server_time,
                          "resumed": ea.resumed}), flush=True)

    ea.run(lambda: bool(stopping), on_ready=_ready)
    return 0


def add_dwx_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dwx sim``."""
    dwx = sub.add_parser("dwx", help="MetaTrader 4/5 through DWX Connect: the EA simulator")
    dsub = dwx.add_subparsers(dest="dwx_command", required=True)
    sim = dsub.add_parser("sim", allow_abbrev=False,
                          help="play the DWX Connect EA (MT4) on a folder, replaying bars")
    sim.add_argument("--files-dir", required=True, metavar="DIR",
                     help="the folder a client treats as MetaTrader's MQL4/Files (the EA "
                          "works in its DWX subfolder)")
    sim.add_argument("--bars", required=True, metavar="FILE",
                     help="OHLCV bars to replay (CSV/Parquet; weekends may be missing)")
    sim.add_argument("--symbol", default="EURUSD", help="the one symbol traded (default "
                     "EURUSD; the account currency is its quote currency)")
    sim.add_argument("--timeframe", default="H1", help="the bars' MetaTrader timeframe: M1 M5 "
                     "M15 M30 H1 H4 D1 W1 MN1 (default H1)")
    sim.add_argument("--bar-seconds", type=float, default=1.0,
                     help="wall-clock seconds per replayed bar (default 1)")
    sim.add_argument("--start-bar", type=int, help="index of the first forming bar; earlier "
                     "bars are history (default: 200, or the last bar of a shorter file)")
    sim.add_argument("--pace", choices=("bars", "clock"), default="bars",
                     help="bars: each bar takes --bar-seconds and closures (weekends) pass at "
                          "once; clock: wall time follows server time, so the market is "
                          "closed for --bar-seconds per missing bar (default bars)")
    sim.add_argument("--start-on-subscribe", action="store_true",
                     help="hold the replay on --start-bar until a client first subscribes "
                          "to bar data (a slow client still sees every bar)")
    sim.add_argument("--faults", metavar="FILE", help="JSON {\"faults\": [{\"kind\": "
                     "leave_unread|half_written|reject|restart, \"at_command\": N, ...}]}")
    acct = sim.add_argument_group("account")
    acct.add_argument("--account", choices=("demo", "real"), default="demo",
                      help="the account's kind (the real EA does not print it; see "
                           "--trade-mode-field)")
    acct.add_argument("--trade-mode-field", action="store_true",
                      help="append \"trade_mode\" to account_info (an EA patch, not the "
                           "stock EA)")
    acct.add_argument("--balance", type=float, default=10_000.0, help="first deposit")
    acct.add_argument("--currency", help="account currency (default: the symbol's quote)")
    acct.add_argument("--leverage", type=int, default=100)
    acct.add_argument("--account-number", type=int, default=7_000_001)
    acct.add_argument("--account-name", default="raytrade simulator")
    sym = sim.add_argument_group("symbol")
    sym.add_argument("--contract-size", type=float, default=100_000.0,
                     help="units of the base currency per lot (default 100000)")
    sym.add_argument("--digits", type=int, default=5, help="price digits (default 5)")
    sym.add_argument("--spread-points", type=int, default=10, help="ask minus bid (default 10)")
    sym.add_argument("--commission-per-lot", type=float, default=0.0,
                     help="account currency per lot, charged at the open (default 0)")
    sym.add_argument("--min-lot", type=float, default=0.01)
    sym.add_argument("--max-lot", type=float, default=100.0)
    sym.add_argument("--lot-step", type=float, default=0.01)
    ea = sim.add_argument_group("EA inputs")
    ea.add_argument("--maximum-orders", type=int, default=1,
                    help="MaximumOrders (the EA's default: 1)")
    ea.add_argument("--maximum-lot-size", type=float, default=0.01,
                    help="MaximumLotSize (the EA's default: 0.01)")
    ea.add_argument("--slippage-points", type=int, default=3, help="SlippagePoints (3)")
    ea.add_argument("--timer-ms", type=int, default=25, help="MILLISECOND_TIMER (25)")
    ea.add_argument("--server-utc-offset-hours", type=float, default=0.0,
                    help="the broker's server clock minus UTC (default 0)")
    ea.add_argument("--encoding", choices=("ansi", "utf-16"), default="ansi",
                    help="encoding of the EA's files (default ansi)")
    sim.set_defaults(func=_cmd_dwx_sim)
