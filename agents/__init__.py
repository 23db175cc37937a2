"""Agents for the causal scenes (installed as ``causal_wm.agents``): planners that choose
interventions by imagining their effect with a model of the latent causal system.

    from causal_wm.agents import OneStepPlanner
    planner = OneStepPlanner.oracle(env)          # the true SCM: the ceiling for learned models
    action = planner.act(z_now, regime_now)
"""

from causal_wm.agents.planners import OneStepPlanner, OracleSCMModel, goal_reward

__all__ = ["OneStepPlanner", "OracleSCMModel", "goal_reward"]
