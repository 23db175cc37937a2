"""Tests of the non-causal baseline (``causal_wm.world_model.baseline``) on small linear Gaussian SCMs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causal_wm.scm import Intervention, random_scm
from causal_wm.world_model.baseline import (
    FEATURES_PER_NODE,
    ActionConditionedModel,
    intervention_features,
)

torch.set_num_threads(1)

GRAPH = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
MENU = [None, Intervention.hard(0, shift=1.0, std=0.7), Intervention.hard(1, shift=-1.0, std=0.7),
        Intervention.do(2, 1.5, std=0.3)]


def _iid_data(scm, per_regime: int = 1500):
    z, interventions = [], []
    for k, iv in enumerate(MENU):
        z.append(scm.sample(per_regime, iv, seed=k))
        interventions += [iv] * per_regime
    return np.concatenate(z), interventions


def _persistent_data(scm, rho: float, episodes: int = 80, length: int = 50, seed: int = 0):
    """Episodes of the AR(1)-noise world of causal_wm.envs: random actions, rows in episode order."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((episodes, scm.n))
    z = np.empty((episodes, length, scm.n))
    actions = rng.integers(len(MENU), size=(episodes, length))
    actions[:, 0] = 0
    for t in range(length):
        if t > 0:
            eps = rho * eps + math.sqrt(1 - rho**2) * rng.standard_normal(eps.shape)
        for a in np.unique(actions[:, t]):
            rows = actions[:, t] == a
            z[rows, t] = scm.forward(eps[rows], MENU[a])
    episode = np.repeat(np.arange(episodes), length)
    step = np.tile(np.arange(length), episodes)
    return z.reshape(-1, scm.n), [MENU[a] for a in actions.ravel()], episode, step


@pytest.fixture(scope="module")
def scm():
    return random_scm(GRAPH, seed=0)


@pytest.fixture(scope="module")
def fitted(scm):
    z, interventions = _iid_data(scm)
    return ActionConditionedModel().fit(z, interventions, hidden=32, seed=0, device="cpu")


def test_features_describe_every_node_and_unseen_interventions():
    f = intervention_features(Intervention.hard(1, shift=-1.0, std=0.7), 3).reshape(3, FEATURES_PER_NODE)
    np.testing.assert_array_equal(f[[0, 2]], 0.0)
    np.testing.assert_allclose(f[1], [1, 1, 0, 0, 0.0, -1.0, 0.7])
    np.testing.assert_array_equal(intervention_features(None, 3), np.zeros(3 * FEATURES_PER_NODE))
    soft = intervention_features(Intervention.soft(2, parent_scale=0.5, scale=2.0), 3).reshape(3, -1)
    np.testing.assert_allclose(soft[2], [1, 0, 1, 0, 0.5, 0.0, 2.0])
    both = intervention_features(Intervention.do((0, 2), (0.5, -1.5), std=0.1), 3).reshape(3, -1)
    np.testing.assert_allclose(both[:, 5], [0.5, 0.0, -1.5])
    np.testing.assert_array_equal(both[:, 3], [1, 0, 1])
    with pytest.raises(ValueError, match="targets"):
        intervention_features(Intervention.do(3, 1.0), 3)
    with pytest.raises(ValueError, match="num_nodes"):
        intervention_features(None, 0)


def test_fitted_moments_match_the_true_interventional_distributions(scm, fitted):
    assert fitted.n == 3 and not fitted.transitions
    assert fitted.history["best_epoch"] > 0
    for iv in MENU:
        true_mean, true_cov = scm.moments(iv)
        mean, cov = fitted.moments(iv)
        np.testing.assert_allclose(mean, true_mean, atol=0.15, err_msg=str(iv))
        np.testing.assert_allclose(cov, true_cov, atol=0.3, err_msg=str(iv))
        # samples follow the predicted Gaussian (the Cholesky factor is used the right way round)
        samples = fitted.sample(20_000, iv, seed=1)
        np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.05)
        np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.05 * np.abs(cov).max())
    # the regimes really differ, so the tolerances above can tell them apart
    assert np.abs(scm.moments(MENU[1])[0] - scm.moments(None)[0]).max() > 0.5


def test_log_prob_prefers_the_right_regime(scm, fitted):
    z = scm.sample(500, MENU[1], seed=7)
    assert fitted.log_prob(z, MENU[1]).mean() > fitted.log_prob(z, None).mean() + 0.2


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "baseline.pt")
    state = torch.load(path, weights_only=True)
    assert state["format"] == "causal_wm.action_conditioned_model" and state["version"] == 1
    loaded = ActionConditionedModel.load(path, device="cpu")
    for iv in MENU:
        np.testing.assert_array_equal(loaded.sample(64, iv, seed=3), fitted.sample(64, iv, seed=3))
    assert loaded.num_parameters == fitted.num_parameters
    state["version"] = 99
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version"):
        ActionConditionedModel.load(tmp_path / "future.pt", device="cpu")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an action-conditioned model"):
        ActionConditionedModel.load(tmp_path / "other.pt", device="cpu")


