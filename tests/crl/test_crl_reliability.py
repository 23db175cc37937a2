"""Reliability of the CRL learners on bad or unusual input: checkpoints of other data (GSCALE-I),
interventional environments that change nothing, data of extreme magnitude, and the message for
a wrong number of environments (LSCALE-I, UMNI-CRL)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from causal_wm.crl import gscale
from causal_wm.crl.gscale import gscale_i
from causal_wm.crl.lscale import lscale_i
from causal_wm.crl.umni import umni_crl
from causal_wm.persistence import ModelFileError
from causal_wm.scm import gscale_problem, lscale_problem, umni_problem


def _env_graph(result) -> np.ndarray:
    """The learned graph indexed by interventional environment (single-node targets): invariant to
    the order in which the learner numbers its latents."""
    t = np.asarray(result.target_latents)
    return result.graph[np.ix_(t, t)]


def _with_null_env(problem):
    """The problem's environments plus one more that is fresh observational samples (half of envs[0])."""
    x0 = problem.observations[0]
    half = len(x0) // 2
    return [x0[:half], *problem.observations[1:], x0[half:]]


# --- 1. GSCALE-I checkpoints carry a data fingerprint -----------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return gscale_problem(3, 5, 1500, seed=2)


GSCALE = dict(preset="debug", seed=1, device="cpu", epochs=4, checkpoint_every=2)


def test_gscale_refuses_a_checkpoint_of_other_data(tiny, tmp_path):
    gscale_i(tiny.observations, pairs=tiny.pairs, checkpoint_dir=tmp_path, **GSCALE)
    assert torch.load(tmp_path / "restart0.pt", weights_only=True)["fingerprint"]
    other = [x + 0.05 for x in tiny.observations]
    with pytest.raises(ValueError, match="other data or settings") as err:
        gscale_i(other, pairs=tiny.pairs, checkpoint_dir=tmp_path, **GSCALE)
    assert str(tmp_path) in str(err.value) and "delete" in str(err.value) and "checkpoint_dir" in str(err.value)
    # other settings (the seed) are another run too
    with pytest.raises(ValueError, match="other data or settings"):
        gscale_i(tiny.observations, pairs=tiny.pairs, checkpoint_dir=tmp_path, **{**GSCALE, "seed": 2})


