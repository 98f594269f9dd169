"""Builds what a paper session trades with: the journal, then (once the first policy is
known) the broker and trader, the venue's feed and REST backfill, the bar sequencers and
the joiner, all sharing the session's injected clock.

The venue comes from the registry (``actors/venues/registry.py``) by
``PaperConfig.venue``, or is injected (tests, other deployments): the factory asks it for
its market-data feed, REST history, symbol spelling and capabilities, and never looks at
its name. Bars are taken from REST only once closed (``watchdog.MarketClock``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from raytrade.actors.bar_joiner import BarJoiner
from raytrade.actors.bar_sequencer import BarSequencer
from raytrade.actors.events import MarketEvent
from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import BrokerConfig, PaperBroker
from raytrade.actors.paper_config import PaperConfig
from raytrade.actors.symbol_trader import SymbolTrader
from raytrade.actors.venues.protocol import MarketFeed, Subscription, Venue, VenueEndpoints
from raytrade.actors.venues.registry import build_venue
from raytrade.actors.watchdog import Clock, MarketClock
from raytrade.algos.manifest import BundleManifest
from raytrade.algos.policy import Policy
from raytrade.envs.bars import Bar
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.warmup import feature_warmup_bars
from raytrade.envs.intervals import interval_to_ms
from raytrade.envs.trade_bars import TradeBarBuilder

log = logging.getLogger(__name__)

Transitions = Callable[[npt.NDArray[np.float32], npt.NDArray[np.int64],
                        npt.NDArray[np.float32]], None]
"""Receives online-learning transitions: observations (n + 1), actions (n), rewards (n)."""


def broker_config(config: PaperConfig, manifest: BundleManifest) -> BrokerConfig:
    """Paper account settings: the policy's training costs, risk rules and latency."""
    env = manifest.env
    widest = max(abs(p) for p in env.positions)
    if widest > config.max_leverage:
        raise ConfigError(f"the policy's positions reach {widest:g}x equity but "
                          f"PaperConfig.max_leverage is {config.max_leverage:g}: every such "
                          "order would be rejected; raise max_leverage or trade a policy "
                          "trained within it")
    equity = env.initial_equity if config.initial_equity is None else config.initial_equity
    return BrokerConfig(initial_equity=equity, costs=env.costs, risk=env.risk,
                        latency_bars=env.latency_bars, max_leverage=config.max_leverage,
                        use_quote_spread=config.use_quote_spread)


def reference_symbol(config: PaperConfig, venue: Venue, spec_reference: str | None
                     ) -> str | None:
    """The venue symbol of the spec's reference asset: ``PaperConfig.reference_symbol``
    if set, else the venue's spelling of the spec's (None without a reference)."""
    if spec_reference is None or config.reference_symbol:
        return config.reference_symbol if spec_reference else None
    return venue.venue_symbol(spec_reference)


@dataclass(frozen=True)
class TradingParts:
    """What a session trades with once its first policy is known."""

    trader: SymbolTrader
    """The step on each closed bar; owns the broker and writes the journal."""
    joiner: BarJoiner
    """Pairs the traded symbol's bars with the reference's."""
    feed: MarketFeed
    """The venue's market-data feed for ``joiner.symbols``."""
    sequencers: Mapping[str, BarSequencer]
    """Per symbol: closed bars in order, gaps backfilled over REST."""
    trade_bars: Mapping[str, TradeBarBuilder]
    """Per symbol, on venues whose bars are built from trades; empty otherwise."""
    market: MarketClock
    """The venue's time: which REST bars have closed."""


class SessionFactory:
    """Builds a session's parts from its config (module docstring).

    ``venue`` defaults to the registry's ``config.venue`` at ``config.feed_url`` and
    ``config.rest_url``; ``clock`` (seconds) is the session's one clock; transitions go to
    ``push_transitions`` when ``config.online_learning``.
    """

    def __init__(self, config: PaperConfig, *, clock: Clock = time.time,
                 venue: Venue | None = None,
                 push_transitions: Transitions | None = None) -> None:
        self.config = config
        self.clock = clock
        self.venue = venue or build_venue(config.venue, VenueEndpoints(
            config.feed_url, config.rest_url, config.files_dir))
        self.push_transitions = push_transitions
        self.interval_ms = interval_to_ms(config.interval)

    def journal(self) -> Journal:
        """The actor's journal (``JournalError`` if locked or corrupt)."""
        return Journal(self.config.journal_path, synchronous=self.config.synchronous)

    def trader(self, policy: Policy, journal: Journal,
               policy_source: Callable[[], Policy | None]) -> SymbolTrader:
        """The broker and trader for ``policy``'s manifest, restored from ``journal``."""
        cfg = self.config
        broker = PaperBroker(broker_config(cfg, policy.manifest), cfg.symbol, cfg.actor)
        trader = SymbolTrader(cfg.symbol, policy.feature_spec, policy.manifest.env.window,
                              broker, journal, policy_source,
                              min_confidence=cfg.min_confidence,
                              rewards=policy.manifest.env, on_transitions=self.push_transitions
                              if cfg.online_learning else None)
        trader.restore()
        return trader

    def build(self, policy: Policy, journal: Journal,
              policy_source: Callable[[], Policy | None],
              on_event: Callable[[MarketEvent], None],
              on_gap: Callable[[str, int, int, str], None]) -> TradingParts:
        """Everything after the first policy: trader, feed, sequencers, joiner."""
        cfg = self.config
        venue = self.venue
        trader = self.trader(policy, journal, policy_source)
        spec = policy.feature_spec
        warmup = cfg.warmup_bars
        if warmup is None:
            warmup = feature_warmup_bars(spec, trader.window)
            log.info("%s: %d bars of warm-up history for FeatureSpec %s", cfg.actor,
                     warmup, spec.hash[:12])
        joiner = BarJoiner(cfg.symbol, reference_symbol(cfg, venue, spec.reference_symbol))
        from_trades = venue.capabilities.bar_source == "trades"
        subscription = Subscription(joiner.symbols, cfg.interval, trades=from_trades,
                                    quotes=cfg.use_quote_spread and
                                    venue.capabilities.quotes)
        feed = venue.feed(subscription, on_event, config=cfg.feed, clock=self.clock)
        market = MarketClock(self.clock, self.interval_ms, cfg.speed)
        history = venue.history()

        async def backfill(symbol: str, start: int, end: int) -> list[Bar]:
            as_of = market.now_ms()  # before the request: see MarketClock.closed
            bars = await history.fetch(symbol, cfg.interval, start, end)
            return market.closed(bars, as_of, feed.health)

        sequencers = {sym: BarSequencer(sym, self.interval_ms, backfill, feed.health,
                                        warmup_bars=warmup, last_ts=trader.last_ts,
                                        on_gap=on_gap)
                      for sym in joiner.symbols}
        trade_bars = {sym: TradeBarBuilder(self.interval_ms, sym)
                      for sym in joiner.symbols} if from_trades else {}
        return TradingParts(trader, joiner, feed, sequencers, trade_bars, market)
