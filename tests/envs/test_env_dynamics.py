"""The world's dynamics: per-step samples of the SCM under the chosen intervention with stationary
AR(1) exogenous noise, so every step's marginal is exactly its regime's distribution."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils import seeding

import causal_wm  # noqa: F401  (registers the envs)


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Shadow-v0"])
@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_latents_follow_the_ar1_recursion_exactly(env_id, rho):
    env = gym.make(env_id, persistence=rho).unwrapped
    seed = 11
    _, info = env.reset(seed=seed)
    rng = seeding.np_random(seed)[0]
    scm, n = env.scm, env.n
    eps = rng.standard_normal(n)
    np.testing.assert_array_equal(info["z"], scm.forward(eps[None], None)[0])
    for a in [3, 0, 1, 7, 2, 2, 0]:
        _, _, _, _, info = env.step(a)
        eps = rho * eps + np.sqrt(1 - rho**2) * rng.standard_normal(n)
        assert info["regime"] == a and info["intervention"] is env.interventions[a]
        np.testing.assert_array_equal(info["z"], scm.forward(eps[None], env.interventions[a])[0])


def _run(env, steps: int, actions: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    env.reset(seed=seed)
    choice = np.random.default_rng(seed).choice(actions, size=steps)
    z = np.empty((steps, env.n))
    for t, a in enumerate(choice):
        z[t] = env.step(int(a))[4]["z"]
    return choice, z


def _lag1(x: np.ndarray) -> float:
    x = x - x.mean(axis=0)
    return float(np.mean(np.sum(x[1:] * x[:-1], axis=0) / np.sum(x * x, axis=0)))


def test_persistent_balls_marginals_match_each_regime():
    rho = 0.9
    env = gym.make("causal_wm/Balls-v0", persistence=rho, multi_node=[(0, 2)]).unwrapped
    ivs = env.interventions
    actions = [0, 1, 2, 4, len(ivs) - 1]  # seeing, the shift pair and a do on node 0, a multi-node entry
    choice, z = _run(env, 60_000, actions, seed=0)
    eps = np.empty_like(z)
    for a in actions:
        rows = choice == a
        mean, cov = env.scm.moments(ivs[a])
        np.testing.assert_allclose(z[rows].mean(axis=0), mean, atol=0.06)
        np.testing.assert_allclose(z[rows].var(axis=0), np.diag(cov), rtol=0.1, atol=0.003)
        eps[rows] = env.scm.abduct(z[rows], ivs[a])
    # the exogenous noise is a stationary AR(1) whatever the regimes were
    np.testing.assert_allclose(eps.var(axis=0), 1.0, rtol=0.08)
    assert abs(_lag1(eps) - rho) < 0.01
    # regime 0 marginal: standardised (observational variance 1)
    np.testing.assert_allclose(np.diag(env.scm.moments()[1]), 1.0, rtol=1e-12)


def test_iid_when_persistence_is_zero():
    env = gym.make("causal_wm/Balls-v0").unwrapped
    choice, z = _run(env, 20_000, [0, 1, 2], seed=1)
    eps = np.empty_like(z)
    for a in (0, 1, 2):
        eps[choice == a] = env.scm.abduct(z[choice == a], env.interventions[a])
    assert abs(_lag1(eps)) < 0.03


def test_persistent_shadow_marginals_match_sampled_moments():
    env = gym.make("causal_wm/Shadow-v0", persistence=0.5).unwrapped
    actions = [0, 1, 12]  # seeing, hard shift on the angle, hard shift on shadow_pos
    choice, z = _run(env, 12_000, actions, seed=2)
    for a in actions:
        ref = env.scm.sample(200_000, env.interventions[a], seed=a)
        rows = z[choice == a]
        np.testing.assert_allclose(rows.mean(axis=0), ref.mean(axis=0), atol=0.08)
        np.testing.assert_allclose(rows.var(axis=0), ref.var(axis=0), rtol=0.12)
