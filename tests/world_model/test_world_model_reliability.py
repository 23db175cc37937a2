"""Inputs that used to give a confident wrong answer now give a clear error or a named warning:
regime labels, float frames in the wrong range, NaN frames and latents, frames of another scene,
frames the representation cannot use."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.crl.images import fit_image_crl
from causal_wm.crl.images.pipeline import UnusedFramesWarning
from causal_wm.crl.images.result import FrameMismatchWarning
from causal_wm.scm import Intervention, lscale_problem
from causal_wm.world_model import CausalWorldModel
from causal_wm.world_model.model import UnusedRowsWarning, check_regimes
from tests.test_persistence import _built, _frames

torch.set_num_threads(1)


def _vector_data():
    p = lscale_problem(3, 5, 1500, seed=0)
    menu = [None, *(Intervention.hard(t[0], shift=1.0, std=0.7) for t in p.targets)]
    x = np.concatenate(p.observations)
    regimes = np.repeat(np.arange(4), [len(o) for o in p.observations])
    return x, regimes, menu


def test_regime_labels_that_would_be_silently_wrong_are_refused():
    x, regimes, menu = _vector_data()
    outside = regimes.copy()
    outside[:10] = 7
    with pytest.raises(ValueError, match=r"regimes \[7\] are not in the menu \(regimes 0..3\)"):
        CausalWorldModel.fit_arrays(x, outside, menu=menu, preset="debug")
    with pytest.raises(ValueError, match="must be >= 0"):
        CausalWorldModel.fit_arrays(x, regimes - 1, menu=menu, preset="debug")
    with pytest.raises(ValueError, match="whole numbers"):
        CausalWorldModel.fit_arrays(x, regimes + 0.5, menu=menu, preset="debug")
    with pytest.raises(ValueError, match="NaN"):
        check_regimes(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="must be integers"):
        check_regimes(np.array(["a", "b"]))
    # whole-number floats are labels like any other: the same model as with ints
    a = CausalWorldModel.fit_arrays(x, regimes.astype(float), menu=menu, preset="debug")
    b = CausalWorldModel.fit_arrays(x, regimes, menu=menu, preset="debug")
    assert a.n == b.n == 3
    np.testing.assert_array_equal(a.sample(20, 1, seed=0), b.sample(20, 1, seed=0))


def test_rows_the_representation_cannot_use_are_named():
    x, regimes, menu = _vector_data()
    model = CausalWorldModel.fit_arrays(x, regimes, menu=menu, preset="debug")
    rep = model.representation
    rep_without_3 = type(rep)(**{**rep.__dict__, "env_targets": {r: t for r, t in rep.env_targets.items() if r != 3}})
    with pytest.warns(UnusedRowsWarning, match=r"rows of regimes \{3: 1500\} \(regime: rows\) are not used"):
        shrunk = CausalWorldModel.fit_arrays(x, regimes, menu=menu, preset="debug", representation=rep_without_3)
    assert shrunk.diagnostics["unused_regimes"] == [3]


def test_image_frames_are_validated_before_encoding():
    result, frames = _built("image_crl")
    as_float = torch.as_tensor(frames).permute(0, 3, 1, 2).float()  # 0..255, a classic slip
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\].*look like 0..255"):
        result.encode(as_float)
    np.testing.assert_allclose(result.encode(as_float / 255.0), result.encode(frames), atol=1e-5)
    nan = (as_float / 255.0).clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        result.encode(nan)
    with pytest.raises(ValueError, match="NaN or infinite"):
        result.decode(np.full((2, result.n), np.nan))
    with pytest.raises(ValueError, match="uint8 or float"):
        result.encode(torch.as_tensor(frames).permute(0, 3, 1, 2).to(torch.int32))


def test_frames_of_another_scene_warn_or_raise():
    result, _ = _built("image_crl")
    fresh, _ = _frames(per_regime=30)  # the same scene, new samples: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrameMismatchWarning)
        for r in fresh:
            result.encode(fresh[r])
    shadow = gym.make("causal_wm/Shadow-v0", image_size=32).unwrapped
    other = shadow.renderer(shadow.scm.sample(64, None, seed=0))
    with pytest.warns(FrameMismatchWarning, match="another scene"):
        result.encode(other)
    result.frame_check = "raise"
    try:
        with pytest.raises(ValueError, match="do not look like the ones the model was fitted on"):
            result.encode(other)
        result.frame_check = "off"
        with warnings.catch_warnings():
            warnings.simplefilter("error", FrameMismatchWarning)
            assert result.encode(other).shape == (64, result.n)
    finally:
        del result.frame_check  # back to the class default for the other tests


def test_frames_that_do_not_train_the_representation_are_named():
    frames, menu = _frames(per_regime=60)
    extra = dict(frames)
    extra[len(menu)] = frames[0][:25]
    menu = [*menu, Intervention.do(0, 0.5)]
    with pytest.warns(UnusedFramesWarning, match=rf"frames of regimes \{{{len(menu) - 1}: 25\}}"):
        fit_image_crl(extra, menu=menu, preset="debug", seed=0, progress=False, ae_epochs=1, classifier_epochs=2,
                      decoder_epochs=2, device="cpu")
