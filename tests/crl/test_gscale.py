"""Tests of GSCALE-I for vector data (causal_wm.crl.gscale), debug preset, one torch thread."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from causal_wm.crl import gscale
from causal_wm.crl.gscale import (
    GScaleResult,
    InputMap,
    TrainingDivergedError,
    descendant_statistic,
    find_pairs,
    gscale_i,
    make_config,
    min_cost_pairing,
    pair_concentration,
    transitive_reduction,
)
from causal_wm.crl.mechanism_graph import mechanism_graph, mechanism_statistic
from causal_wm.scm import gscale_problem
from causal_wm.scm.graphs import is_dag, transitive_closure


@pytest.fixture(scope="module")
def tiny():
    """n = 3 latents, d = 5, tanh mixing, 1,500 samples per environment."""
    return gscale_problem(3, 5, 1500, seed=2)


@pytest.fixture(scope="module")
def tiny_result(tiny):
    return gscale_i(tiny.observations, pairs=tiny.pairs, preset="debug", seed=0, device="cpu")


# --- pairing ------------------------------------------------------------------------------------
def _brute_force_pairing(cost: np.ndarray) -> float:
    items = list(range(len(cost)))

    def best(rest: list[int]) -> float:
        if not rest:
            return 0.0
        i, others = rest[0], rest[1:]
        return min(cost[i, j] + best([k for k in others if k != j]) for j in others)

    return best(items)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_cost_pairing_is_exact(seed):
    rng = np.random.default_rng(seed)
    C = rng.random((8, 8))
    C = C + C.T
    pairs, total = min_cost_pairing(C)
    assert total == pytest.approx(_brute_force_pairing(C))
    assert sorted(itertools.chain(*pairs)) == list(range(8))
    assert total == pytest.approx(sum(C[a, b] for a, b in pairs))


def test_min_cost_pairing_rejects_odd_size():
    with pytest.raises(ValueError, match="even"):
        min_cost_pairing(np.zeros((3, 3)))


def test_pair_concentration_with_exact_scores_finds_the_pairs():
    # exact scores pushed to observation space: the statistic alone must identify the pairing
    problem = gscale_problem(4, 8, 300, seed=0)
    X = np.concatenate(problem.observations[1:])
    Z = np.concatenate(problem.latents[1:])
    grads = np.stack([problem.mixing.pushforward_score(Z, problem.scm.score(Z, iv))
                      for iv in problem.interventions[1:]], axis=1)
    conc = pair_concentration(X, grads, 4, clusters=8, seed=0)
    pairs, _ = min_cost_pairing(1.0 - conc)
    assert sorted((a + 1, b + 1) for a, b in pairs) == sorted(problem.pairs)
    true = np.zeros_like(conc, dtype=bool)
    for a, b in problem.pairs:
        true[a - 1, b - 1] = true[b - 1, a - 1] = True
    others = ~true & ~np.eye(len(conc), dtype=bool)
    assert conc[true].mean() > conc[others].mean() + 0.1


def test_find_pairs_recovers_the_pairing_of_a_tiny_problem(tiny):
    search = find_pairs(tiny.observations, config=make_config("debug", pair_epochs=15, pair_hidden=64), seed=0,
                        device="cpu")
    assert search.pairs == sorted(tiny.pairs)
    assert search.concentration.shape == (6, 6)
    assert search.classifier_accuracy > 1 / 6


# --- the learner --------------------------------------------------------------------------------
def test_shapes_and_conventions(tiny, tiny_result):
    r = tiny_result
    n, d = tiny.n, tiny.d
    x = tiny.observations[0]
    z = r.encode(x)
    assert z.shape == (len(x), n) and np.all(np.isfinite(z))
    assert r.decode(z).shape == (len(x), d)
    assert r.graph.shape == (n, n) and set(np.unique(r.graph)) <= {0, 1} and is_dag(r.graph)
    assert r.target_latents.shape == (2 * n,)
    for k, (a, b) in enumerate(r.pairs):
        assert r.target_latents[a - 1] == r.target_latents[b - 1] == k
    assert r.pairs == [tuple(p) for p in tiny.pairs] and r.pairs_given  # given order: pair k is latent k
    # the torch modules agree with the numpy convenience functions
    with torch.no_grad():
        zt = r.encoder_module()(torch.as_tensor(x[:50], dtype=torch.float64)).double().numpy()
    np.testing.assert_allclose(zt, z[:50], rtol=1e-5, atol=1e-5)
    # learned latents have unit observational variance
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-3)


def test_losses_decrease(tiny_result):
    h = tiny_result.history[0]
    assert h["loss"][-1] < 0.5 * h["loss"][1]  # index 0 is before training (no train loss)
    # the linear start already classifies the pairs well; training must not make it worse
    assert min(h["val_pair_loss"][1:]) < h["val_pair_loss"][0]
    assert h["val_pair_loss"][-1] < h["val_pair_loss"][0] + 0.01
    assert h["val_reconstruction"][-1] < 0.5 * h["val_reconstruction"][0]
    assert h["val_pair_accuracy"][-1] > 0.6


def test_reconstruction_is_close(tiny, tiny_result):
    x = tiny.observations[0][:500]
    err = np.mean((tiny_result.decode(tiny_result.encode(x)) - x) ** 2) / np.var(x)
    assert err < 0.2


def test_save_load_round_trip(tiny, tiny_result, tmp_path):
    path = tmp_path / "gscale.pt"
    tiny_result.save(path)
    loaded = GScaleResult.load(path)
    x = tiny.observations[3][:200]
    np.testing.assert_array_equal(loaded.encode(x), tiny_result.encode(x))
    np.testing.assert_array_equal(loaded.graph, tiny_result.graph)
    np.testing.assert_array_equal(loaded.target_latents, tiny_result.target_latents)
    assert loaded.env_targets == tiny_result.env_targets
    assert loaded.pairs == tiny_result.pairs
    for h_loaded, h in zip(loaded.history, tiny_result.history, strict=True):
        assert h_loaded.keys() == h.keys()
        for key in h:
            np.testing.assert_array_equal(h_loaded[key], h[key])
    torch.load(path, weights_only=True)  # the file holds only weights-only-safe content


def test_checkpoint_resume_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    options = dict(pairs=tiny.pairs, preset="debug", seed=1, device="cpu", epochs=8, checkpoint_every=4)
    reference = gscale_i(tiny.observations, checkpoint_dir=tmp_path / "a", **options)

    original = gscale.save_atomic

    def interrupt_after_first_checkpoint(obj, path):
        original(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(gscale, "save_atomic", interrupt_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        gscale_i(tiny.observations, checkpoint_dir=tmp_path / "b", **options)
    monkeypatch.setattr(gscale, "save_atomic", original)
    saved = torch.load(tmp_path / "b" / "restart0.pt", weights_only=True)
    assert saved["epoch"] == 4
    resumed = gscale_i(tiny.observations, checkpoint_dir=tmp_path / "b", **options)
    x = tiny.observations[0][:200]
    np.testing.assert_allclose(resumed.encode(x), reference.encode(x), rtol=1e-5, atol=1e-6)
    assert resumed.history[0]["val_pair_loss"] == pytest.approx(reference.history[0]["val_pair_loss"])


def test_diverging_training_raises(tiny, tmp_path):
    with pytest.raises(TrainingDivergedError, match="diverged"):
        gscale_i(tiny.observations, pairs=tiny.pairs, preset="debug", device="cpu", lr=1e30,
                 checkpoint_dir=tmp_path)
    assert not (tmp_path / "restart0.pt").exists()  # nothing was written from the broken state


# --- graph pieces -------------------------------------------------------------------------------
def test_transitive_reduction():
    chain = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(transitive_reduction(transitive_closure(chain)), chain)


def test_descendant_statistic_separates_descendants():
    problem = gscale_problem(4, 4, 3000, seed=3)
    K = descendant_statistic(problem.latents, problem.pairs)
    T = transitive_closure(problem.graph)
    off = ~np.eye(4, dtype=bool)
    assert T.sum() > 0
    # weak edges can sit at the noise level; the bulk must separate
    assert np.median(K[T == 1]) > 3 * np.median(K[(T == 0) & off])
    assert np.mean(K[T == 1] > K[(T == 0) & off].max()) >= 0.5


def _targets(problem) -> np.ndarray:
    targets = np.zeros(2 * problem.n, dtype=np.int64)
    for k, (a, b) in enumerate(problem.pairs):
        targets[[a - 1, b - 1]] = k
    return targets


def _warp(z: np.ndarray) -> np.ndarray:
    """An element-wise increasing map (what the learned latents are up to)."""
    return np.tanh(z / 2) ** 3 + z


@pytest.mark.parametrize(("latent", "seed", "steps"), [("quadratic", 2, 1200), ("quadratic", 3, 1200),
                                                      ("linear", 0, 400)])
def test_mechanism_graph_recovers_the_dag_from_warped_true_latents(latent, seed, steps):
    # true latents up to element-wise maps, targets known: the fitted mechanisms give the exact DAG
    problem = gscale_problem(4, 4, 4000, latent=latent, seed=seed)
    A, info = mechanism_graph([_warp(z) for z in problem.latents], _targets(problem), seed=0, steps=steps,
                              hidden=16)
    np.testing.assert_array_equal(A, problem.graph)
    S = info["mechanism_statistic"]
    assert S.shape == (4, 4) and np.all(np.diag(S) == 0)
    assert S[problem.graph == 1].min() > info["mechanism_threshold"] > S[problem.graph.T == 1].max()
    assert set(info["mechanism_val_loss"]) == {"mlp", "linear"} and info["mechanism_kind"] in ("mlp", "linear")


def test_mechanism_graph_is_deterministic_and_checks_targets():
    problem = gscale_problem(3, 3, 600, seed=1)
    lat, targets = problem.latents, _targets(problem)
    a, info_a = mechanism_graph(lat, targets, seed=5, steps=60, hidden=8, kinds=("mlp",))
    b, info_b = mechanism_graph(lat, targets, seed=5, steps=60, hidden=8, kinds=("mlp",))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(info_a["mechanism_statistic"], info_b["mechanism_statistic"])
    with pytest.raises(ValueError, match="targets"):
        mechanism_graph(lat, targets[:-1])
    with pytest.raises(ValueError, match="targets"):
        mechanism_graph(lat, np.full_like(targets, 3))
    assert callable(mechanism_statistic)


def test_graph_methods_and_old_files(tiny, tiny_result):
    assert tiny_result.diagnostics["graph"]["method"] == "mechanism"
    assert tiny_result.diagnostics["graph"]["mechanism_statistic"].shape == (tiny.n, tiny.n)
    scores = gscale_i(tiny.observations, pairs=tiny.pairs, preset="debug", seed=0, device="cpu", epochs=2,
                      graph_method="scores")
    assert scores.diagnostics["graph"]["method"] == "scores" and is_dag(scores.graph)
    with pytest.raises(ValueError, match="graph_method"):
        make_config("debug", graph_method="magic")
    # a file written before the graph method was recorded still loads
    state = tiny_result.state()
    diagnostics = json.loads(state["diagnostics"])
    del diagnostics["graph"]["method"]
    state["diagnostics"] = json.dumps(diagnostics)
    old = GScaleResult.from_state(state)
    np.testing.assert_array_equal(old.graph, tiny_result.graph)


def test_input_map_inverts():
    rng = np.random.default_rng(0)
    x = np.tanh(3 * rng.standard_normal((2000, 3)))
    for kind in ("quantile", "standard"):
        m = InputMap(x, kind)
        u = m(torch.as_tensor(x))
        np.testing.assert_allclose(m.inverse(u).numpy(), x, atol=1e-8)


# --- input checks -------------------------------------------------------------------------------
def test_bad_inputs(tiny):
    obs = tiny.observations
    with pytest.raises(ValueError, match="two hard interventions per latent"):
        gscale_i(obs[:-1], preset="debug")
    with pytest.raises(ValueError, match="exactly 2 n"):
        gscale_i(obs, n=2, preset="debug")
    bad = [x.copy() for x in obs]
    bad[2][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gscale_i(bad, preset="debug")
    with pytest.raises(ValueError, match="same dimension"):
        gscale_i([obs[0]] + [x[:, :4] for x in obs[1:]], preset="debug")
    narrow = [x[:, :2] for x in obs]
    with pytest.raises(ValueError, match="d=2"):
        gscale_i(narrow, preset="debug")
    with pytest.raises(ValueError, match="disjoint"):
        gscale_i(obs, pairs=[(1, 2), (1, 3), (4, 5)], preset="debug")
    with pytest.raises(ValueError, match="unknown preset"):
        gscale_i(obs, preset="huge")
    with pytest.raises(ValueError, match="unknown setting"):
        gscale_i(obs, preset="debug", epochz=3)


@pytest.mark.gpu
def test_runs_on_cuda_with_mixed_precision(tiny):
    r = gscale_i(tiny.observations, preset="debug", device="cuda", amp=True, pair_epochs=15, pair_hidden=64)
    assert r.diagnostics["device"].startswith("cuda")
    z = r.encode(tiny.observations[0])
    assert z.shape == (len(tiny.observations[0]), tiny.n) and np.all(np.isfinite(z))
