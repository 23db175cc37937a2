"""Agents for the causal scenes (installed as ``causal_wm.agents``): planners that choose
interventions by imagining their effect with a model of the latent causal system, and the
stable-baselines3 integration of learned causal encoders.

    from causal_wm.agents import OneStepPlanner, CausalEncoderObservation
    planner = OneStepPlanner.oracle(env)          # the true SCM: the ceiling for learned models
    action = planner.act(z_now, regime_now)
    policy = ModelPolicy(model, planner)          # frames -> learned encoder -> planner, for run_policy
    agent_env = CausalEncoderObservation(env, model)   # Box(n) learned latents for SB3

The planners need numpy only; the SB3 parts (``CausalEncoderObservation``,
``CausalEncoderVecObservation``, ``TrueLatentObservation``, ``CausalFeaturesExtractor``,
``load_encoder_model``, ``PlainAutoencoder``, ``TrainConfig``, ``train``) import torch and
stable-baselines3 on first use.
"""

from causal_wm.agents.evaluation import (
    ModelPolicy,
    OraclePolicy,
    RandomPolicy,
    compare_planners,
    latent_goal_reward,
    run_policy,
)
from causal_wm.agents.planners import (
    CEMPlanner,
    LatentGoalReward,
    LatentModel,
    OneStepPlanner,
    OracleSCMModel,
    RandomPlanner,
    goal_image_reward,
    goal_reward,
)

_LAZY = {
    "CausalEncoderObservation": "causal_wm.agents.wrappers",
    "CausalEncoderVecObservation": "causal_wm.agents.wrappers",
    "TrueLatentObservation": "causal_wm.agents.wrappers",
    "load_encoder_model": "causal_wm.agents.wrappers",
    "CausalFeaturesExtractor": "causal_wm.agents.features",
    "PlainAutoencoder": "causal_wm.agents.training",
    "TrainConfig": "causal_wm.agents.config",
    "train": "causal_wm.agents.training",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'causal_wm.agents' has no attribute {name!r}")


__all__ = ["CEMPlanner", "CausalEncoderObservation", "CausalEncoderVecObservation", "CausalFeaturesExtractor",
           "LatentGoalReward", "LatentModel", "ModelPolicy", "OneStepPlanner", "OraclePolicy", "OracleSCMModel",
           "PlainAutoencoder", "RandomPlanner", "RandomPolicy", "TrainConfig", "TrueLatentObservation",
           "compare_planners", "goal_image_reward", "goal_reward", "latent_goal_reward", "load_encoder_model",
           "run_policy", "train"]
