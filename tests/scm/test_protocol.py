import numpy as np
import pytest

from causal_wm.scm import (
    gscale_problem,
    lscale_problem,
    multi_node_target_matrix,
    random_linear_mixing_matrix,
    random_mixing,
    umni_problem,
)


def test_linear_mixing_normalisation_and_conditioning():
    G = random_linear_mixing_matrix(5, 100, seed=0)
    assert G.shape == (100, 5)
    np.testing.assert_allclose(np.abs(G).max(axis=0), 1.0)
    assert np.linalg.matrix_rank(G) == 5
    with pytest.raises(ValueError, match="d must be >= n"):
        random_linear_mixing_matrix(5, 3)


@pytest.mark.parametrize("kind", ["linear", "tanh", "mlp"])
def test_mixing_jacobians_match_finite_differences(kind):
    mix = random_mixing(kind, 3, 6, seed=1)
    z = np.random.default_rng(0).standard_normal((4, 3))
    h = 1e-6
    numeric = np.stack([(mix(z + h * e) - mix(z - h * e)) / (2 * h) for e in np.eye(3)], axis=2)
    np.testing.assert_allclose(mix.jacobian(z), numeric, atol=1e-6)


def test_lscale_problem_shapes_targets_and_oracle_scores():
    p = lscale_problem(4, 10, 300, seed=0)
    assert len(p.observations) == 5 and all(x.shape == (300, 10) for x in p.observations)
    assert sorted(t for (t,) in p.targets) == [0, 1, 2, 3]
    np.testing.assert_allclose(p.observations[2], p.mixing(p.latents[2]))
    D_z = p.latent_score_differences()
    D_x = p.oracle_score_differences()
    for dz, dx, (t,) in zip(D_z, D_x, p.targets, strict=True):
        # change of variables D_Z = G^T D_X, and sparsity on {t} and its parents
        np.testing.assert_allclose(dx @ p.mixing.G, dz, atol=1e-9)
        allowed = {t, *np.flatnonzero(p.graph[:, t]).tolist()}
        outside = [i for i in range(4) if i not in allowed]
        assert np.abs(dz[:, outside]).max(initial=0.0) < 1e-12
    assert lscale_problem(4, 10, 50, seed=3).targets == lscale_problem(4, 10, 50, seed=3).targets


def test_soft_lscale_problem_keeps_parents():
    p = lscale_problem(3, 5, 10, hard=False, seed=0)
    assert all(iv.kind == "soft" for iv in p.interventions[1:])


def test_gscale_problem_pairs_hit_the_same_node():
    p = gscale_problem(4, 8, 200, seed=0)
    assert len(p.observations) == 9 and len(p.pairs) == 4
    for a, b in p.pairs:
        assert p.interventions[a].targets == p.interventions[b].targets
        D = p.scm.score_difference(p.latents[0], p.interventions[a], p.interventions[b])
        t = p.interventions[a].targets[0]
        assert np.abs(np.delete(D, t, axis=1)).max() < 1e-12  # pair difference lives on node t only
    assert np.all(np.abs(p.observations[0]) < 1)


def test_multi_node_design_is_invertible_and_covers_every_node():
    for seed in range(20):
        D = multi_node_target_matrix(6, seed=seed)
        assert abs(np.linalg.det(D)) > 0.5 and D.sum(axis=0).min() >= 1
    p = umni_problem(4, 20, 100, seed=0)
    np.testing.assert_array_equal(p.target_matrix.sum(axis=1) >= 1, True)
    assert np.all(np.triu(p.graph) == p.graph)
    with pytest.raises(ValueError, match="invertible"):
        umni_problem(3, 5, 10, target_matrix=np.ones((3, 3)))


def test_soft_interventions_change_root_nodes_too():
    p = lscale_problem(3, 5, 20_000, hard=False, seed=0)
    for iv, z in zip(p.interventions[1:], p.latents[1:], strict=True):
        (t,) = iv.targets
        assert z[:, t].var() > 1.5 * p.latents[0][:, t].var() or p.graph[:, t].any()
