"""``CausalWorldModel.adapt``: a mechanism shift found and refitted from 60 new rows of a true-latent
SCM world (``conftest.SCMWorld``), nothing flagged without a shift, the warm-started mechanism on disk."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from causal_wm.scm import Intervention
from causal_wm.world_model import CausalWorldModel
from causal_wm.world_model.mechanisms import NodeMechanism, QuantileNoise, residual_noise
from causal_wm.world_model.model import UnusedRowsWarning

SHIFTED, CHILD = 2, 3
DO_PARENT = Intervention.do(1, 2.0)


def _means(model: CausalWorldModel, intervention) -> np.ndarray:
    return model.sample(20_000, intervention, seed=0).mean(axis=0)


def test_adapt_flags_exactly_the_shifted_mechanism_and_moves_its_child_to_the_truth(scm_world):
    model = scm_world.model
    shifted_scm = scm_world.shifted(SHIFTED)
    z, regimes = scm_world.sample(60, seed=100, scm=shifted_scm)
    before = model.mechanisms[SHIFTED].state()
    adapted, report = model.adapt(z, regimes)

    assert report["refitted"] == [SHIFTED]
    assert report["rows_used"] == 60
    entries = {e["latent"]: e for e in report["mechanisms"]}
    assert entries[SHIFTED]["shifted"] and entries[SHIFTED]["statistic"] > 8.0
    for k in (0, 1, CHILD):
        assert not entries[k]["shifted"] and abs(entries[k]["statistic"]) < 3.0, entries[k]
    # rows of regimes that intervene on the latent do not test its mechanism
    intervened = np.isin(regimes, [5, 6])
    assert entries[SHIFTED]["rows"] == int(np.sum(~intervened))

    # the adapted mechanism is a warm start of the old one; everything else is the old model's
    assert adapted.mechanisms[SHIFTED].kind == "warm start (linear)"
    assert report["estimators"] == {SHIFTED: "warm start"}
    for k in (0, 1, CHILD):
        assert adapted.mechanisms[k].state() == model.mechanisms[k].state()
    assert adapted.calibration == model.calibration and adapted.latent_of_node == model.latent_of_node
    np.testing.assert_array_equal(adapted.graph, model.graph)
    assert adapted.diagnostics["adaptations"][-1]["refitted"] == [SHIFTED]
    # self is unchanged
    assert model.mechanisms[SHIFTED].state() == before and "adaptations" not in model.diagnostics

    # predictions under interventions follow the shifted world: an imagined do on the shifted node's
    # parent and a regime of the data
    # (over 30 draws of the 60 rows the adapted error is at most 0.3 of the old one, 0.07 in the median)
    for intervention in (DO_PARENT, 4):
        iv = scm_world.menu[intervention] if isinstance(intervention, int) else intervention
        truth_old, truth_new = scm_world.scm.moments(iv)[0], shifted_scm.moments(iv)[0]
        old_mean, new_mean = _means(model, intervention), _means(adapted, intervention)
        for k in (SHIFTED, CHILD):
            assert abs(truth_new[k] - truth_old[k]) > 1.0
            assert abs(old_mean[k] - truth_old[k]) < 0.1
            assert abs(new_mean[k] - truth_new[k]) < 0.35 * abs(old_mean[k] - truth_new[k]), (k, new_mean, truth_new)


def test_adapt_without_a_shift_flags_nothing_and_keeps_the_mechanisms(scm_world):
    model = scm_world.model
    z, regimes = scm_world.sample(60, seed=202)
    adapted, report = model.adapt(z, regimes)
    assert report["refitted"] == []
    assert all(not e["shifted"] and abs(e["statistic"]) < 3.0 for e in report["mechanisms"])
    assert [m.state() for m in adapted.mechanisms] == [m.state() for m in model.mechanisms]
    assert adapted is not model


def test_adapt_with_enough_rows_lets_a_fresh_fit_compete(scm_world):
    """With 400+ rows a fresh NodeMechanism.fit competes with the warm start on held-out rows; a
    nonlinear new mechanism is beyond the warm start's linear adjustment, so the fresh fit wins."""
    model = scm_world.model
    z, regimes = scm_world.sample(1500, seed=7)
    z[:, SHIFTED] = np.sin(3.0 * z[:, 1]) + 0.1 * np.random.default_rng(0).standard_normal(len(z))
    # rows that intervene on the latent keep their intervened value
    rng = np.random.default_rng(1)
    for r in (5, 6):
        rows = regimes == r
        z[rows, SHIFTED] = scm_world.menu[r].node_params(SHIFTED, 1.0)[1] + 0.7 * rng.standard_normal(rows.sum())
    adapted, report = model.adapt(z, regimes)
    assert SHIFTED in report["refitted"]
    assert report["estimators"][SHIFTED] == "fresh fit"
    assert adapted.mechanisms[SHIFTED].kind == "mlp"
    free = ~np.isin(regimes, [5, 6])
    residual = z[free, SHIFTED] - adapted.mechanisms[SHIFTED].mean(z[free])
    assert np.var(residual) < 0.05


