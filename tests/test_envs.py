"""The trading environments: spaces, parity with the backtest, episode ends, rewards."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from raytrade.envs.accounting import ENTRY, EQUITY, PEAK, PREV_EQUITY, new_account
from raytrade.envs.costs import CostModel
from raytrade.envs.env_config import EnvConfig
from raytrade.envs.env_spec import EnvSpec
from raytrade.envs.errors import ConfigError, DataError
from raytrade.envs.execution import simulate
from raytrade.envs.features.spec import FeatureSpec
from raytrade.envs.io import load_bars
from raytrade.envs.market import M_CLOSE, load_markets
from raytrade.envs.multi_dataset_env import MultiDatasetTradingEnv
from raytrade.envs.registration import MULTI_ID, TRADING_ID, make_env
from raytrade.envs.resample import align
from raytrade.envs.rewards import REWARD_STATE_SIZE, reward_params, reward_step
from raytrade.envs.risk import RiskConfig
from raytrade.envs.sample import sample_path
from raytrade.envs.trading_env import TradingEnv
from raytrade.envs.vector_env import VectorTradingEnv

ETH = "sample:ETHUSDT"
BOTH = ("sample:ETHUSDT", "sample:BTCUSDT")
SMALL = {"window": 8, "max_episode_steps": 300}


@pytest.fixture(scope="module")
def eth_markets():  # type: ignore[no-untyped-def]
    return load_markets(ETH, window=8)


@pytest.mark.parametrize(("env_id", "data"), [(TRADING_ID, ETH), (MULTI_ID, list(BOTH))])
@pytest.mark.parametrize("reward", ["log_return", "differential_sharpe", "drawdown_penalized",
                                    "turnover_penalty"])
def test_check_env_passes_with_no_warnings(env_id: str, data: object, reward: str) -> None:
    env = gym.make(env_id, data=data, config={**SMALL, "reward": reward})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("positions", [(-1.0, 0.0, 1.0), (-1.0, -0.5, 0.0, 0.5, 1.0),
                                       (0.0, 1.0, 2.0)])
def test_env_equity_equals_backtest_of_the_same_actions(positions: tuple[float, ...]) -> None:
    cfg = EnvConfig(positions=positions, window=8, max_episode_steps=None, random_start=False,
                    costs=CostModel(borrow_bps_per_bar=0.02),
                    risk=RiskConfig(max_drawdown=1.0))
    env = TradingEnv(data=ETH, split="validation", config=cfg)
    obs, info = env.reset(seed=1)
    start = info["bar"]
    rng = np.random.default_rng(0)
    actions = np.repeat(rng.integers(0, len(positions), size=400), 7)
    equity = [info["equity"]]
    for a in actions:
        obs, _, terminated, truncated, info = env.step(a)
        equity.append(info["equity"])
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            break
    eth, _ = align([load_bars(sample_path("ETHUSDT")), load_bars(sample_path("BTCUSDT"))])
    targets = np.zeros(len(eth))
    n = len(equity) - 1
    targets[start:start + n] = np.asarray(positions)[actions[:n]]
    ref = simulate(eth, targets, costs=cfg.costs, risk=cfg.risk, start=start)
    np.testing.assert_allclose(equity, ref.equity[start:start + n + 1], rtol=1e-12)


def test_observation_is_window_of_normalized_features_plus_position_state(eth_markets) -> None:
    markets, _ = eth_markets
    m = markets[0]
    env = TradingEnv(markets, config={**SMALL, "random_start": False})
    obs, info = env.reset(seed=0)
    t = info["bar"]
    window = m.z[t - 7:t + 1].ravel()
    np.testing.assert_array_equal(obs[:-4], window)
    np.testing.assert_array_equal(obs[-4:], [0, 0, 0, 0])
    obs, _, _, _, info = env.step(2)  # long
    np.testing.assert_array_equal(obs[:-4], m.z[t - 6:t + 2].ravel())
    entry = env._acct[ENTRY]
    assert m.market[0, t + 1] < entry < m.market[0, t + 1] * 1.006  # open plus slippage
    expected = [1.0, np.clip(100 * (m.market[M_CLOSE, t + 1] / entry - 1), -10, 10),
                math.log1p(1) / 7, 10 * info["drawdown"]]
    np.testing.assert_allclose(obs[-4:], np.float32(expected), rtol=1e-6, atol=1e-7)


def test_vector_env_equals_n_scalar_envs(eth_markets) -> None:
    markets, _ = eth_markets
    cfg = EnvConfig(window=8, max_episode_steps=40, risk=RiskConfig(max_drawdown=0.02),
                    costs=CostModel(fee_bps=30))
    n = 8
    vec = VectorTradingEnv(n, markets, config=cfg)
    scalars = [TradingEnv(markets, config=cfg) for _ in range(n)]
    vobs, _ = vec.reset(seed=123)
    sobs = [env.reset(seed=123 + i)[0] for i, env in enumerate(scalars)]
    np.testing.assert_array_equal(vobs, np.stack(sobs))
    rng = np.random.default_rng(5)
    pending_reset = [False] * n
    ends = 0
    for _ in range(300):
        actions = rng.integers(0, 3, size=n)
        vobs, vrew, vterm, vtrunc, vinfo = vec.step(actions)
        for i, env in enumerate(scalars):
            if pending_reset[i]:  # NEXT_STEP autoreset: the action is ignored
                obs, _ = env.reset()
                rew, term, trunc = 0.0, False, False
                pending_reset[i] = False
            else:
                obs, rew, term, trunc, info = env.step(actions[i])
                assert vinfo["equity"][i] == info["equity"]
                pending_reset[i] = term or trunc
                ends += term or trunc
            np.testing.assert_array_equal(vobs[i], obs)
            assert vrew[i] == rew and vterm[i] == term and vtrunc[i] == trunc
    assert ends > n  # episodes ended (both ways) and restarted many times


def test_episode_ends(eth_markets) -> None:
    markets, _ = eth_markets
    env = TradingEnv(markets, config={"window": 8, "max_episode_steps": 5})
    env.reset(seed=0)
    flags = [env.step(1)[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]
    m = markets[0]
    env = TradingEnv(markets, config={"window": 8, "max_episode_steps": None})
    env.reset(options={"start": m.last - 2})
    outcomes = [env.step(1)[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (False, True)]
    halting = TradingEnv(markets, config={"window": 8, "positions": (0.0, 5.0),
                                          "risk": {"max_drawdown": 0.01}})
    halting.reset(seed=3)
    for _ in range(2000):
        _, _, terminated, truncated, info = halting.step(1)
        if terminated or truncated:
            break
    assert terminated and info["position"] == 0.0 and info["drawdown"] >= 0.01


def test_multi_dataset_env_draws_each_dataset() -> None:
    env = MultiDatasetTradingEnv(data=list(BOTH), config=SMALL)
    seen = {env.reset(seed=s)[1]["dataset"] for s in range(20)}
    assert seen == {"ETHUSDT", "BTCUSDT"}
    _, info = env.reset(options={"dataset": 1})
    assert info["dataset"] == "BTCUSDT"
    with pytest.raises(ConfigError, match="MultiDatasetTradingEnv"):
        TradingEnv(data=list(BOTH), config=SMALL)


def test_rewards_follow_their_definitions(eth_markets) -> None:
    markets, _ = eth_markets
    base = TradingEnv(markets, config={**SMALL, "reward": "log_return"})
    turn = TradingEnv(markets, config={**SMALL, "reward": "turnover_penalty",
                                       "turnover_penalty": 0.01})
    dd = TradingEnv(markets, config={**SMALL, "reward": "drawdown_penalized",
                                     "drawdown_penalty": 2.0})
    dsr = TradingEnv(markets, config={**SMALL, "reward": "differential_sharpe",
                                      "dsr_eta": 0.05})
    dsr_reference = DifferentialSharpe(0.05)
    scaled = TradingEnv(markets, config={**SMALL, "reward_scale": 100.0})
    for env in (base, turn, dd, dsr, scaled):
        env.reset(seed=9)
    prev_pos, prev_dd, prev_equity = 0.0, 0.0, 10_000.0
    for a in [2, 2, 0, 0, 1, 2, 2, 2, 0, 1] * 5:
        _, r0, *_, info = base.step(a)
        _, r1, *_ = turn.step(a)
        _, r2, *_ = dd.step(a)
        _, r3, *_ = dsr.step(a)
        ret = info["equity"] / prev_equity - 1.0
        assert r3 == pytest.approx(dsr_reference.step(ret), rel=1e-9, abs=1e-12)
        assert r0 == pytest.approx(math.log(info["equity"] / prev_equity), rel=1e-12)
        assert r1 == pytest.approx(r0 - 0.01 * abs(info["position"] - prev_pos), rel=1e-12)
        assert r2 == pytest.approx(r0 - 2.0 * max(0.0, info["drawdown"] - prev_dd), rel=1e-12)
        _, r4, *_ = scaled.step(a)
        assert r4 == pytest.approx(100.0 * r0, rel=1e-12)
        prev_pos, prev_dd, prev_equity = info["position"], info["drawdown"], info["equity"]
    assert base._acct[EQUITY] != 10_000.0
    assert sum(1 for d in dsr_reference.values if d != 0.0) > 20, "the DSR was exercised"


class DifferentialSharpe:
    """Moody and Saffell's differential Sharpe ratio, written out independently of
    ``rewards.py``: with moving moments ``A`` (mean) and ``B`` (second moment) of the
    returns ``R``, ``D_t = (B_{t-1} dA - A_{t-1} dB / 2) / (B_{t-1} - A_{t-1}^2)^{3/2}`` with
    ``dA = R_t - A_{t-1}`` and ``dB = R_t^2 - B_{t-1}``, then ``A += eta dA``,
    ``B += eta dB``; 0 while the variance is not positive, clipped to +/-10."""

    def __init__(self, eta: float) -> None:
        self.eta, self.a, self.b = eta, 0.0, 0.0
        self.values: list[float] = []

    def step(self, r: float) -> float:
        var = self.b - self.a ** 2
        d = 0.0
        if var > 1e-18:
            d = (self.b * (r - self.a) - 0.5 * self.a * (r * r - self.b)) / var ** 1.5
        d = max(-10.0, min(10.0, d))
        self.a += self.eta * (r - self.a)
        self.b += self.eta * (r * r - self.b)
        self.values.append(d)
        return d


def _dsr_kernel(returns: list[float], eta: float) -> list[float]:
    """``rewards.reward_step`` of the differential Sharpe ratio on a return sequence."""
    acct = new_account(1.0)
    rstate = np.zeros(REWARD_STATE_SIZE)
    params = reward_params(EnvConfig(reward="differential_sharpe", dsr_eta=eta))
    out = []
    for r in returns:
        acct[PREV_EQUITY] = acct[EQUITY]
        acct[EQUITY] = acct[EQUITY] * (1.0 + r)
        acct[PEAK] = max(acct[PEAK], acct[EQUITY])
        out.append(reward_step(acct, rstate, params))
    return out


def test_differential_sharpe_matches_the_hand_derived_values() -> None:
    # eta = 0.5, returns +1 %, -1 %: step 1 has no variance yet (0); then A = 0.005,
    # B = 5e-5, so dA = -0.015, dB = 5e-5, var = 2.5e-5 and
    # D = (5e-5 * -0.015 - 0.5 * 0.005 * 5e-5) / (2.5e-5)^1.5 = -8.75e-7 / 1.25e-7 = -7
    out = _dsr_kernel([0.01, -0.01, 0.02], 0.5)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(-7.0, rel=1e-6)
    # step 3: A = -0.0025, B = 7.5e-5: (7.5e-5 * 0.0225 + 0.5 * 0.0025 * 3.25e-4)
    # / (6.875e-5)^1.5
    assert out[2] == pytest.approx((7.5e-5 * 0.0225 + 0.5 * 0.0025 * 3.25e-4)
                                   / 6.875e-5 ** 1.5, rel=1e-6)
    returns = list(np.random.default_rng(5).normal(0.0005, 0.01, 400))
    reference = DifferentialSharpe(0.02)
    np.testing.assert_allclose(_dsr_kernel(returns, 0.02),
                               [reference.step(r) for r in returns], rtol=1e-9, atol=1e-12)


def test_differential_sharpe_rewards_returns_above_the_mean() -> None:
    """With a zero-mean history of positive variance, a return above the mean is rewarded
    and one below is penalized, and the reward grows with the return (dD/dR = (B - A R) /
    var^1.5 > 0 while R < B / A)."""
    history = [0.01, -0.01] * 50
    for r, sign in ((0.004, 1.0), (-0.004, -1.0)):
        assert np.sign(_dsr_kernel([*history, r], 0.05)[-1]) == sign
    grid = np.linspace(-0.02, 0.02, 9)
    last = [_dsr_kernel([*history, float(r)], 0.05)[-1] for r in grid]
    assert all(b > a for a, b in itertools.pairwise(last))


def test_bad_actions_and_configs_are_rejected(eth_markets) -> None:
    markets, _ = eth_markets
    env = TradingEnv(markets, config=SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(3)
    with pytest.raises(ConfigError, match="unknown EnvConfig"):
        TradingEnv(markets, config={"windw": 8})
    with pytest.raises(ConfigError):
        EnvConfig(positions=(1.0, 1.0))
    with pytest.raises(ConfigError):
        EnvConfig(reward="profit")
    one = _spec((ETH,)).env_config()
    with pytest.raises(ConfigError, match="unknown env_config"):
        make_env(one | {"colour": "red"})
    with pytest.raises(ConfigError, match=r"env_config\.env_spec\.env\.costs\.fee_bps: missing"):
        bad = json.loads(json.dumps(one))
        del bad["env_spec"]["env"]["costs"]["fee_bps"]
        make_env(bad)
    with pytest.raises(ConfigError, match=r"env_spec\.train: expected a number"):
        bad = json.loads(json.dumps(one))
        bad["env_spec"]["train"] = "0.6"
        make_env(bad)


def _spec(sources: tuple[str, ...], train: float = 0.7) -> EnvSpec:
    return EnvSpec.fit(sources=sources, reference=None, train=train, validation=0.15,
                       features=FeatureSpec(), env=EnvConfig.from_dict(SMALL))


def test_make_env_builds_the_right_env_for_rllib() -> None:
    assert type(make_env(_spec((ETH,)).env_config())) is TradingEnv
    assert type(make_env(_spec(BOTH).env_config())) is MultiDatasetTradingEnv
    vec = make_env(_spec((ETH,)).env_config() | {"num_envs": 4})
    assert isinstance(vec, VectorTradingEnv) and vec.num_envs == 4
    vec = gym.make_vec(TRADING_ID, num_envs=3, vectorization_mode="vector_entry_point",
                       data=ETH, config=SMALL)
    assert vec.unwrapped.num_envs == 3


def test_synthetic_source_plays_the_planted_market() -> None:
    from raytrade.envs.synthetic import planted_market

    spec = FeatureSpec(reference_symbol=None)
    with pytest.raises(DataError, match="features never complete on its 3000 5m bars"):
        load_markets("synthetic:regime:seed=4:n=3000", spec=spec, window=8)
    markets, _ = load_markets("synthetic:regime:seed=4:n=20000", spec=spec, window=8,
                              split="all")
    bars = planted_market(20_000, kind="regime", seed=4).bars
    np.testing.assert_array_equal(markets[0].market[M_CLOSE], bars.close)
    env = TradingEnv(markets, config=SMALL, spec=spec)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    with pytest.raises(ConfigError, match="synthetic"):
        load_markets("synthetic:regime:colour=3", spec=spec)
