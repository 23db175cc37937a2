"""Agents for the causal scenes (installed as ``causal_wm.agents``): planners that choose
interventions by imagining their effect with a model of the latent causal system, and the
stable-baselines3 integration of learned causal encoders.

    from causal_wm.agents import OneStepPlanner, CausalEncoderObservation
    planner = OneStepPlanner.oracle(env)          # the true SCM: the ceiling for learned models
    action = planner.act(z_now, regime_now)
    agent_env = CausalEncoderObservation(env, model)   # Box(n) learned latents for SB3

The planners need numpy only; the SB3 parts (``CausalEncoderObservation``,
``CausalEncoderVecObservation``, ``TrueLatentObservation``, ``CausalFeaturesExtractor``,
``load_encoder_model``) import torch and stable-baselines3 on first use.
"""

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
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'causal_wm.agents' has no attribute {name!r}")


__all__ = ["CEMPlanner", "CausalEncoderObservation", "CausalEncoderVecObservation", "CausalFeaturesExtractor",
           "LatentGoalReward", "LatentModel", "OneStepPlanner", "OracleSCMModel", "RandomPlanner",
           "TrueLatentObservation", "goal_image_reward", "goal_reward", "load_encoder_model"]
