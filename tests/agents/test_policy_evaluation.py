"""Running and scoring planners: run_policy, the oracle and random policies, the learned-latent reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.agents import OneStepPlanner
from causal_wm.agents.evaluation import OraclePolicy, RandomPolicy, latent_goal_reward, run_policy
from causal_wm.world_model import CausalWorldModel


def test_oracle_policy_succeeds_more_often_than_random():
    env = gym.make("causal_wm/Balls-v0", task="reach")
    oracle = run_policy(env, OraclePolicy(OneStepPlanner.oracle(env, num_samples=64)), steps=150, seed=0)
    random = run_policy(env, RandomPolicy(env.action_space.n, seed=0), steps=150, seed=0)
    assert oracle["success_rate"] > random["success_rate"] + 0.05
    assert oracle["mean_reward"] > random["mean_reward"]
    assert sum(oracle["action_counts"]) == 150
    # same seeds, same numbers
    again = run_policy(env, RandomPolicy(env.action_space.n, seed=0), steps=150, seed=0)
    assert again == random


def test_run_policy_needs_a_task():
    env = gym.make("causal_wm/Balls-v0")
    with pytest.raises(ValueError, match="reach task"):
        run_policy(env, RandomPolicy(env.action_space.n), steps=5)


def test_latent_goal_reward_is_in_the_env_units():
    """On a model of the true latents (vector route), the learned reward ranks states like the true one."""
    kwargs = {"num_balls": 2, "graph_seed": 0, "do_values": ()}
    env = gym.make("causal_wm/Balls-v0", **kwargs)
    scene = env.unwrapped
    rng = np.random.default_rng(0)
    menu = list(scene.interventions)
    regimes = np.repeat(np.arange(len(menu)), 400)
    z = np.concatenate([scene.scm.sample(400, iv, seed=int(rng.integers(1 << 30))) for iv in menu])
    model = CausalWorldModel.fit_arrays(z, regimes, menu=menu, preset="debug")
    reward = latent_goal_reward(model, 2, 1.0)
    z_test = scene.scm.sample(2000, None, seed=5)
    learned = reward(model.encode(z_test))
    true = -np.abs(z_test[:, 2] - 1.0)
    assert np.corrcoef(learned, true)[0, 1] > 0.99
    assert np.mean(np.abs(learned - true)) < 0.1
    with pytest.raises(ValueError, match="no learned latent"):
        latent_goal_reward(model, 9, 1.0)
