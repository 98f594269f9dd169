"""Which bars a backtest decides on, and which reference-asset bars its features read.

A backtest plays each file whole by default. ``Selection`` narrows the decisions to one
split, cut by the fractions the policy trained with (the manifest's ``data``, so on the
training file ``test`` is the test split of training), or to a date range; features are
still computed from each file's first bar, so the bars before the selection feed the
warm-up causally, and ``decision_range`` reports the first decision bar and the warm-up
it took. ``resolve_reference`` finds the reference asset's bars when none is given: a
traded file of that symbol, or the manifest's own reference or training source of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from raytrade.algos.policy import Policy
from raytrade.envs.decision import decision_bars
from raytrade.envs.episodes import bar_interval_ms, first_decision_bar
from raytrade.envs.errors import ConfigError, RaytradeError
from raytrade.envs.intervals import duration_text
from raytrade.envs.io import load_bars
from raytrade.envs.market import SPLITS, MarketData, resolve_sources, restrict_range
from raytrade.envs.sample import sample_path


@dataclass(frozen=True)
class Selection:
    """The bars a backtest decides on: a split, or a date range (module docstring)."""

    split: str = "all"
    """``train``, ``validation``, ``test`` (by the manifest's fractions) or ``all``."""
    start_ms: int | None = None
    """First open time of the range, ms UTC (None: the data's first bar)."""
    end_ms: int | None = None
    """End of the range (exclusive), ms UTC (None: the end of the data)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got "
                              f"{self.split!r}")
        ranged = self.start_ms is not None or self.end_ms is not None
        if ranged and self.split != "all":
            raise ConfigError(f"--split {self.split} and --start/--end both select bars: "
                              "give one of them")
        if self.start_ms is not None and self.end_ms is not None \
                and not self.start_ms < self.end_ms:
            raise ConfigError(f"--start ({utc(self.start_ms)}) must be before --end "
                              f"({utc(self.end_ms)})")

    @property
    def ranged(self) -> bool:
        """True for a date range."""
        return self.start_ms is not None or self.end_ms is not None


def utc(ms: int) -> str:
    """``ms`` UTC as ``YYYY-MM-DD HH:MM UTC``."""
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC"


def parse_time(flag: str, text: str) -> int:
    """``--start``/``--end`` value: ms UTC (digits) or an ISO date or date-time (UTC unless
    it carries an offset) -> ms UTC; ``ConfigError`` naming ``flag`` otherwise."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an ISO date (2025-06-01, "
                          "2025-06-01T12:00) or milliseconds since the epoch (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def resolve_reference(policy: Policy, sources: Sequence[str], reference: str | None
                      ) -> str | None:
    """The reference-asset bars for the policy's features, when ``reference`` is not given.

    None when the features use no reference, or when a traded file is the reference
    symbol itself (``market.load_markets`` takes it from the sources). Otherwise the
    manifest's own reference, or the source of its training data that holds the reference
    symbol, when it can be read here.

    Raises:
        ConfigError: the features need a reference and none of the above resolves; says
            what was looked for.
    """
    symbol = policy.feature_spec.reference_symbol
    if reference is not None or not symbol:
        return reference
    calendar = policy.manifest.env.calendar
    if any(load_bars(path, calendar=calendar).symbol == symbol
           for path in resolve_sources(tuple(sources))
           if not path.startswith("synthetic:")):
        return None
    data = policy.manifest.data
    tried = []
    for candidate in ([data.reference] if data and data.reference else []) + \
            list(data.sources if data else ()):
        tried.append(candidate)
        try:
            path = resolve_sources((candidate,))[0]
            if not path.startswith("synthetic:") and \
                    load_bars(path, calendar=calendar).symbol == symbol:
                return path
        except RaytradeError:
            continue
    try:
        sample_path(symbol)
        bundled = f" (or the bundled sample: --reference sample:{symbol})"
    except RaytradeError:
        bundled = ""
    looked = f"nor do the manifest's data sources ({', '.join(tried)})" if tried else \
        "and the manifest records no training data to take it from"
    raise ConfigError(f"the policy's features need {symbol} bars as reference: no traded "
                      f"file is {symbol}, {looked} resolve to {symbol} bars here; give "
                      f"--reference FILE{bundled}")


