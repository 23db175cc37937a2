import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.agents import OneStepPlanner, OracleSCMModel


def _mean_reward(env, choose, steps=300, seed=0):
    _, info = env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(choose(info))
        total += reward
        if terminated or truncated:
            _, info = env.reset()
    return total / steps


@pytest.mark.parametrize("persistence", [0.0, 0.9])
def test_oracle_planner_beats_random(persistence):
    env = gym.make("causal_wm/Balls-v0", task="reach", persistence=persistence, max_episode_steps=1000)
    planner = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    rng = np.random.default_rng(0)
    planned = _mean_reward(env, lambda info: planner.act(info["z"], info["regime"]))
    random = _mean_reward(env, lambda info: int(rng.integers(env.action_space.n)))
    assert planned > random + 0.3, (planned, random)


def test_persistence_is_used_when_the_world_carries_state():
    env = gym.make("causal_wm/Balls-v0", task="reach", persistence=0.9, max_episode_steps=1000)
    with_state = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    blind = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    a = _mean_reward(env, lambda info: with_state.act(info["z"], info["regime"]), seed=1)
    b = _mean_reward(env, lambda info: blind.act(), seed=1)
    assert a > b


def test_oracle_prediction_matches_the_env_marginal():
    env = gym.make("causal_wm/Balls-v0")
    model = OracleSCMModel.from_env(env)
    noise = np.random.default_rng(0).standard_normal((20_000, model.n))
    iv = env.unwrapped.interventions[1]
    mean, cov = env.unwrapped.scm.moments(iv)
    z = model.predict(1, noise)
    np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.05)


def test_values_are_seeded_and_errors_are_clear():
    env = gym.make("causal_wm/Balls-v0", task="reach")
    v1 = OneStepPlanner.oracle(env, seed=3).action_values()
    v2 = OneStepPlanner.oracle(env, seed=3).action_values()
    np.testing.assert_array_equal(v1, v2)
    with pytest.raises(ValueError, match="no task"):
        OneStepPlanner.oracle(gym.make("causal_wm/Balls-v0"))
    with pytest.raises(ValueError, match="subset"):
        OneStepPlanner.oracle(env, actions=[999])
    with pytest.raises(ValueError, match="current regime"):
        OracleSCMModel.from_env(gym.make("causal_wm/Balls-v0", persistence=0.5)).predict(
            1, np.zeros((2, 6)), z_now=np.zeros(6))
