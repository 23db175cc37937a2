"""The shadow scene's nonlinear SCM: analytic mechanism gradients, exact scores, standardisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.envs.shadow import GRAPH, NODE_NAMES, ShadowRenderer, _shadow_geometry, shadow_scm
from causal_wm.scm import Intervention


def test_graph_and_names():
    env = gym.make("causal_wm/Shadow-v0").unwrapped
    np.testing.assert_array_equal(env.graph, GRAPH)
    assert env.node_names == NODE_NAMES
    assert {(i, j) for i, j in zip(*np.nonzero(env.graph), strict=True)} == {(0, 2), (0, 3), (1, 2), (1, 3)}


def test_geometry_gradients_match_finite_differences():
    zpa = np.random.default_rng(0).normal(size=(50, 2)) * 1.5
    _, _, dc, dd = _shadow_geometry(zpa)
    h = 1e-6
    for k in range(2):
        step = np.zeros(2)
        step[k] = h
        cp, dp, _, _ = _shadow_geometry(zpa + step)
        cm, dm, _, _ = _shadow_geometry(zpa - step)
        np.testing.assert_allclose(dc[:, k], (cp - cm) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dd[:, k], (dp - dm) / (2 * h), rtol=1e-6, atol=1e-8)


def test_score_matches_finite_differences_of_log_prob():
    scm = shadow_scm()
    for iv in (None, Intervention.hard(0, shift=1.0, std=0.7), Intervention.do(1, 0.5)):
        z = scm.sample(20, iv, seed=1)
        score = scm.score(z, iv)
        h = 1e-5
        for k in range(4):
            e = np.zeros(4)
            e[k] = h
            fd = (scm.log_prob(z + e, iv) - scm.log_prob(z - e, iv)) / (2 * h)
            np.testing.assert_allclose(score[:, k], fd, rtol=1e-5, atol=1e-5)


def test_observationally_standardised_and_nonlinear():
    scm = shadow_scm(0.3)
    z = scm.sample(400_000, seed=0)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(z.var(axis=0), 1.0, rtol=0.01)
    # both shadow latents depend on both parents, and not linearly: the best linear fit leaves more
    # than the noise variance 0.3^2 unexplained
    for j in (2, 3):
        resid = z[:, j] - z[:, :2] @ np.linalg.lstsq(z[:, :2], z[:, j], rcond=None)[0]
        assert resid.var() > 0.3**2 + 0.015
        assert abs(np.corrcoef(z[:, 0], z[:, j])[0, 1]) > 0.3 and abs(np.corrcoef(z[:, 1], z[:, j])[0, 1]) > 0.3


def test_interventions_move_only_their_element():
    renderer = ShadowRenderer()
    z = np.zeros((2, 4))
    z[1, 2] = 1.5  # move the shadow only
    frames = renderer(z).astype(int)
    changed = np.nonzero(np.abs(frames[0] - frames[1]).sum(axis=-1))[0]
    assert changed.size and changed.min() >= 50  # only rows at the ground changed
    z[1] = 0
    z[1, 1] = 1.5  # move the light only: the sun moves, the shadow stays where its latents say
    frames = renderer(z).astype(int)
    changed = np.nonzero(np.abs(frames[0] - frames[1]).sum(axis=-1))[0]
    assert changed.size and changed.max() < 12