def test_gscale_refuses_a_checkpoint_without_fingerprint(tiny, tmp_path):
    gscale_i(tiny.observations, pairs=tiny.pairs, checkpoint_dir=tmp_path, **GSCALE)
    blob = torch.load(tmp_path / "restart0.pt", weights_only=True)
    del blob["fingerprint"]  # as written by earlier versions
    torch.save(blob, tmp_path / "restart0.pt")
    with pytest.raises(ValueError, match="no data fingerprint"):
        gscale_i(tiny.observations, pairs=tiny.pairs, checkpoint_dir=tmp_path, **GSCALE)
    (tmp_path / "restart0.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"restart0\.pt"):
        gscale_i(tiny.observations, pairs=tiny.pairs, checkpoint_dir=tmp_path, **GSCALE)


def test_gscale_pairs_file_is_checked_and_reused(tiny, tmp_path, monkeypatch):
    first = gscale_i(tiny.observations, checkpoint_dir=tmp_path, **GSCALE)
    saved = json.loads((tmp_path / "pairs.json").read_text())
    assert saved["fingerprint"] and [tuple(p) for p in saved["pairs"]] == first.pairs

    # same data and settings: the pairs and the finished checkpoint are reused, no search runs
    def no_search(*args, **kwargs):
        raise AssertionError("find_pairs ran although pairs.json holds the pairs of these data")

    monkeypatch.setattr(gscale, "find_pairs", no_search)
    again = gscale_i(tiny.observations, checkpoint_dir=tmp_path, **GSCALE)
    assert again.pairs == first.pairs
    x = tiny.observations[0][:200]
    np.testing.assert_allclose(again.encode(x), first.encode(x), rtol=1e-6, atol=1e-7)

    # a pairs.json of other data (here: other pairs under the fingerprint of nothing) is refused
    # before any work, and so is one without a fingerprint
    (tmp_path / "restart0.pt").unlink()
    (tmp_path / "pairs.json").write_text(json.dumps({"pairs": [[1, 2], [3, 4], [5, 6]], "fingerprint": "0" * 40}))
    with pytest.raises(ValueError, match="other data or settings") as err:
        gscale_i(tiny.observations, checkpoint_dir=tmp_path, **GSCALE)
    assert "pairs.json" in str(err.value) and str(tmp_path) in str(err.value)
    (tmp_path / "pairs.json").write_text(json.dumps({"pairs": [[1, 2], [3, 4], [5, 6]]}))
    with pytest.raises(ValueError, match="no data fingerprint"):
        gscale_i(tiny.observations, checkpoint_dir=tmp_path, **GSCALE)


# --- 2. interventional environments that change nothing ----------------------------------------------
def test_lscale_refuses_an_environment_with_no_effect():
    p = lscale_problem(3, 6, 3000, seed=0)
    with pytest.raises(ValueError, match=r"environment 4 .*no detectable effect.*statistic .*p-value") as err:
        lscale_i(_with_null_env(p))
    assert "null_envs='drop'" in str(err.value)


def test_lscale_drops_an_environment_with_no_effect():
    p = lscale_problem(3, 6, 3000, seed=0)
    envs = _with_null_env(p)
    result = lscale_i(envs, null_envs="drop")
    assert result.diagnostics["dropped_envs"] == [4]
    assert sorted(result.env_targets) == [1, 2, 3] and result.target_latents.shape == (3,)
    reference = lscale_i(envs[:4])
    np.testing.assert_array_equal(result.graph, reference.graph)
    np.testing.assert_allclose(result.encoder, reference.encoder)
    # n = 3 given and one of the three interventional environments changes nothing: too few left
    with pytest.raises(ValueError, match=r"one interventional environment per latent.*after dropping"):
        lscale_i([*envs[:3], envs[4]], n=3, null_envs="drop")
    with pytest.raises(ValueError, match="null_envs must be one of"):
        lscale_i(envs, null_envs="ignore")


def test_lscale_refuses_a_given_score_difference_of_zero():
    p = lscale_problem(3, 6, 500, seed=0)
    D = p.oracle_score_differences()
    with pytest.raises(ValueError, match=r"environment 3 .*score_diffs\[2\] has relative energy"):
        lscale_i(p.observations, score_diffs=[D[0], D[1], np.zeros_like(D[2])])


def test_umni_refuses_or_drops_an_environment_with_no_effect():
    p = umni_problem(3, 8, 3000, seed=0)
    envs = _with_null_env(p)
    with pytest.raises(ValueError, match=r"environment 4 .*no detectable effect.*p-value"):
        umni_crl(envs)
    result = umni_crl(envs, null_envs="drop")
    assert result.diagnostics["dropped_envs"] == [4]
    assert sorted(result.env_targets) == [1, 2, 3]
    reference = umni_crl(envs[:4])
    np.testing.assert_array_equal(result.graph, reference.graph)
    np.testing.assert_allclose(result.encoder, reference.encoder)
    with pytest.raises(ValueError, match=r"at least n=3 interventional environments.*after dropping"):
        umni_crl([*envs[:3], envs[4]], n=3, null_envs="drop")
    D = p.oracle_score_differences()
    with pytest.raises(ValueError, match=r"environment 2 .*relative energy"):
        umni_crl(p.observations, score_diffs=[D[0], np.zeros_like(D[1]), D[2]])


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("num_samples", [500, 3000])
def test_the_no_effect_test_passes_the_real_problems(hard, num_samples):
    from causal_wm.crl.environments import null_environment_test

    for seed in range(3):
        for problem, n in ((lscale_problem(4, 10, num_samples, hard=hard, seed=seed), 4),
                           (umni_problem(3, 8, num_samples, hard=hard, seed=seed), 3)):
            info = null_environment_test(problem.observations, n)
            assert not any(info["null"])
            assert max(info["p_value"]) < 1e-3 * info["threshold"]  # far from the cut
    lscale_i(lscale_problem(4, 10, 500, hard=hard, seed=4).observations, hard=hard)
    umni_crl(umni_problem(3, 8, 500, hard=hard, seed=4).observations, hard=hard)


# --- 3. data of extreme magnitude -------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_lscale_at_extreme_scales(factor):
    p = lscale_problem(3, 6, 3000, seed=0)
    reference = lscale_i(p.observations)
    result = lscale_i([x * factor for x in p.observations])
    np.testing.assert_array_equal(_env_graph(result), _env_graph(reference))
    x0 = p.observations[0]
    np.testing.assert_allclose(result.encode(x0 * factor), reference.encode(x0), atol=1e-9)
    assert result.diagnostics["data_scale"] != 1.0 and reference.diagnostics["data_scale"] == 1.0
    # given score differences (gradients in x) scale inversely
    D = p.oracle_score_differences()
    oracle = lscale_i(p.observations, score_diffs=D)
    scaled = lscale_i([x * factor for x in p.observations], score_diffs=[d / factor for d in D])
    np.testing.assert_array_equal(_env_graph(scaled), _env_graph(oracle))


@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_umni_at_extreme_scales(factor):
    p = umni_problem(3, 8, 3000, seed=0)
    reference = umni_crl(p.observations)
    result = umni_crl([x * factor for x in p.observations])
    np.testing.assert_array_equal(result.graph, reference.graph)
    np.testing.assert_array_equal(result.target_matrix, reference.target_matrix)
    x0 = p.observations[0]
    np.testing.assert_allclose(result.encode(x0 * factor), reference.encode(x0), atol=1e-8)


def test_environments_of_incompatible_scales_are_refused():
    p = lscale_problem(3, 6, 500, seed=0)
    envs = [x.copy() for x in p.observations]
    envs[2] *= 1e250
    with pytest.raises(ValueError, match=r"environment 0 .*cannot be analysed together"):
        lscale_i(envs)
    q = umni_problem(3, 8, 500, seed=0)
    envs = [x * 1e-200 if m == 1 else x * 1e100 for m, x in enumerate(q.observations)]
    with pytest.raises(ValueError, match=r"environment 1 .*cannot be analysed together"):
        umni_crl(envs)


# --- 4. one environment too many ----------------------------------------------------------------------
def test_one_environment_too_many_names_the_cause():
    p = lscale_problem(4, 8, 2000, seed=1)
    extra = [*p.observations, p.observations[2][::-1].copy()]  # a second intervention on one node
    with pytest.raises(ValueError, match=r"lscale_i got M = 5 interventional environments for n = 4 latents; "
                                         r"LSCALE-I needs exactly one single-node intervention per latent: "
                                         r"drop the 1 extra"):
        lscale_i(extra, n=4)
    with pytest.raises(ValueError, match=r"rank-deficient.*n defaults to the number of interventional "
                                         r"environments \(lscale_i got M = 5\).*exactly one single-node "
                                         r"intervention per latent.*drop the 1 extra"):
        lscale_i(extra)
    q = umni_problem(3, 8, 2000, seed=1)
    extra = [*q.observations, q.observations[1][::-1].copy()]
    with pytest.raises(ValueError, match=r"rank-deficient.*n defaults to the number of interventional "
                                         r"environments \(umni_crl got M = 4\).*pass n=3"):
        umni_crl(extra)
    assert umni_crl(extra, n=3).n == 3  # more environments than latents is a valid UMNI-CRL design
