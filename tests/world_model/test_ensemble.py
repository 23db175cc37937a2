"""The probabilistic ensemble baseline (``causal_wm.world_model.ensemble``) on small linear Gaussian SCMs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from causal_wm.scm import Intervention, random_scm
from causal_wm.world_model import ActionConditionedModel, ProbabilisticEnsemble

torch.set_num_threads(1)

GRAPH = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
MENU = [None, Intervention.hard(0, shift=1.0, std=0.7), Intervention.hard(1, shift=-1.0, std=0.7),
        Intervention.do(2, 1.5, std=0.3)]
SETTINGS = {"hidden": 16, "epochs": 60, "batch_size": 64, "device": "cpu"}


def _data(scm, per_regime: int, seed: int):
    z, interventions = [], []
    for k, iv in enumerate(MENU):
        z.append(scm.sample(per_regime, iv, seed=seed + k))
        interventions += [iv] * per_regime
    return np.concatenate(z), interventions


def _episodes(scm, rho: float, episodes: int, length: int, seed: int):
    """Random actions in episodes of an AR(1)-noise world, rows in episode order."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((episodes, scm.n))
    z = np.empty((episodes, length, scm.n))
    actions = rng.integers(len(MENU), size=(episodes, length))
    for t in range(length):
        if t > 0:
            eps = rho * eps + math.sqrt(1 - rho**2) * rng.standard_normal(eps.shape)
        for a in np.unique(actions[:, t]):
            rows = actions[:, t] == a
            z[rows, t] = scm.forward(eps[rows], MENU[a])
    episode, step = np.repeat(np.arange(episodes), length), np.tile(np.arange(length), episodes)
    return z.reshape(-1, scm.n), [MENU[a] for a in actions.ravel()], episode, step


@pytest.fixture(scope="module")
def scm():
    return random_scm(GRAPH, seed=0)


@pytest.fixture(scope="module")
def ensemble(scm):
    z, interventions = _data(scm, 300, seed=0)
    return ProbabilisticEnsemble().fit(z, interventions, members=3, seed=0, **SETTINGS)


def test_members_are_fitted_on_different_bootstrap_resamples(ensemble, scm):
    assert len(ensemble.members) == 3 and ensemble.n == 3 and not ensemble.transitions
    assert all(isinstance(m, ActionConditionedModel) for m in ensemble.members)
    # each member standardised its own resample, and the members disagree
    means = [m.z_mean for m in ensemble.members]
    assert not np.array_equal(means[0], means[1]) and not np.array_equal(means[1], means[2])
    noise = np.zeros((1, 3))
    predictions = np.stack([m.predict(MENU[2], noise)[0] for m in ensemble.members])
    assert np.ptp(predictions, axis=0).max() > 1e-3
    # and they still describe the world
    mean, cov = ensemble.moments(MENU[1])
    true_mean, true_cov = scm.moments(MENU[1])
    np.testing.assert_allclose(mean, true_mean, atol=0.3)
    np.testing.assert_allclose(cov, true_cov, atol=0.5)
    assert ensemble.num_parameters == sum(m.num_parameters for m in ensemble.members)


def test_particle_i_is_propagated_by_member_i_mod_members(ensemble):
    noise = np.random.default_rng(0).standard_normal((10, 3))
    out = ensemble.predict(MENU[1], noise)
    assert out.shape == (10, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out, ensemble.predict(MENU[1], noise))
    for m, member in enumerate(ensemble.members):
        rows = np.arange(m, 10, 3)
        np.testing.assert_array_equal(out[rows], member.predict(MENU[1], noise[rows]))
    # common random numbers: a particle keeps its member (and noise) under every action
    for iv in MENU:
        # (float32 networks: a batch of one may round differently)
        np.testing.assert_allclose(ensemble.predict(iv, noise)[4], ensemble.members[1].predict(iv, noise[4:5])[0],
                                   atol=1e-5)
    # fewer particles than members
    assert ensemble.predict(None, noise[:2]).shape == (2, 3)
    samples = ensemble.sample(7, MENU[3], seed=4)
    np.testing.assert_array_equal(samples, ensemble.predict(MENU[3], np.random.default_rng(4).standard_normal((7, 3))))


def test_moments_and_log_prob_are_those_of_the_mixture(ensemble):
    means, covs = zip(*(m.moments(MENU[2]) for m in ensemble.members), strict=True)
    mean, cov = ensemble.moments(MENU[2])
    np.testing.assert_allclose(mean, np.mean(means, axis=0))
    centred = np.stack(means) - mean
    np.testing.assert_allclose(cov, np.mean(covs, axis=0) + centred.T @ centred / 3)
    samples = ensemble.sample(30_000, MENU[2], seed=1)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), cov, rtol=0.05, atol=0.05)
    z = samples[:50]
    logs = np.stack([m.log_prob(z, MENU[2]) for m in ensemble.members])
    np.testing.assert_allclose(ensemble.log_prob(z, MENU[2]), logsumexp(logs, axis=0) - math.log(3))


