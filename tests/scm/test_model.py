import numpy as np
import pytest
import torch

from causal_wm.scm import (
    SCM,
    FunctionMechanism,
    Intervention,
    LinearMechanism,
    erdos_renyi_dag,
    named_dag,
    random_scm,
)

REGIMES = [
    None,
    Intervention.hard(2, shift=1.0, std=0.7),
    Intervention.hard(3, scale=2.0),
    Intervention.soft(3, parent_scale=0.5, shift=0.3),
    Intervention.do(1, -1.5),
    Intervention.hard((1, 3), shift=(1.0, -1.0), std=0.5),
]


def _scm(kind: str, seed: int = 0) -> SCM:
    A = erdos_renyi_dag(5, edge_prob=0.6, seed=seed)
    A[0, 3] = A[1, 3] = 0
    A = named_dag("full", 5) if kind == "quadratic" else A
    return random_scm(A, kind, seed=seed)


def _torch_log_prob(scm: SCM, z: torch.Tensor, intervention) -> torch.Tensor:
    """Independent autograd reference: log-density written with torch ops from the mechanisms."""
    factor, mean, std = (torch.tensor(a) for a in scm.node_params(intervention))
    total = torch.zeros(z.shape[0], dtype=torch.float64)
    for j, mech in enumerate(scm.mechanisms):
        f = torch.zeros(z.shape[0], dtype=torch.float64)
        if mech is not None:
            zp = z[:, list(mech.parents)]
            if isinstance(mech, LinearMechanism):
                f = zp @ torch.as_tensor(mech.weights)
            elif hasattr(mech, "matrix"):
                f = torch.sqrt(torch.einsum("np,pq,nq->n", zp, torch.as_tensor(mech.matrix), zp))
            else:
                h = torch.tanh(zp @ torch.as_tensor(mech.W1).T + torch.as_tensor(mech.b1))
                f = h @ torch.as_tensor(mech.w2) + mech.b2
        r = (z[:, j] - factor[j] * f - mean[j]) / std[j]
        total = total - 0.5 * r**2 - torch.log(std[j]) - 0.5 * np.log(2 * np.pi)
    return total


@pytest.mark.parametrize("kind", ["linear", "quadratic", "mlp"])
@pytest.mark.parametrize("regime", range(len(REGIMES)))
def test_log_prob_and_score_match_autograd(kind, regime):
    scm = _scm(kind, seed=regime)
    iv = REGIMES[regime]
    z = scm.sample(64, iv, seed=1)
    zt = torch.tensor(z, requires_grad=True)
    lp = _torch_log_prob(scm, zt, iv)
    (grad,) = torch.autograd.grad(lp.sum(), zt)
    np.testing.assert_allclose(scm.log_prob(z, iv), lp.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(scm.score(z, iv), grad.numpy(), rtol=1e-8, atol=1e-8)


def test_score_matches_finite_differences_for_function_mechanism():
    A = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    mech = FunctionMechanism((0, 1), lambda p: np.sin(p[:, 0]) * p[:, 1],
                             lambda p: np.stack([np.cos(p[:, 0]) * p[:, 1], np.sin(p[:, 0])], axis=1))
    scm = SCM(A, [None, None, mech], [1.0, 0.8, 0.3])
    z = scm.sample(20, seed=0)
    h = 1e-6
    numeric = np.stack([(scm.log_prob(z + h * e) - scm.log_prob(z - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(scm.score(z), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("regime", range(len(REGIMES)))
def test_linear_sampled_moments_match_analytic(regime):
    scm = _scm("linear", seed=3)
    iv = REGIMES[regime]
    mean, cov = scm.moments(iv)
    z = scm.sample(200_000, iv, seed=regime)
    np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.03 * np.sqrt(np.diag(cov)).max() + 0.01)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.03 * np.abs(cov).max())


def test_interventions_cut_parents_and_set_values():
    scm = random_scm(named_dag("chain", 3), "linear", seed=0)
    z = scm.sample(50_000, Intervention.hard(1, shift=2.0, std=0.5), seed=0)
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.02  # parent cut
    assert abs(z[:, 1].mean() - 2.0) < 0.02 and abs(z[:, 1].std() - 0.5) < 0.01
    z = scm.sample(10_000, Intervention.do(2, -1.0), seed=1)
    assert abs(z[:, 2].mean() + 1.0) < 0.01 and z[:, 2].std() < 0.06


def test_soft_intervention_scales_parent_weights():
    scm = random_scm(named_dag("chain", 2), "linear", seed=0)
    W = scm.weight_matrix()
    np.testing.assert_allclose(scm.weight_matrix(Intervention.soft(1, parent_scale=0.5)), 0.5 * W)


def test_forward_abduct_round_trip_and_seeding():
    for kind in ["linear", "quadratic", "mlp"]:
        scm = _scm(kind)
        eps = np.random.default_rng(0).standard_normal((100, 5))
        for iv in REGIMES:
            np.testing.assert_allclose(scm.abduct(scm.forward(eps, iv), iv), eps, atol=1e-9)
        np.testing.assert_array_equal(scm.sample(10, seed=4), scm.sample(10, seed=4))


def test_score_difference_is_sparse_on_target_and_parents():
    scm = random_scm(named_dag("chain", 4), "linear", seed=0)
    z = scm.sample(100, seed=0)
    D = scm.score_difference(z, None, Intervention.hard(2, scale=2.0))
    assert np.abs(D[:, [0, 3]]).max() < 1e-12
    assert np.abs(D[:, [1, 2]]).min(axis=0).max() > 0


def test_truncation_by_rejection():
    scm = random_scm(named_dag("chain", 3), "linear", seed=0)
    boxed = SCM(scm.graph, scm.mechanisms, scm.noise_std, box=(-1.0, 1.0))
    z = boxed.sample(2000, seed=0)
    assert z.shape == (2000, 3) and np.all(np.abs(z) <= 1.0)
    with pytest.raises(RuntimeError, match="accepted"):
        boxed.sample(10, Intervention.do(0, 5.0), seed=0, max_tries=3)


def test_standardized_has_unit_variance_and_same_graph():
    scm = random_scm(erdos_renyi_dag(6, edge_prob=0.7, seed=2), "linear", seed=2).standardized()
    _, cov = scm.moments()
    np.testing.assert_allclose(np.diag(cov), 1.0)


def test_pickle_round_trip_keeps_caches_working():
    import pickle

    scm = _scm("linear")
    again = pickle.loads(pickle.dumps(scm))
    np.testing.assert_array_equal(again.sample(5, REGIMES[1], seed=0), scm.sample(5, REGIMES[1], seed=0))


def test_errors():
    scm = _scm("linear")
    with pytest.raises(ValueError, match="shape"):
        scm.score(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="targets"):
        scm.sample(3, Intervention.hard(7))
    with pytest.raises(ValueError, match="linear SCMs only"):
        _scm("mlp").moments()
    with pytest.raises(ValueError, match="one mechanism per node"):
        SCM(named_dag("chain", 2), [None], [1.0, 1.0])
    with pytest.raises(ValueError, match="no mechanism"):
        SCM(named_dag("chain", 2), [None, None], [1.0, 1.0])
    with pytest.raises(ValueError, match="noise_std"):
        SCM(named_dag("empty", 2), [None, None], [1.0, 0.0])
