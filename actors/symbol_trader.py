"""One symbol's trading step on a closed bar, synchronous and written once.

``SymbolTrader.process`` is what the paper actor does with each closed bar, in this order
(the order of the backtest's step, so the two agree):

1. streaming features of the bar (``StreamingFeatures``, the training pipeline);
2. the broker fills what is due at the bar's open and marks the account at its close;
3. the observation is built by ``envs.observation.write_observation`` from the last
   ``window`` feature rows, normalized with the *deciding* policy's own normalizer;
4. the policy decides (on ``live`` bars only; warm-up, catch-up and stale bars, or no
   policy, hold the last request: no new entries), through the bundle's decision rule
   (``envs/decision.py``): only on its decision bars (every ``k`` bars, epoch-aligned, as
   the training env steps), switching only when the Q advantage pays the rule's margin;
5. the shared risk rules turn the request into a target (``PaperBroker.decide``);
6. the bar, fill or rejection, account state and decision go to the journal in one
   transaction.

A decision uses exactly one policy version: the executor's current policy is read once
per bar and both normalizes and decides.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.actors.bar_sequencer import LIVE, WARMUP
from raytrade.actors.journal import Journal
from raytrade.actors.paper_broker import PaperBroker
from raytrade.actors.records import BarStep, DecisionRecord, StepOutcome
from raytrade.algos.policy import Policy
from raytrade.envs.accounting import EQUITY, HALTED, REQUESTED, TARGET, drawdown
from raytrade.envs.bars import Bar
from raytrade.envs.calendar import ALWAYS, TradingCalendar
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.errors import ConfigError
from raytrade.envs.features.pipeline import StreamingFeatures
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.observation import N_POSITION_STATE, write_observation
from raytrade.envs.rewards import REWARD_STATE_SIZE, reward_params, reward_step
from raytrade.envs.risk import EVENT_HALT

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class SymbolTrader:
    """See the module docstring. ``policy_source`` returns the policy to use now.

    ``rewards`` is the EnvConfig the policy trained in (``policy.manifest.env``): online
    learning computes each transition's reward with its reward kind, every one of its
    parameters and its scale, exactly as the training env did; it is required when
    ``on_transitions`` is given (a reward is never read with a default).
    """

    def __init__(self, symbol: str, spec: FeatureSpec, window: int, broker: PaperBroker,
                 journal: Journal, policy_source: Callable[[], Policy | None], *,
                 min_confidence: float = 0.0, rewards: EnvConfig | None = None,
                 on_transitions: Callable[[F32, npt.NDArray[np.int64],
                                           npt.NDArray[np.float32]], None] | None = None,
                 chunk: int = 64, calendar: TradingCalendar = ALWAYS) -> None:
        self.symbol = symbol
        self.spec = spec
        self.spec_hash = spec.hash
        """``spec.hash``, journaled with every decision: computed once (it serializes and
        hashes the whole spec, a frozen dataclass)."""
        self.window = window
        self.broker = broker
        self.journal = journal
        self.policy_source = policy_source
        self.min_confidence = min_confidence
        self.calendar = calendar
        """The market's trading calendar (``policy.manifest.env.calendar``)."""
        self.features = StreamingFeatures(spec, calendar)  # closures skipped, not gaps
        self.rows: deque[F32] = deque(maxlen=window)
        self.last_ts: int | None = None
        if on_transitions is not None and rewards is None:
            raise ConfigError(f"{symbol}: online learning needs the policy's EnvConfig "
                              "(rewards=policy.manifest.env) to compute its rewards")
        self.rewards = rewards
        self._reward_params = reward_params(rewards) if rewards is not None else None
        self._rstate = np.zeros(REWARD_STATE_SIZE)
        self.on_transitions = on_transitions
        self.chunk = chunk
        self._obs: list[F32] = []
        self._actions: list[int] = []
        self._rewards: list[float] = []
        self._pending_reward = 0.0

    # ---- restart
    def restore(self) -> int:
        """Rebuild features and account from the journal alone; return bars replayed."""
        journaled = self.journal.bars(self.symbol)
        if not journaled:
            return 0
        ts = np.array([b.ts for b, _, _ in journaled], dtype=np.int64)
        ohlcv = np.array([[b.open, b.high, b.low, b.close, b.volume] for b, _, _ in journaled])
        ref = None
        if self.spec.reference_symbol:
            ref = np.array([np.nan if r is None else r for _, r, _ in journaled])
        raw = self.features.update_many(ts, ohlcv, ref)
        for row in raw[-self.window:]:
            self.rows.append(row.copy())
        last = self.journal.last_account(self.symbol)
        after = -1
        if last is not None:
            after, state = last
            self.broker.restore(state)
        for bar, _, _ in journaled:
            if bar.ts > after:
                self.broker.observe(bar)  # warm-up bars carry no account row
        self.last_ts = int(ts[-1])
        log.info("%s: restored %d bars from the journal (equity %.2f, position %g)",
                 self.symbol, len(journaled), self.broker.equity, self.broker.position)
        return len(journaled)

    # ---- the step
    def process(self, bar: Bar, kind: str, ref_close: float | None = None) -> StepOutcome:
        """Run one closed bar through the step (module docstring)."""
        if self.last_ts is not None and bar.ts <= self.last_ts:
            return StepOutcome(bar, kind, None, None, None, None, False, False)
        ref = None
        if self.spec.reference_symbol:
            ref = Bar(bar.ts, ref_close or math.nan, ref_close or math.nan,
                      ref_close or math.nan, ref_close or math.nan, 0.0)
        row = self.features.update(bar, ref)
        self.rows.append(row)
        broker = self.broker
        started = broker.decisions > 0
        result = broker.on_bar(bar)
        if kind == WARMUP and not started:
            self.last_ts = bar.ts
            recorded = self.journal.record(BarStep(self.symbol, bar, ref_close, kind, None,
                                                   None, None, None, None, None))
            return StepOutcome(bar, kind, None, None, None, None, False, recorded)
        if started:
            self._collect_reward()
        decision = self._decide(bar, kind)
        acct = broker.acct
        halted = acct[HALTED] != 0.0
        step = BarStep(self.symbol, bar, ref_close, kind, result,
                       float(acct[EQUITY]), float(acct[TARGET]), decision.version,
                       broker.state(), decision)
        recorded = self.journal.record(step)
        self.last_ts = bar.ts
        return StepOutcome(bar, kind, decision, result, float(acct[EQUITY]),
                           float(drawdown(acct)), halted, recorded)

    def _decide(self, bar: Bar, kind: str) -> DecisionRecord:
        broker = self.broker
        policy = self.policy_source()
        hold = float(broker.acct[REQUESTED])
        version = None if policy is None else policy.version
        window = np.array(self.rows) if len(self.rows) == self.window else None
        reason = ""
        if policy is None:
            reason = "no validated policy: holding"
        elif kind != LIVE:
            reason = f"{kind} bar: holding (no new entries)"
        elif window is None or not np.isfinite(window).all():
            reason = "features warming up: holding"
        if not reason and policy is not None and not policy.decides_at(bar.ts):
            decided, event = broker.decide(hold, bar.close)  # between decision bars
            return DecisionRecord(version, None, hold, decided, event, None, (), None, True,
                                  f"between decision bars (every "
                                  f"{policy.decision_rule.every_bars}): holding",
                                  self.spec_hash)
        self._close_reward()
        if reason:
            self._cut_chunk()
            decided, event = broker.decide(hold, bar.close)
            return DecisionRecord(version, None, hold, decided, event, None, (), None, True,
                                  reason, self.spec_hash)
        assert policy is not None and window is not None
        obs = self.observation(policy, window, bar.close)
        d = policy.decide(obs, current_position=broker.position,
                          min_confidence=self.min_confidence)
        decided, event = broker.decide(d.position, bar.close)
        if event == EVENT_HALT:
            reason = "drawdown halt: flat for good"
        self._remember(obs, d.action)
        return DecisionRecord(d.version, d.action, d.position, decided, event, d.greedy_action,
                              d.q_values, d.confidence, d.held,
                              reason or (f"{d.why}: held" if d.held else d.why),
                              self.spec_hash)

    def observation(self, policy: Policy, window: F32, close: float) -> F32:
        """The policy's observation of the current state (``write_observation``)."""
        z = policy.normalizer.transform(window)
        obs = np.empty(self.window * z.shape[1] + N_POSITION_STATE, dtype=np.float32)
        write_observation(np.ascontiguousarray(z), self.window - 1, self.window,
                          self.broker.acct, close, obs)
        return obs

    # ---- online learning
    def _collect_reward(self) -> None:
        """Add this bar's reward to the open transition's; a transition's reward is the
        sum over the bars from its decision to the next decision bar, as the training env
        sums them (``env_kernel.env_step_one``)."""
        if self._reward_params is None:
            return
        value = reward_step(self.broker.acct, self._rstate, self._reward_params)
        if self._actions and len(self._rewards) < len(self._actions):
            self._pending_reward += float(value)

    def _close_reward(self) -> None:
        """At a decision bar: the open transition's summed reward is complete."""
        if self._actions and len(self._rewards) < len(self._actions):
            self._rewards.append(self._pending_reward)
        self._pending_reward = 0.0

    def _remember(self, obs: F32, action: int) -> None:
        """Transitions chain consecutive policy decisions: ``obs[i]``, ``actions[i]``,
        ``rewards[i]`` (known at the next bar) and ``obs[i + 1]``."""
        if self.on_transitions is None:
            return
        self._obs.append(obs)
        if len(self._actions) == self.chunk:
            self._push(len(self._actions))
            self._obs, self._actions, self._rewards = [obs], [], []
        self._actions.append(action)

    def _cut_chunk(self) -> None:
        """A hold breaks the chain: push the transitions whose next observation exists."""
        self._push(len(self._actions) - 1)
        self._obs, self._actions, self._rewards = [], [], []

    def _push(self, n: int) -> None:
        if self.on_transitions is None or n <= 0 or len(self._rewards) < n:
            return
        try:
            self.on_transitions(np.asarray(self._obs[:n + 1]),
                                np.asarray(self._actions[:n], dtype=np.int64),
                                np.asarray(self._rewards[:n], dtype=np.float32))
        except Exception:  # learning is optional: never stop trading for it
            log.exception("%s: pushing live transitions failed", self.symbol)

    def status(self) -> dict[str, Any]:
        """Plain-JSON state for health exports."""
        acct = self.broker.acct
        return {"symbol": self.symbol, "last_ts": self.last_ts,
                "equity": float(acct[EQUITY]), "position": float(acct[TARGET]),
                "drawdown": float(drawdown(acct)), "halted": bool(acct[HALTED] != 0.0),
                "decisions": self.broker.decisions}

