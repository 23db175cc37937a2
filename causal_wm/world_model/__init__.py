"""The causal world model: a learned SCM over learned latent causal variables, with the encoder
and decoder that connect it to observations (see ``causal_wm.world_model.model``).

    from causal_wm.world_model import CausalWorldModel
    model = CausalWorldModel.fit(dataset)            # or causal_wm.CausalWorldModel
    z = model.sample(1000, Intervention.do(1, 1.5))  # (1000, n) imagined latents
"""

from causal_wm.world_model.config import PRESETS, WorldModelConfig, make_config

# the model, the baseline and the metrics import torch: load them on first use, so that reading the
# presets (the command line's --help, the demo's settings) stays light
_LAZY = {
    "ActionConditionedModel": "baseline", "intervention_features": "baseline",
    "distribution_distances": "evaluation", "gaussian_w2": "evaluation", "mmd": "evaluation",
    "success_rate": "evaluation", "ranking_metrics": "evaluation", "rollout_means": "evaluation",
    "NodeMechanism": "mechanisms", "QuantileNoise": "mechanisms",
    "CausalWorldModel": "model", "MenuModel": "model", "encode_dataset": "model", "load_model": "model",
    "ProbabilisticEnsemble": "ensemble",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"causal_wm.world_model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'causal_wm.world_model' has no attribute {name!r}")


__all__ = [
           "PRESETS",
           "ActionConditionedModel",
           "CausalWorldModel",
           "MenuModel",
           "NodeMechanism",
           "ProbabilisticEnsemble",
           "QuantileNoise",
           "WorldModelConfig",
           "distribution_distances",
           "encode_dataset",
           "gaussian_w2",
           "intervention_features",
           "load_model",
           "make_config",
           "mmd",
           "ranking_metrics",
           "rollout_means",
           "success_rate",
]
