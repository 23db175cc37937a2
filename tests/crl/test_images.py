"""Tests of the image CRL pipeline (``causal_wm.crl.images``) on tiny ball scenes, debug preset."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.crl import image_models
from causal_wm.crl.images import (
    ImageCRLResult,
    bayes_accuracy,
    fit_image_crl,
    make_config,
    pairs_from_menu,
    plain_code_mcc,
    prepare_images,
)
from causal_wm.crl.metrics import mcc
from causal_wm.scm import Intervention

torch.set_num_threads(1)


def _scene(num_balls: int = 2, size: int = 32, per_regime: int = 150, seed: int = 0):
    """Frames and true latents per regime of a small Balls-v0 scene (obs + two mean-shift pairs per node)."""
    env = gym.make("causal_wm/Balls-v0", num_balls=num_balls, image_size=size, ball_radius=2.5, do_values=())
    u = env.unwrapped
    menu = list(u.interventions)
    frames, latents = {}, {}
    for r, iv in enumerate(menu):
        z = u.scm.sample(per_regime, iv, seed=1000 * seed + r)
        frames[r], latents[r] = u.renderer(z), z
    env.close()
    return frames, latents, menu, u.graph


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module")
def fitted(scene):
    frames, _, menu, _ = scene
    return fit_image_crl(frames, menu=menu, preset="debug", seed=0, progress=False)


# --- design ---------------------------------------------------------------------------------------
def test_pairs_from_menu_groups_hard_interventions_by_target():
    menu = [None,
            Intervention.hard(1, shift=1.0, std=0.7), Intervention.do(0, 1.5),
            Intervention.hard(0, shift=-1.0, std=0.7), Intervention.hard(1, shift=-1.0, std=0.7),
            Intervention.hard(0, shift=1.0, std=0.7), Intervention.hard((0, 1), shift=1.0, std=0.7)]
    assert pairs_from_menu(menu) == [(3, 5), (4, 1)]
    assert pairs_from_menu([None] + [iv.to_dict() for iv in menu[1:]]) == [(3, 5), (4, 1)]


def test_pairs_from_menu_prefers_the_mean_shift_pair():
    menu = [None, Intervention.hard(0, scale=0.5), Intervention.hard(0, shift=-1.0, std=0.7),
            Intervention.hard(0, scale=2.0), Intervention.hard(0, shift=1.0, std=0.7)]
    assert pairs_from_menu(menu) == [(2, 4)]


def test_pairs_from_menu_rejects_a_node_without_a_pair():
    with pytest.raises(ValueError, match="fewer than two"):
        pairs_from_menu([None, Intervention.hard(0, shift=1.0), Intervention.hard(1, shift=1.0),
                         Intervention.hard(1, shift=-1.0)])


def test_bayes_accuracy_of_the_mean_shift_pair():
    a, b = Intervention.hard(0, shift=-1.0, std=0.7), Intervention.hard(0, shift=1.0, std=0.7)
    phi = 0.5 * (1 + math.erf(1 / 0.7 / math.sqrt(2)))  # Phi(|mu_a - mu_b| / (2 sigma))
    assert bayes_accuracy(a, b) == pytest.approx(phi, abs=1e-6)
    assert bayes_accuracy(a, a) == pytest.approx(0.5, abs=1e-6)
    assert bayes_accuracy(Intervention.hard(0, scale=0.5), b) is None


# --- validation -----------------------------------------------------------------------------------
def test_bad_settings_and_data_raise_value_errors(scene):
    frames, _, _, _ = scene
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ValueError, match="unknown setting"):
        make_config("debug", epochs=3)
    with pytest.raises(ValueError, match="route"):
        make_config("debug", route="pixels")
    with pytest.raises(ValueError, match="menu"):  # no menu: pairs are found, which needs two per node
        fit_image_crl({r: frames[r] for r in range(4)}, preset="debug", progress=False)
    with pytest.raises(ValueError, match="no frames"):
        fit_image_crl({0: frames[0], 1: frames[1]}, pairs=[(1, 2)], preset="debug", progress=False)
    with pytest.raises(ValueError, match="uint8"):
        fit_image_crl({0: frames[0].astype(np.float32)}, pairs=[(1, 2)], preset="debug", progress=False)
    with pytest.raises(ValueError, match="shape"):
        prepare_images(np.zeros((2, 8, 8), dtype=np.uint8), 8)


# --- the fitted model -----------------------------------------------------------------------------
def test_shapes_and_conventions(fitted, scene):
    frames, _, menu, _ = scene
    n = 4
    z = fitted.encode(frames[0])
    assert z.shape == (len(frames[0]), n) and z.dtype == np.float32
    # float NCHW input in [0, 1] gives the same latents as uint8 NHWC
    chw = torch.as_tensor(frames[0][:10]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(fitted.encode(chw), z[:10], atol=1e-5)
    # learned latents are standardised on observational frames (up to the held-out share)
    assert np.all(np.abs(z.mean(axis=0)) < 0.2) and np.all(np.abs(z.std(axis=0) - 1) < 0.2)
    images = fitted.decode(z[:5])
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
    assert fitted.traversals((-1.0, 0.0, 1.0)).shape == (n, 3, 16, 16, 3)
    assert fitted.graph.shape == (n, n) and np.all(np.diag(fitted.graph) == 0)
    assert fitted.pairs == pairs_from_menu(menu)
    assert fitted.env_targets == {r: (k,) for k, p in enumerate(fitted.pairs) for r in p}
    d = fitted.diagnostics
    assert len(d["pair_accuracy"]) == n and d["bayes_accuracy"][0] == pytest.approx(0.9234, abs=1e-3)
    assert np.array(d["graph_strength"]).shape == (n, n)


def test_autoencoder_loss_decreases(fitted):
    history = fitted.diagnostics["autoencoder_history"]
    assert len(history) == make_config("debug").ae_epochs
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert history[-1]["val_mse"] < history[0]["val_mse"]
    # the autoencoder beats the mean frame (a collapsed decoder would not)
    d = fitted.diagnostics
    assert d["reconstruction_mse"] < d["reconstruction_mse_mean_frame"]


def test_recovers_the_latents_far_better_than_the_autoencoder_code(fitted, scene):
    """The pair-classifier read-out identifies the ball coordinates; the autoencoder's own code (same
    network, no read-out) holds them entangled. Measured at these settings: 0.94 vs 0.50."""
    frames, latents, _, _ = scene
    learned = mcc(latents[0], fitted.encode(frames[0]), "spearman")
    plain = plain_code_mcc(fitted, frames[0], latents[0])["mcc_spearman"]
    assert learned.value > 0.8
    assert learned.value > plain + 0.2
    # the pairs come from the menu, so learned latent k is node k
    np.testing.assert_array_equal(learned.permutation, np.arange(4))


def test_save_load_round_trip(fitted, scene, tmp_path):
    frames, _, _, _ = scene
    path = fitted.save(tmp_path / "model.pt")
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "causal_wm.crl.images"
    loaded = ImageCRLResult.load(path, device="cpu")
    np.testing.assert_allclose(loaded.encode(frames[1][:20]), fitted.encode(frames[1][:20]), atol=1e-6)
    np.testing.assert_array_equal(loaded.decode(np.zeros((2, 4))), fitted.decode(np.zeros((2, 4))))
    np.testing.assert_array_equal(loaded.graph, fitted.graph)
    assert loaded.pairs == fitted.pairs and loaded.env_targets == fitted.env_targets
    assert loaded.diagnostics["pair_accuracy"] == fitted.diagnostics["pair_accuracy"]
    with pytest.raises(ValueError, match="not an image CRL model"):
        torch.save({"format": "other"}, tmp_path / "other.pt")
        ImageCRLResult.load(tmp_path / "other.pt")


# --- interruption and divergence ---------------------------------------------------------------------
SMALL = dict(max_per_regime=40, ae_epochs=3, classifier_epochs=5, structured_epochs=5, decoder_epochs=5)


def test_checkpoint_resume_continues_where_it_stopped(tmp_path):
    frames, _, menu, _ = _scene(per_regime=40, seed=1)
    reference = fit_image_crl(frames, menu=menu, preset="debug", progress=False, **SMALL)

    class Stop(Exception):
        pass

    def stop_after_two(event):
        if event["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit_image_crl(frames, menu=menu, preset="debug", progress=False, checkpoint_dir=tmp_path,
                      callback=stop_after_two, **SMALL)
    epochs = []
    resumed = fit_image_crl(frames, menu=menu, preset="debug", progress=False, checkpoint_dir=tmp_path,
                            callback=lambda e: epochs.append(e["epoch"]), **SMALL)
    assert epochs == [3]  # only the missing epoch ran
    for a, b in zip(reference.autoencoder.state_dict().values(), resumed.autoencoder.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(resumed.encode(frames[0]), reference.encode(frames[0]), atol=1e-5)
    # a finished run resumes every stage from its checkpoints
    again = fit_image_crl(frames, menu=menu, preset="debug", progress=False, checkpoint_dir=tmp_path, **SMALL)
    np.testing.assert_array_equal(again.encode(frames[0]), resumed.encode(frames[0]))
    # other settings do not silently reuse the checkpoints
    with pytest.raises(ValueError, match="other data or settings"):
        fit_image_crl(frames, menu=menu, preset="debug", progress=False, checkpoint_dir=tmp_path,
                      **{**SMALL, "lr": 1e-4})


def test_nan_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    frames, _, menu, _ = _scene(per_regime=40, seed=2)
    original = image_models.ConvDecoder.forward
    poison = {"on": False}

    def poisoned(self, y):
        out = original(self, y)
        return out * float("nan") if poison["on"] else out

    def after_epoch(event):
        poison["on"] = True  # every epoch after the first diverges

    monkeypatch.setattr(image_models.ConvDecoder, "forward", poisoned)
    with pytest.raises(FloatingPointError, match="diverged"):
        fit_image_crl(frames, menu=menu, preset="debug", progress=False, checkpoint_dir=tmp_path,
                      callback=after_epoch, **SMALL)
    # the checkpoint of the last good epoch is intact
    state = torch.load(tmp_path / "autoencoder.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


# --- other inputs and routes -----------------------------------------------------------------------------
def test_dataset_input_streams_from_hdf5(tmp_path):
    from causal_wm.data import collect

    ds = collect("causal_wm/Balls-v0", None, tmp_path / "balls.h5", policy="balanced", per_regime=30,
                 progress=False, env_kwargs=dict(num_balls=1, image_size=32, ball_radius=2.5, do_values=()))
    # cache_bytes=0: every batch is read from the file
    result = fit_image_crl(ds, preset="debug", progress=False, cache_bytes=0,
                           **{**SMALL, "ae_epochs": 1, "max_per_regime": 30})
    assert result.pairs == [(1, 2), (3, 4)]
    idx = ds.by_regime()[0]
    assert result.encode(ds.observations(idx)).shape == (len(idx), 2)
    assert result.env_targets == {1: (0,), 2: (0,), 3: (1,), 4: (1,)}


def test_structured_route_runs_and_reads_one_coordinate_per_pair(scene):
    frames, _, menu, _ = scene
    result = fit_image_crl(frames, menu=menu, preset="debug", progress=False, route="structured",
                           **{**SMALL, "max_per_regime": 150})
    assert isinstance(result.readout, image_models.StructuredReadout)
    z = torch.zeros(3, 4, requires_grad=True)
    (jac,) = torch.autograd.grad(result.readout.logits(z)[:, 1].sum(), z)
    assert torch.all(jac[:, [0, 2, 3]] == 0) and torch.all(jac[:, 1] != 0)
    assert result.encode(frames[0][:7]).shape == (7, 4)


def test_pairs_route_uses_one_log_ratio_classifier_per_pair(scene):
    frames, _, menu, _ = scene
    result = fit_image_crl(frames, menu=menu, preset="debug", progress=False, route="pairs",
                           **{**SMALL, "max_per_regime": 150, "classifier_epochs": 30})
    assert isinstance(result.readout, image_models.PairReadout) and len(result.readout.heads) == 4
    z = result.encode(frames[0])
    assert z.shape == (150, 4) and np.all(np.isfinite(z))


def test_unknown_pairing_is_found_from_the_codes(scene):
    """Without a menu the pairs come from ``causal_wm.crl.gscale.find_pairs`` on the stage-1 codes."""
    frames, _, menu, _ = scene
    result = fit_image_crl(frames, pairs="find", preset="debug", progress=False)
    assert sorted(tuple(sorted(p)) for p in result.pairs) == sorted(tuple(sorted(p)) for p in pairs_from_menu(menu))
    assert result.diagnostics["pair_search"] is not None
    assert result.diagnostics["bayes_accuracy"] == [None] * 4  # no menu, no design to compare with
    with pytest.raises(ValueError, match="even"):
        fit_image_crl({r: frames[r] for r in range(4)}, pairs="find", preset="debug", progress=False)


def test_end_to_end_stage_refines_the_parametric_read_out(scene, tmp_path):
    """The end-to-end stage fine-tunes encoder, read-out and decoders on frames, then the read-out is
    refined on every frame; its diagnostics say what each step did, and a rerun resumes from the stages."""
    frames, latents, menu, _ = scene
    result = fit_image_crl(frames, menu=menu, preset="debug", seed=0, progress=False, e2e_epochs=2,
                           readout_members=2, checkpoint_dir=tmp_path / "ck")
    d = result.diagnostics
    history = d["end_to_end"]["history"]
    assert history[0]["epoch"] == 0 and 1 <= len(history) - 1 <= 2
    assert d["end_to_end"]["best_val_cross_entropy"] == min(h["val_cross_entropy"] for h in history)
    assert "before_end_to_end" in d["readout"] and d["readout"]["mechanism"] in ("linear", "mlp")
    assert mcc(latents[0], result.encode(frames[0]), "spearman").value > 0.8
    z = result.encode(frames[0][:30])
    assert z.shape == (30, 4) and np.all(np.isfinite(z))
    assert result.decode(z).shape == (30, 16, 16, 3)
    assert len(d["readout"]["members"]) == 2 and result.readout.num_members == 2
    again = fit_image_crl(frames, menu=menu, preset="debug", seed=0, progress=False, e2e_epochs=2,
                          readout_members=2, checkpoint_dir=tmp_path / "ck")
    np.testing.assert_allclose(again.encode(frames[0][:30]), z, atol=1e-5)
    assert again.diagnostics["seconds"]["end_to_end"] == pytest.approx(d["seconds"]["end_to_end"])
    loaded = ImageCRLResult.load(result.save(tmp_path / "model.pt"), device="cpu")
    np.testing.assert_allclose(loaded.encode(frames[0][:30]), z, atol=1e-5)
    params = loaded.latent_scm
    assert params is not None and params.weight.shape == (4, 4)


def test_without_a_menu_the_pairs_are_found(scene):
    frames, latents, _, _ = scene
    result = fit_image_crl(frames, preset="debug", seed=0, progress=False)   # no menu, no pairs
    d = result.diagnostics
    assert d["pairs_source"].startswith("found") and d["pair_search"]["margin"] is not None
    assert sorted(r for p in result.pairs for r in p) == list(range(1, len(frames)))
    assert mcc(latents[0], result.encode(frames[0]), "spearman").value > 0.8


def test_regime_classifier_on_the_code_trains_with_the_autoencoder(scene):
    frames, latents, menu, _ = scene
    result = fit_image_crl(frames, menu=menu, preset="debug", seed=0, progress=False, ae_regime_weight=0.1)
    history = result.diagnostics["autoencoder_history"]
    ce = [h["train_regime_cross_entropy"] for h in history]
    assert ce[-1] < ce[0] - 0.1   # the code learns what tells the regimes apart
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert mcc(latents[0], result.encode(frames[0]), "spearman").value > 0.8