def test_adapted_model_round_trips_through_save_and_load(scm_world, tmp_path):
    z, regimes = scm_world.sample(60, seed=101, scm=scm_world.shifted(SHIFTED))
    adapted, _ = scm_world.model.adapt(z, regimes)
    loaded = CausalWorldModel.load(adapted.save(tmp_path / "adapted.pt"))
    assert loaded.mechanisms[SHIFTED].kind == "warm start (linear)"
    assert loaded.mechanisms[SHIFTED].state() == adapted.mechanisms[SHIFTED].state()
    noise = np.random.default_rng(0).standard_normal((256, 4))
    for intervention in (None, 4, DO_PARENT):
        np.testing.assert_array_equal(loaded.forward(noise, intervention), adapted.forward(noise, intervention))
    menu = [None, DO_PARENT]
    np.testing.assert_array_equal(loaded.for_menu(menu).predict(1, noise), adapted.for_menu(menu).predict(1, noise))


def test_adapt_leaves_out_rows_it_cannot_use_and_rejects_bad_input(scm_world):
    model = scm_world.model
    z, regimes = scm_world.sample(60, seed=101, scm=scm_world.shifted(SHIFTED))
    # regime 9 (a do on two nodes) is in the menu but the representation names no targets for it
    z9, r9 = scm_world.sample(15, seed=5, regimes=[9])
    with pytest.warns(UnusedRowsWarning, match=r"\{9: 15\}"):
        _, report = model.adapt(np.concatenate([z, z9]), np.concatenate([regimes, r9]))
    assert report["rows_used"] == 60 and report["unused_regimes"] == [9] and report["refitted"] == [SHIFTED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedRowsWarning)
        with pytest.raises(ValueError, match="none of the 15 rows"):
            model.adapt(z9, r9)
    # too few rows for a latent: not tested
    few = np.isin(regimes, [0, 5, 6])
    _, report = model.adapt(z[few], regimes[few], min_rows=30)
    assert all(e["statistic"] is None and not e["shifted"] for e in report["mechanisms"] if e["rows"] < 30)
    assert any(e["statistic"] is None for e in report["mechanisms"])
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        model.adapt(z[:, :3], regimes)
    bad = z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.adapt(bad, regimes)
    with pytest.raises(ValueError, match="regime labels"):
        model.adapt(z, regimes[:-1])
    with pytest.raises(ValueError, match="not in the menu"):
        model.adapt(z, np.full(len(z), 12))
    with pytest.raises(ValueError, match="both episode and step"):
        model.adapt(z, regimes, episode=np.zeros(len(z)))
    with pytest.raises(ValueError, match="threshold"):
        model.adapt(z, regimes, threshold=math.nan)
    with pytest.raises(ValueError, match="min_rows"):
        model.adapt(z, regimes, min_rows=1)


def test_persistence_between_rows_of_an_episode_widens_the_standard_error(scm_world):
    """With persistent noise, rows of one episode are correlated: given episode and step, the standard
    error grows by the design effect and the statistic shrinks."""
    model = scm_world.model
    z, regimes = scm_world.sample(60, seed=101, scm=scm_world.shifted(SHIFTED))
    persistent = CausalWorldModel.from_state(model.state())
    persistent.persistence = np.full(4, 0.9)
    episode, step = np.zeros(60, dtype=int), np.arange(60)
    plain = persistent.adapt(z, regimes)[1]["mechanisms"][SHIFTED]["statistic"]
    clustered = persistent.adapt(z, regimes, episode=episode, step=step)[1]["mechanisms"][SHIFTED]["statistic"]
    assert 0 < clustered < 0.5 * plain


def test_warm_start_mechanism_fits_a_sign_flip_from_few_rows_and_round_trips():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5000)
    z = np.column_stack([p, 0.8 * p + 0.5 * rng.standard_normal(5000)])
    old = NodeMechanism.fit(z, 1, [0], steps=0)
    new = np.column_stack([p[:40], -0.8 * p[:40] + 0.3 + 0.5 * rng.standard_normal(40)])
    warm = NodeMechanism.warm_start(old, new, 1)
    assert warm.base is old and warm.kind == "warm start (linear)" and warm.estimator == "warm start"
    grid = np.column_stack([np.linspace(-2, 2, 9), np.zeros(9)])
    np.testing.assert_allclose(warm.mean(grid), -0.8 * grid[:, 0] + 0.3, atol=0.35)
    # few residuals: a Gaussian residual distribution
    assert np.allclose(np.diff(warm.noise.values), np.diff(warm.noise.values)[0])
    again = NodeMechanism.warm_start(warm, new, 1)
    assert again.base is old  # folded into one adjustment of the original mechanism
    np.testing.assert_allclose(again.mean(grid), warm.mean(grid), atol=0.05)
    loaded = NodeMechanism.from_state(warm.state())
    assert loaded.kind == warm.kind and loaded.base_scale == warm.base_scale
    np.testing.assert_array_equal(loaded.mean(grid), warm.mean(grid))
    # a mechanism written before warm starts existed has no base
    legacy = {k: v for k, v in old.state().items() if k not in ("base", "base_scale")}
    assert NodeMechanism.from_state(legacy).base is None
    with pytest.raises(ValueError, match="at least 3 rows"):
        NodeMechanism.warm_start(old, new[:2], 1)
    assert isinstance(residual_noise(rng.standard_normal(80)), QuantileNoise)
    with pytest.raises(ValueError, match="at least 2"):
        residual_noise(np.zeros(1))
