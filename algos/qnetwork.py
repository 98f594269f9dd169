"""The Q-network as plain torch, rebuilt from a bundle's manifest: no Ray, no pickle.

Architecture ``dueling_mlp`` (or ``mlp`` without dueling): an encoder of Linear layers
each followed by the activation; an advantage head and (dueling) a value head, each a
stack of Linear layers with the head activation between them; then
``Q = V + A - mean(A)`` (dueling) or ``Q = A``. Tensor names in the weights file:
``encoder.{i}.weight|bias``, ``advantage.{j}.weight|bias``, ``value.{j}.weight|bias``.
With ``"encoder": {"kind": "conv1d", ...}`` the encoder is ``window_conv.WindowConv``
instead (tensors ``encoder.conv.{i}.*`` and ``encoder.mlp.{i}.*``).
This is exactly RLlib 2.60's ``DefaultDQNTorchRLModule`` with our encoder and
expectation (non-distributional) Q-learning; tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from raytrade.algos.window_conv import ACTIVATIONS, WindowConv
from raytrade.envs.errors import ConfigError
from torch import nn


def _stack(sizes: list[int], activation: str, final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if final_activation or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Q-values for a batch of observations, as described by ``architecture``."""

    def __init__(self, architecture: Mapping[str, Any]) -> None:
        super().__init__()
        try:
            kind = architecture["type"]
            obs_dim = int(architecture["obs_dim"])
            n_actions = int(architecture["n_actions"])
            hidden = [int(h) for h in architecture["hidden"]]
            head_hidden = [int(h) for h in architecture.get("head_hidden", [])]
            act = str(architecture["activation"])
            head_act = str(architecture.get("head_activation", "relu"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed network architecture: {exc}") from exc
        if kind not in ("dueling_mlp", "mlp") or act not in ACTIVATIONS or \
                head_act not in ACTIVATIONS or not hidden:
            raise ConfigError(f"unsupported network architecture {dict(architecture)}")
        self.dueling = kind == "dueling_mlp"
        encoder = architecture.get("encoder") or {"kind": "mlp"}
        self.encoder: nn.Module
        if encoder.get("kind") == "conv1d":
            try:
                self.encoder = WindowConv(
                    int(encoder["window"]), int(encoder["n_features"]),
                    int(encoder["extra"]), [int(c) for c in encoder["channels"]],
                    int(encoder["kernel"]), hidden, act)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"malformed conv1d encoder {encoder}: {exc}") from exc
            if self.encoder.obs_dim != obs_dim:
                raise ConfigError(f"conv1d encoder reads {self.encoder.obs_dim} values, "
                                  f"the observation has {obs_dim}")
        elif encoder.get("kind") == "mlp":
            self.encoder = _stack([obs_dim, *hidden], act, final_activation=True)
        else:
            raise ConfigError(f"unsupported encoder {encoder}")
        self.advantage = _stack([hidden[-1], *head_hidden, n_actions], head_act, False)
        self.value = _stack([hidden[-1], *head_hidden, 1], head_act, False) \
            if self.dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.encoder(obs)
        a: torch.Tensor = self.advantage(z)
        if self.value is None:
            return a
        v: torch.Tensor = self.value(z)
        return v + a - a.mean(dim=-1, keepdim=True)

    def named_linear_tensors(self) -> dict[str, torch.Tensor]:
        """Our tensor names (``encoder.{i}.weight`` ...), i counting Linear layers only
        (the conv encoder's own parameter names under ``encoder.``)."""
        out: dict[str, torch.Tensor] = {}
        if isinstance(self.encoder, WindowConv):
            out.update({f"encoder.{k}": v for k, v in self.encoder.named_parameters()})
        for part in ("encoder", "advantage", "value"):
            seq = getattr(self, part)
            if seq is None or isinstance(seq, WindowConv):
                continue
            linears = [m for m in seq if isinstance(m, nn.Linear)]
            for i, lin in enumerate(linears):
                out[f"{part}.{i}.weight"] = lin.weight
                out[f"{part}.{i}.bias"] = lin.bias
        return out

    def load_tensors(self, tensors: Mapping[str, npt.NDArray[np.float32]]) -> None:
        """Copy weights in; every expected tensor must be present with its exact shape."""
        own = self.named_linear_tensors()
        missing = sorted(set(own) - set(tensors))
        extra = sorted(set(tensors) - set(own))
        if missing or extra:
            raise ConfigError(f"weights do not match the architecture: missing {missing}, "
                              f"unexpected {extra}")
        with torch.no_grad():
            for name, param in own.items():
                value = np.asarray(tensors[name])
                if tuple(value.shape) != tuple(param.shape):
                    raise ConfigError(f"tensor {name} has shape {value.shape}, the "
                                      f"architecture needs {tuple(param.shape)}")
                param.copy_(torch.as_tensor(value, dtype=param.dtype))

    def q_values(self, obs: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Q-values of a ``[B, obs_dim]`` batch as numpy float32."""
        with torch.no_grad():
            q = self(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        out: npt.NDArray[np.float32] = q.numpy().astype(np.float32)
        return out