def select(markets: Sequence[MarketData], selection: Selection) -> list[MarketData]:
    """Restrict each market's decisions to ``selection``'s date range (a split is applied
    by ``load_markets``); the range must lie inside every dataset.

    Raises:
        ConfigError: ``--start`` or ``--end`` outside a dataset, naming the flag and the
            dataset's span.
        DataError: no decision bar left in the range after the warm-up.
    """
    if not selection.ranged:
        return list(markets)
    out = []
    for m in markets:
        lo, hi = int(m.ts[0]), int(m.ts[-1]) + bar_interval_ms(m)
        span = f"{m.name} holds {utc(lo)} .. {utc(hi)}"
        start = lo if selection.start_ms is None else selection.start_ms
        end = hi if selection.end_ms is None else selection.end_ms
        if not lo <= start < hi:
            raise ConfigError(f"--start {utc(start)} is outside the data: {span}")
        if not lo < end <= hi:
            raise ConfigError(f"--end {utc(end)} is outside the data: {span}")
        if not start < end:
            raise ConfigError(f"--start ({utc(start)}) must be before --end ({utc(end)})")
        out.append(restrict_range(m, start, end))
    return out


def decision_range(market: MarketData, window: int, selection: Selection,
                   every_bars: int = 1) -> dict[str, Any]:
    """Which bars ``market`` decides on and the warm-up before the first one.

    With a decision interval (``every_bars``, the bundle's ``env.decision``) the first
    decision is the first decision bar at or after the first complete window (as the env
    plays it, ``episodes.first_decision_bar``), and ``decisions`` counts decision bars.

    ``warmup_bars`` counts the bars before the earliest bar that could decide: the
    features' warm-up (``feature_warmup_bars``, until every feature is finite) plus the
    ``window - 1`` earlier rows the observation holds. Indices are bars of the prepared
    series (after any resampling to the policy's interval).
    """
    interval = bar_interval_ms(market)  # the median step: a weekend does not change it
    warm = market.first_valid + window - 1
    first = first_decision_bar(market, market.first, every_bars)
    hits = np.flatnonzero(decision_bars(market.ts[first:market.last + 1], interval,
                                        every_bars))
    decisions, last = len(hits), first + int(hits[-1])
    if selection.ranged:
        lo = 0 if selection.start_ms is None else int(np.searchsorted(market.ts,
                                                                      selection.start_ms))
    else:
        lo = 0 if market.split == "all" else getattr(market.splits, market.split).start
    return {"selection": market.split if not selection.ranged else "range",
            "selected_from_ms": int(market.ts[lo]),
            "first_decision_bar": first, "first_decision_ms": int(market.ts[first]),
            "first_decision_utc": utc(int(market.ts[first])),
            "last_decision_bar": last, "last_decision_ms": int(market.ts[last]),
            "last_decision_utc": utc(int(market.ts[last])),
            "decisions": decisions, "every_bars": every_bars,
            "interval": duration_text(interval),
            "feature_warmup_bars": market.first_valid, "window": window,
            "warmup_bars": warm, "warmup": duration_text(warm * interval),
            "warmup_in_selection_bars": max(0, first - lo)}


def header_lines(decisions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The decision range of every dataset (``decision_range``), for people (``raytrade
    backtest`` prints it)."""
    lines = []
    for name, d in decisions.items():
        label = {"all": "all bars", "range": "date range"}.get(
            d["selection"], f"{d['selection']} split")
        lines.append(f"{name}: {label} from {utc(d['selected_from_ms'])} "
                     f"({d['interval']} bars)")
        lines.append(f"  warm-up: {d['warmup_bars']} bars ({d['warmup']}): features complete "
                     f"at bar {d['feature_warmup_bars']}, window {d['window']}"
                     + (f"; {d['warmup_in_selection_bars']} selected bars went to warm-up"
                        if d["warmup_in_selection_bars"] else ""))
        lines.append(f"  first decision: bar {d['first_decision_bar']}, "
                     f"{d['first_decision_utc']}; last: bar {d['last_decision_bar']}, "
                     f"{d['last_decision_utc']}; {d['decisions']} decisions")
    return lines
