"""The Q-values of the learner's RLlib DQN module, for evaluations during training.

RLlib's ``forward_inference`` of the DQN module returns only the argmax action, not the
Q-values; an evaluation built on it would see a one-hot "Q" of 0 and 1, and the bundle's
decision rule (``envs/decision.py``), whose margins are in Q units, would judge a
different policy from the one the bundle deploys. ``compute_q_values`` is the module's
own Q head (dueling combination included): the Q-values the exported bundle reproduces
(``tests/test_export.py``), so training's validation evaluations, the selection that
reads them and Tune's trial scores see the deployed policy's Q.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from raytrade.algos.evaluation import QFunction


def module_q_function(module: Any) -> QFunction:
    """``obs [B, obs_dim] -> Q [B, n_actions]`` of an RLlib DQN torch module (inference
    mode, no gradients)."""
    import torch

    def q_values(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]]:
        with torch.no_grad():
            out = module.compute_q_values({"obs": torch.as_tensor(obs)})
        preds: npt.NDArray[np.floating[Any]] = out["qf_preds"].cpu().numpy()
        return preds

    return q_values