def test_menu_adapter_is_a_latent_model(fitted):
    menu_model = fitted.for_menu(MENU)
    assert (menu_model.n, menu_model.num_actions) == (3, 4)
    noise = np.random.default_rng(0).standard_normal((16, 3))
    np.testing.assert_array_equal(menu_model.predict(3, noise), fitted.predict(MENU[3], noise))
    # memoryless model: the current latents are ignored
    np.testing.assert_array_equal(menu_model.predict(3, noise, np.ones(3), 1), fitted.predict(MENU[3], noise))
    with pytest.raises(ValueError, match="outside"):
        menu_model.predict(4, noise)
    with pytest.raises(ValueError, match="targets"):
        fitted.for_menu([None, Intervention.do(5, 1.0)])


def test_transitions_give_the_conditional_distribution_of_a_persistent_world():
    scm = random_scm(GRAPH, seed=1)
    rho = 0.8
    z, interventions, episode, step = _persistent_data(scm, rho)
    model = ActionConditionedModel().fit(z, interventions, episode=episode, step=step, seed=0, device="cpu")
    assert model.transitions
    iv_now, iv_next = MENU[1], MENU[2]
    A, _ = scm._affine_cache(iv_next)
    true_cov = (1 - rho**2) * A.T @ A
    mean_errors, cov_errors, shifts = [], [], []
    for eps_now in np.random.default_rng(0).standard_normal((20, 3)):
        z_now = scm.forward(eps_now[None], iv_now)[0]
        true_mean = scm.forward(rho * eps_now[None], iv_next)[0]
        mean, cov = model.moments(iv_next, z_now, iv_now)
        mean_errors.append(np.abs(mean - true_mean).max())
        cov_errors.append(np.abs(cov - true_cov).max())
        shifts.append(np.abs(true_mean - scm.moments(iv_next)[0]).max())
    assert np.mean(mean_errors) < 0.2 and np.mean(mean_errors) < 0.25 * np.mean(shifts), (mean_errors, shifts)
    assert np.mean(cov_errors) < 0.2, cov_errors
    # blind prediction falls back to the marginal of the action (compared with the data's own
    # moments: strongly autocorrelated episodes hold few independent samples of it)
    rows = np.array([iv == iv_next for iv in interventions])
    marginal_mean, marginal_cov = z[rows].mean(axis=0), np.cov(z[rows].T)
    mean, cov = model.moments(iv_next)
    np.testing.assert_allclose(mean, marginal_mean, atol=0.2)
    np.testing.assert_allclose(cov, marginal_cov, atol=0.3)
    # and the context is worth something: held-in conditional likelihood beats the blind one
    rows = np.flatnonzero(step > 0)[:400]
    conditional = np.mean([model.log_prob(z[r:r + 1], interventions[r], z[r - 1], interventions[r - 1])[0]
                           for r in rows])
    blind = np.mean([model.log_prob(z[r:r + 1], interventions[r])[0] for r in rows])
    assert conditional > blind + 0.3, (conditional, blind)
    with pytest.raises(ValueError, match="current regime"):
        model.for_menu(MENU).predict(1, np.zeros((2, 3)), z_now=np.zeros(3))
    with pytest.raises(ValueError, match="z_now"):
        model.predict(MENU[1], np.zeros((4, 3)), z_now=np.zeros((3, 3)))


def test_errors_are_clear(fitted):
    z = np.random.default_rng(0).standard_normal((50, 3))
    ivs = [None] * 50
    with pytest.raises(ValueError, match="NaN"):
        ActionConditionedModel().fit(np.where(np.arange(150).reshape(50, 3) == 7, np.nan, z), ivs)
    with pytest.raises(ValueError, match="one intervention per row"):
        ActionConditionedModel().fit(z, ivs[:-1])
    with pytest.raises(ValueError, match="shape"):
        ActionConditionedModel().fit(z[:, 0], ivs)
    with pytest.raises(ValueError, match="both episode and step"):
        ActionConditionedModel().fit(z, ivs, episode=np.zeros(50))
    with pytest.raises(ValueError, match="Intervention or None"):
        ActionConditionedModel().fit(z, [0] * 50)
    with pytest.raises(ValueError, match="not fitted"):
        ActionConditionedModel().sample(3, None)
    with pytest.raises(ValueError, match="noise"):
        fitted.predict(None, np.zeros((4, 2)))


