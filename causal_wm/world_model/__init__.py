"""The causal world model: a learned SCM over learned latent causal variables, with the encoder
and decoder that connect it to observations (see ``causal_wm.world_model.model``).

    from causal_wm.world_model import CausalWorldModel
    model = CausalWorldModel.fit(dataset)            # or causal_wm.CausalWorldModel
    z = model.sample(1000, Intervention.do(1, 1.5))  # (1000, n) imagined latents
"""

from causal_wm.world_model.baseline import ActionConditionedModel, intervention_features
from causal_wm.world_model.config import PRESETS, WorldModelConfig, make_config
from causal_wm.world_model.evaluation import distribution_distances, gaussian_w2, mmd, success_rate
from causal_wm.world_model.mechanisms import NodeMechanism, QuantileNoise
from causal_wm.world_model.model import CausalWorldModel, MenuModel, encode_dataset, load_model

__all__ = [
           "PRESETS",
           "ActionConditionedModel",
           "CausalWorldModel",
           "MenuModel",
           "NodeMechanism",
           "QuantileNoise",
           "WorldModelConfig",
           "distribution_distances",
           "encode_dataset",
           "gaussian_w2",
           "intervention_features",
           "load_model",
           "make_config",
           "mmd",
           "success_rate",
]
