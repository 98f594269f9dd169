"""The 1-D convolutional window encoder inside RLlib's DQN module.

RLlib 2.60's ``DefaultDQNTorchRLModule`` asks its catalog for an encoder and builds the
advantage and value heads on the encoder's ``latent_dims``. :class:`WindowConvDQNCatalog`
returns our :class:`~raytrade.algos.window_conv.WindowConv` (wrapped as an RLlib
``Encoder``) when the model config carries a ``raytrade_conv`` entry, and RLlib's own MLP
encoder otherwise, so the heads, dueling, double-Q and target networks stay stock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray.rllib.algorithms.dqn.dqn_catalog import DQNCatalog
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT, Encoder
from ray.rllib.core.models.configs import ModelConfig
from ray.rllib.core.models.torch.base import TorchModel
from raytrade.algos.window_conv import WindowConv

CONV_KEY = "raytrade_conv"
"""Model-config entry: ``ExperimentConfig.encoder_spec()`` of a ``conv1d`` encoder."""


@dataclass
class WindowConvEncoderConfig(ModelConfig):
    """RLlib model config of the window conv encoder (fields as in ``WindowConv``)."""

    window: int = 1
    n_features: int = 1
    extra: int = 0
    channels: list[int] = field(default_factory=lambda: [32])
    kernel: int = 3
    hidden: list[int] = field(default_factory=lambda: [256])
    activation: str = "relu"

    @property
    def output_dims(self) -> tuple[int, ...]:
        return (self.hidden[-1],)

    def build(self, framework: str = "torch") -> TorchWindowConvEncoder:
        if framework != "torch":
            raise ValueError(f"the window conv encoder is torch-only, not {framework}")
        return TorchWindowConvEncoder(self)


class TorchWindowConvEncoder(TorchModel, Encoder):
    """RLlib Encoder: observations in, ``WindowConv`` latent out."""

    def __init__(self, config: WindowConvEncoderConfig) -> None:
        TorchModel.__init__(self, config)
        Encoder.__init__(self, config)
        self.net = WindowConv(config.window, config.n_features, config.extra,
                              list(config.channels), config.kernel, list(config.hidden),
                              config.activation)

    def _forward(self, input_dict: dict, **kwargs: Any) -> dict:  # type: ignore[type-arg]
        return {ENCODER_OUT: self.net(input_dict[Columns.OBS])}


class WindowConvDQNCatalog(DQNCatalog):
    """DQNCatalog whose encoder is the window conv when the model config asks for it."""

    def _determine_components_hook(self) -> None:
        super()._determine_components_hook()
        conv = self._model_config_dict.get(CONV_KEY)
        if not conv:
            return
        self._encoder_config = WindowConvEncoderConfig(
            input_dims=list(self.observation_space.shape or ()),
            window=int(conv["window"]), n_features=int(conv["n_features"]),
            extra=int(conv["extra"]), channels=[int(c) for c in conv["channels"]],
            kernel=int(conv["kernel"]),
            hidden=[int(h) for h in self._model_config_dict["fcnet_hiddens"]],
            activation=str(self._model_config_dict["fcnet_activation"]))
        self.latent_dims = self._encoder_config.output_dims
