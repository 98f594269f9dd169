"""A 1-D convolutional encoder over the observation's feature window (plain torch).

The observation (``envs/observation.py``) is ``window`` rows of ``n_features`` normalized
features, oldest first, then ``extra`` position-state values. An MLP sees that as one flat
vector; this encoder treats the window as a sequence of length ``window`` with
``n_features`` channels, so the same pattern is recognized wherever it sits in time:

    rows -> Conv1d(kernel, 'same' padding) -> activation -> ... (one per ``channels`` entry)
         -> flatten -> concat(position state) -> Linear -> activation -> ... (``hidden``)

The output (``hidden[-1]`` units) feeds the Q heads. It is used unchanged inside RLlib's
DQN module (``conv_encoder.py``) and by the torch-only policy (``qnetwork.py``), so the
trained and the served network are the same code. Parameter names: ``conv.{i}.weight|bias``
and ``mlp.{i}.weight|bias``.
"""

from __future__ import annotations

import torch
from raytrade.envs.errors import ConfigError
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "linear": nn.Identity}


class WindowConv(nn.Module):
    """Conv1d stack over the feature window, then an MLP with the position state."""

    def __init__(self, window: int, n_features: int, extra: int, channels: list[int],
                 kernel: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        if window < 1 or n_features < 1 or extra < 0:
            raise ConfigError(f"conv encoder needs window, n_features >= 1, got {window}, "
                              f"{n_features}")
        if not channels or any(c < 1 for c in channels) or kernel < 1 or kernel % 2 == 0:
            raise ConfigError("conv encoder needs channels >= 1 and an odd kernel >= 1 "
                              f"('same' padding), got {channels}, {kernel}")
        if not hidden or any(h < 1 for h in hidden) or activation not in ACTIVATIONS:
            raise ConfigError(f"conv encoder needs hidden layers and a known activation, "
                              f"got {hidden}, {activation!r}")
        self.window, self.n_features, self.extra = window, n_features, extra
        sizes = [n_features, *channels]
        self.conv = nn.ModuleList(nn.Conv1d(sizes[i], sizes[i + 1], kernel, padding="same")
                                  for i in range(len(channels)))
        dims = [channels[-1] * window + extra, *hidden]
        self.mlp = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(hidden)))
        self.act = ACTIVATIONS[activation]()
        self.out_dim = hidden[-1]

    @property
    def obs_dim(self) -> int:
        """Length of the observation vector this encoder reads."""
        return self.window * self.n_features + self.extra

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        k = self.window * self.n_features
        # [B, window * F] (time-major rows) -> [B, F channels, window time steps]
        x = obs[..., :k].reshape(-1, self.window, self.n_features).transpose(1, 2)
        for conv in self.conv:
            x = self.act(conv(x))
        z = torch.cat([x.flatten(1), obs[..., k:].reshape(-1, self.extra)], dim=1)
        for lin in self.mlp:
            z = self.act(lin(z))
        return z