def _shifted_data(per_regime: int, seed: int):
    """The world of ``scm`` after a shift: another SCM on the same graph."""
    shifted = random_scm(GRAPH, seed=5)
    z, interventions = [], []
    for k, iv in enumerate(MENU):
        z.append(shifted.sample(per_regime, iv, seed=seed + k))
        interventions += [iv] * per_regime
    return np.concatenate(z), interventions


def _state_tensors(model: ActionConditionedModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.head.state_dict().items()}


def test_fine_tune_returns_a_new_model_that_fits_the_shifted_world(fitted):
    before = _state_tensors(fitted)
    z, interventions = _shifted_data(60, seed=10)
    z_test, interventions_test = _shifted_data(500, seed=100)

    def nll(model):
        return -np.mean([model.log_prob(z_test[i:i + 500], interventions_test[i])
                         for i in range(0, len(z_test), 500)])

    tuned = fitted.fine_tune(z, interventions, seed=0)
    assert tuned is not fitted and tuned.head is not fitted.head
    # self is unchanged, and so are its standardisation and layout in the new model
    for k, v in fitted.head.state_dict().items():
        assert torch.equal(v, before[k])
    np.testing.assert_array_equal(tuned.z_mean, fitted.z_mean)
    np.testing.assert_array_equal(tuned.z_scale, fitted.z_scale)
    history = tuned.history["fine_tune"]
    assert history["num_val"] == 48 and history["num_train"] == 192 and history["best_epoch"] > 0
    assert history["val_loss"][history["best_epoch"]] == min(history["val_loss"])
    assert nll(tuned) < nll(fitted) - 0.3, (nll(tuned), nll(fitted))
    # deterministic in its seed
    again = fitted.fine_tune(z, interventions, seed=0)
    np.testing.assert_array_equal(again.sample(32, MENU[1], seed=0), tuned.sample(32, MENU[1], seed=0))


def test_fine_tune_from_five_rows_trains_a_fixed_number_of_epochs(fitted):
    z, interventions = _shifted_data(5, seed=3)
    z, interventions = z[:5], interventions[:5]
    tuned = fitted.fine_tune(z, interventions, epochs=100, seed=1)
    history = tuned.history["fine_tune"]
    assert history["epochs_run"] == 20 and history["num_val"] == 0 and history["num_train"] == 5
    assert not np.array_equal(tuned.sample(16, None, seed=0), fitted.sample(16, None, seed=0))
    assert tuned.log_prob(z, None).mean() > fitted.log_prob(z, None).mean() - 1e-6
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        fitted.fine_tune(z[:, :2], interventions)
    with pytest.raises(ValueError, match="one intervention per row"):
        fitted.fine_tune(z, interventions[:4])
    with pytest.raises(ValueError, match="targets"):
        fitted.fine_tune(z, [Intervention.do(4, 1.0)] * 5)
    with pytest.raises(ValueError, match="not fitted"):
        ActionConditionedModel().fine_tune(z, interventions)


def test_fine_tune_on_transitions_holds_out_whole_episodes():
    scm = random_scm(GRAPH, seed=1)
    z, interventions, episode, step = _persistent_data(scm, 0.8, episodes=30, length=20)
    model = ActionConditionedModel().fit(z, interventions, episode=episode, step=step, hidden=16, epochs=5,
                                         seed=0, device="cpu")
    new = episode < 10
    tuned = model.fine_tune(z[new], [iv for iv, keep in zip(interventions, new, strict=True) if keep],
                            episode=episode[new], step=step[new], epochs=5, seed=0)
    history = tuned.history["fine_tune"]
    assert tuned.transitions and history["num_val"] == 40 and history["num_train"] == 160
    # the context is used: predictions from another current state differ
    noise = np.zeros((1, 3))
    assert not np.allclose(tuned.predict(MENU[1], noise, z[0], None), tuned.predict(MENU[1], noise, z[5], None))


@pytest.mark.gpu
def test_fits_and_predicts_on_cuda_and_loads_on_cpu(scm, tmp_path):
    z, interventions = _iid_data(scm)
    model = ActionConditionedModel().fit(z, interventions, hidden=32, seed=0, device="cuda")
    for iv in MENU:
        true_mean, true_cov = scm.moments(iv)
        mean, cov = model.moments(iv)
        np.testing.assert_allclose(mean, true_mean, atol=0.15)
        np.testing.assert_allclose(cov, true_cov, atol=0.3)
    loaded = ActionConditionedModel.load(model.save(tmp_path / "cuda.pt"), device="cpu")
    np.testing.assert_allclose(loaded.sample(64, MENU[1], seed=2), model.sample(64, MENU[1], seed=2), atol=1e-4)
