"""The exported Q-network (torch only, no Ray) computes exactly RLlib's Q-values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from raytrade.algos.dqn_config import build_dqn_config, env_config
from raytrade.algos.experiment import ExperimentConfig
from raytrade.algos.experiments import experiment_path
from raytrade.algos.export import architecture, rllib_tensors, write_bundle
from raytrade.algos.manifest import BundleManifest
from raytrade.algos.qnetwork import QNetwork
from raytrade.envs.errors import ConfigError
from raytrade.envs.registration import make_env
from safetensors.numpy import load_file


def _rllib_module(exp: ExperimentConfig):  # type: ignore[no-untyped-def]
    spec = exp.fit_env_spec()
    config = build_dqn_config(exp, spec)
    env = make_env(env_config(spec))
    spec = config.get_default_rl_module_spec()
    spec.observation_space = env.observation_space
    spec.action_space = env.action_space
    spec.model_config = config.model_config
    torch.manual_seed(0)
    return spec.build(), env


@pytest.mark.parametrize("dueling", [True, False])
@pytest.mark.parametrize(("hidden", "encoder"), [((32,), "mlp"), ((64, 32, 16), "mlp"),
                                                 ((32,), "conv1d"), ((48, 16), "conv1d")])
def test_exported_network_reproduces_rllib_q_values(dueling: bool, hidden: tuple[int, ...],
                                                     encoder: str) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    exp = dataclasses.replace(exp, dqn=dataclasses.replace(exp.dqn, dueling=dueling),
                              network=dataclasses.replace(exp.network, hidden=hidden,
                                                          activation="tanh", encoder=encoder,
                                                          conv_channels=(8, 4),
                                                          conv_kernel=3))
    module, env = _rllib_module(exp)
    if encoder == "conv1d":
        assert type(module.encoder).__name__ == "TorchWindowConvEncoder"
    obs_dim = env.observation_space.shape[0]
    net = QNetwork(architecture(exp, obs_dim, env.action_space.n).architecture())
    net.load_tensors(rllib_tensors(module.get_state(inference_only=True), dueling))
    obs = np.random.default_rng(1).normal(size=(64, obs_dim)).astype(np.float32)
    with torch.no_grad():
        expected = module.forward_inference({"obs": torch.as_tensor(obs)})
        q_rllib = module.compute_q_values({"obs": torch.as_tensor(obs)})["qf_preds"].numpy()
    np.testing.assert_allclose(net.q_values(obs), q_rllib, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(net.q_values(obs).argmax(axis=1),
                                  expected["actions"].numpy())


def test_bundle_is_written_once_with_checksums(tmp_path: Path) -> None:
    exp = ExperimentConfig.load(experiment_path("synthetic_regime"))
    module, env = _rllib_module(exp)
    tensors = rllib_tensors(module.get_state(inference_only=True), True)
    spec = exp.fit_env_spec()
    obs_dim = env.observation_space.shape[0]
    folder = write_bundle(tmp_path / "b1", tensors, exp, spec, obs_dim,
                          training={"iteration": 3})
    manifest = json.loads((folder / "manifest.json").read_text())
    import hashlib
    assert manifest["files"]["weights.safetensors"] == hashlib.sha256(
        (folder / "weights.safetensors").read_bytes()).hexdigest()
    assert manifest["feature_spec_hash"] == exp.features.hash
    assert manifest["observation"] == {"shape": [obs_dim], "dtype": "float32",
                                       "position_state": ["position", "unrealized",
                                                          "bars_in_position", "drawdown"]}
    assert manifest["env"]["window"] == 4
    assert manifest["env"]["risk"]["max_notional"] == "Infinity"  # strict JSON for inf
    assert manifest["normalizer"] == spec.normalizer.to_dict()
    net = QNetwork(BundleManifest.from_dict(manifest).network.architecture())
    net.load_tensors(load_file(str(folder / "weights.safetensors")))
    with pytest.raises(ConfigError, match="immutable"):
        write_bundle(folder, tensors, exp, spec, obs_dim, training={"iteration": 4})
    bad = dict(tensors)
    bad.pop("value.0.bias")
    with pytest.raises(ConfigError, match="missing"):
        net.load_tensors(bad)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_conv_encoder_reads_the_window_as_a_time_sequence() -> None:
    """Shifting the whole feature window by one bar in time moves the conv's response
    by one position (translation equivariance), which a flat MLP would not show."""
    from raytrade.algos.window_conv import WindowConv

    torch.manual_seed(0)
    conv = WindowConv(window=8, n_features=3, extra=4, channels=[5], kernel=3,
                      hidden=[6], activation="linear")
    rows = torch.zeros(1, 8, 3)
    rows[0, 3] = torch.tensor([1.0, -2.0, 0.5])  # one event at bar 3
    shifted = torch.roll(rows, shifts=1, dims=1)  # the same event at bar 4
    with torch.no_grad():
        def channels(x: torch.Tensor) -> torch.Tensor:
            return conv.conv[0](x.transpose(1, 2)) - conv.conv[0].bias[None, :, None]
        a, b = channels(rows), channels(shifted)
    torch.testing.assert_close(b[..., 1:], a[..., :-1])
    obs = torch.cat([rows.reshape(1, -1), torch.zeros(1, 4)], dim=1)
    assert conv(obs).shape == (1, 6) and conv.obs_dim == 28
    with pytest.raises(ConfigError, match="odd kernel"):
        WindowConv(8, 3, 4, [5], 2, [6], "relu")
    with pytest.raises(ConfigError, match="reads"):
        QNetwork({"type": "mlp", "obs_dim": 30, "n_actions": 3, "hidden": [6],
                  "activation": "relu", "encoder": {"kind": "conv1d", "window": 8,
                                                    "n_features": 3, "extra": 4,
                                                    "channels": [5], "kernel": 3}})