def test_menu_model_and_save_load_round_trip(ensemble, tmp_path):
    planner_model = ensemble.for_menu(MENU)
    assert (planner_model.n, planner_model.num_actions) == (3, 4)
    noise = np.random.default_rng(2).standard_normal((12, 3))
    np.testing.assert_array_equal(planner_model.predict(3, noise), ensemble.predict(MENU[3], noise))
    with pytest.raises(ValueError, match="targets"):
        ensemble.for_menu([None, Intervention.do(5, 1.0)])

    path = ensemble.save(tmp_path / "ensemble.pt")
    state = torch.load(path, weights_only=True)
    assert state["format"] == "causal_wm.probabilistic_ensemble" and state["version"] == 1
    loaded = ProbabilisticEnsemble.load(path, device="cpu")
    assert len(loaded.members) == 3
    for iv in MENU:
        np.testing.assert_array_equal(loaded.predict(iv, noise), ensemble.predict(iv, noise))
    np.testing.assert_array_equal(loaded.for_menu(MENU).predict(1, noise), planner_model.predict(1, noise))
    ensemble.members[0].save(tmp_path / "member.pt")
    with pytest.raises(ValueError, match="not a probabilistic ensemble"):
        ProbabilisticEnsemble.load(tmp_path / "member.pt")


def test_fine_tune_leaves_the_ensemble_unchanged_and_fits_the_shifted_world(ensemble):
    shifted = random_scm(GRAPH, seed=5)
    z, interventions = _data(shifted, 50, seed=10)
    z_test, interventions_test = _data(shifted, 400, seed=100)
    noise = np.random.default_rng(0).standard_normal((9, 3))
    before = ensemble.predict(MENU[1], noise)

    def nll(model):
        return -np.mean([model.log_prob(z_test[i:i + 400], interventions_test[i]).mean()
                         for i in range(0, len(z_test), 400)])

    tuned = ensemble.fine_tune(z, interventions, seed=0)
    assert isinstance(tuned, ProbabilisticEnsemble) and tuned is not ensemble
    assert all(a is not b for a, b in zip(tuned.members, ensemble.members, strict=True))
    np.testing.assert_array_equal(ensemble.predict(MENU[1], noise), before)
    assert all("fine_tune" not in m.history for m in ensemble.members)
    assert nll(tuned) < nll(ensemble) - 0.3, (nll(tuned), nll(ensemble))


def test_transition_ensemble_keeps_each_particle_on_its_member_along_a_rollout():
    scm = random_scm(GRAPH, seed=1)
    z, interventions, episode, step = _episodes(scm, 0.8, episodes=40, length=15, seed=0)
    ensemble = ProbabilisticEnsemble().fit(z, interventions, episode=episode, step=step, members=2, seed=1,
                                           **SETTINGS)
    assert ensemble.transitions and all(m.transitions for m in ensemble.members)
    # whole episodes were resampled: every member saw transitions of about as many rows as the data
    assert all(abs(m.history["num_train"] + m.history["num_val"] - len(z)) < 0.3 * len(z) for m in ensemble.members)
    rng = np.random.default_rng(0)
    z_now = z[rng.choice(len(z), 6)]
    noise = rng.standard_normal((6, 3))
    out = ensemble.for_menu(MENU).predict(2, noise, z_now, 1)
    for i in range(6):
        member = ensemble.members[i % 2]
        np.testing.assert_allclose(out[i], member.predict(MENU[2], noise[i:i + 1], z_now[i], MENU[1])[0], atol=1e-5)
    with pytest.raises(ValueError, match="z_now"):
        ensemble.predict(MENU[2], noise, z_now[:4], MENU[1])


def test_errors_are_clear(ensemble):
    z = np.random.default_rng(0).standard_normal((40, 3))
    with pytest.raises(ValueError, match="members"):
        ProbabilisticEnsemble().fit(z, [None] * 40, members=0)
    with pytest.raises(ValueError, match="at least 10 rows"):
        ProbabilisticEnsemble().fit(z[:5], [None] * 5)
    with pytest.raises(ValueError, match="one intervention per row"):
        ProbabilisticEnsemble().fit(z, [None] * 39)
    with pytest.raises(ValueError, match="not fitted"):
        ProbabilisticEnsemble().predict(None, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="noise"):
        ensemble.predict(None, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="positive int"):
        ensemble.sample(0, None)
