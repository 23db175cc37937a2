"""One persistence helper for every saved object: a round trip for each (the output after loading is
the output before saving) and one clear error for every bad file (stable-baselines3's save/load test
over all models is the pattern)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.agents.training import PlainAutoencoder
from causal_wm.crl.gscale import GScaleResult, gscale_i
from causal_wm.crl.images import ImageCRLResult, fit_image_crl
from causal_wm.crl.lscale import LinearCRLResult, lscale_i
from causal_wm.crl.umni import UMNIResult, umni_crl
from causal_wm.persistence import ModelFileError, load_state, save_state
from causal_wm.scm import Intervention, gscale_problem, lscale_problem, umni_problem
from causal_wm.world_model import ActionConditionedModel, CausalWorldModel, ProbabilisticEnsemble, load_model

torch.set_num_threads(1)


def _frames(num_balls: int = 2, per_regime: int = 120):
    env = gym.make("causal_wm/Balls-v0", num_balls=num_balls, image_size=32, ball_radius=2.5, do_values=())
    u = env.unwrapped
    menu = list(u.interventions)
    frames = {r: u.renderer(u.scm.sample(per_regime, iv, seed=r)) for r, iv in enumerate(menu)}
    return frames, menu


def _image_crl() -> tuple[ImageCRLResult, np.ndarray]:
    frames, menu = _frames()
    result = fit_image_crl(frames, menu=menu, preset="debug", seed=0, progress=False, ae_epochs=2,
                           classifier_epochs=5, decoder_epochs=5, device="cpu")
    return result, frames[1][:16]


def _gscale() -> tuple[GScaleResult, np.ndarray]:
    p = gscale_problem(2, 4, 600, seed=3)
    result = gscale_i(p.observations, pairs=p.pairs, preset="debug", seed=0, device="cpu", epochs=3, restarts=1)
    return result, p.observations[0][:16]


def _lscale() -> tuple[LinearCRLResult, np.ndarray]:
    p = lscale_problem(3, 5, 2000, seed=0)
    return lscale_i(p.observations, seed=0), p.observations[0][:16]


def _umni() -> tuple[UMNIResult, np.ndarray]:
    p = umni_problem(3, 5, 2000, hard=True, seed=0)
    return umni_crl(p.observations, seed=0, calibration_splits=0), p.observations[0][:16]


def _world_model() -> tuple[CausalWorldModel, np.ndarray]:
    p = lscale_problem(3, 5, 1500, seed=0)
    menu = [None, *(Intervention.hard(t[0], shift=1.0, std=0.7) for t in p.targets)]
    x = np.concatenate(p.observations)
    regimes = np.repeat(np.arange(len(p.observations)), [len(o) for o in p.observations])
    return CausalWorldModel.fit_arrays(x, regimes, menu=menu, preset="debug"), x[:16]


def _action_conditioned() -> tuple[ActionConditionedModel, np.ndarray]:
    rng = np.random.default_rng(0)
    menu = [None, Intervention.do(0, 1.0), Intervention.do(1, -1.0)]
    z = rng.standard_normal((300, 2))
    interventions = [menu[i % 3] for i in range(300)]
    model = ActionConditionedModel().fit(z, interventions, hidden=16, epochs=3, seed=0, device="cpu")
    return model, np.zeros((0, 2))


def _ensemble() -> tuple[ProbabilisticEnsemble, np.ndarray]:
    rng = np.random.default_rng(0)
    menu = [None, Intervention.do(0, 1.0), Intervention.do(1, -1.0)]
    z = rng.standard_normal((300, 2))
    interventions = [menu[i % 3] for i in range(300)]
    ensemble = ProbabilisticEnsemble().fit(z, interventions, members=2, hidden=16, epochs=3, seed=0, device="cpu")
    return ensemble, np.zeros((0, 2))


def _plain_autoencoder() -> tuple[PlainAutoencoder, np.ndarray]:
    frames, _ = _frames(per_regime=80)
    ae = PlainAutoencoder.fit(frames[0], 3, image_size=16, epochs=1, channels=8, hidden=32, seed=0, device="cpu",
                              progress=False)
    return ae, frames[0][:16]


def _output(obj: Any, probe: np.ndarray) -> np.ndarray:
    """A deterministic output that depends on every saved part."""
    if isinstance(obj, ActionConditionedModel | ProbabilisticEnsemble):
        return np.concatenate([obj.sample(32, iv, seed=1) for iv in (None, Intervention.do(0, 1.0))])
    if isinstance(obj, CausalWorldModel):
        return np.concatenate([obj.encode(probe), obj.sample(16, 1, seed=1), obj.decode(obj.encode(probe))], axis=1)
    z = np.asarray(obj.encode(probe), dtype=np.float64)
    if hasattr(obj, "decode"):
        decoded = np.asarray(obj.decode(z), dtype=np.float64)
        return np.concatenate([z.ravel(), decoded.ravel()])
    return z


BUILDERS: dict[str, tuple[Callable[[], tuple[Any, np.ndarray]], type, str]] = {
    "image_crl": (_image_crl, ImageCRLResult, "causal_wm.crl.images"),
    "gscale": (_gscale, GScaleResult, "causal_wm.crl.gscale"),
    "lscale": (_lscale, LinearCRLResult, "causal_wm.crl.lscale"),
    "umni": (_umni, UMNIResult, "causal_wm.crl.umni"),
    "world_model": (_world_model, CausalWorldModel, "causal_wm.world_model"),
    "action_conditioned": (_action_conditioned, ActionConditionedModel, "causal_wm.action_conditioned_model"),
    "ensemble": (_ensemble, ProbabilisticEnsemble, "causal_wm.probabilistic_ensemble"),
    "plain_autoencoder": (_plain_autoencoder, PlainAutoencoder, "causal_wm.plain_autoencoder"),
}
_CACHE: dict[str, tuple[Any, np.ndarray]] = {}


def _built(name: str) -> tuple[Any, np.ndarray]:
    if name not in _CACHE:
        _CACHE[name] = BUILDERS[name][0]()
    return _CACHE[name]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_round_trip_gives_the_same_outputs(name, tmp_path):
    obj, probe = _built(name)
    cls, fmt = BUILDERS[name][1], BUILDERS[name][2]
    path = obj.save(tmp_path / f"{name}.pt")
    assert Path(path).exists() and not list(tmp_path.glob("*.tmp"))  # atomic: no temporary left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)  # safe loading reads every file
    assert raw["format"] == fmt and isinstance(raw["version"], int)
    loaded = cls.load(path, device="cpu")
    assert type(loaded) is cls
    np.testing.assert_allclose(_output(loaded, probe), _output(obj, probe), rtol=0, atol=1e-6)
    if name in ("image_crl", "gscale", "lscale", "umni", "world_model"):
        # the one reader of "a model or a representation" dispatches by the format tag
        assert type(load_model(path, device="cpu")) is cls
        assert np.array_equal(loaded.graph, obj.graph)
        if name != "world_model":
            assert loaded.env_targets == obj.env_targets


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_bad_file_gives_one_clear_error(name, tmp_path):
    obj, _ = _built(name)
    cls = BUILDERS[name][1]
    good = Path(obj.save(tmp_path / "good.pt")).read_bytes()
    cases = {
        "empty.pt": (b"", "is empty"),
        "truncated.pt": (good[: len(good) // 2], "not a readable model file"),
        "garbage.pt": (b"\x00\x01not a model at all" * 50, "not a readable model file"),
    }
    for file, (content, message) in cases.items():
        (tmp_path / file).write_bytes(content)
        with pytest.raises(ModelFileError, match=message) as info:
            cls.load(tmp_path / file)
        assert file in str(info.value)  # the message names the file
    with pytest.raises(FileNotFoundError, match="no file at"):
        cls.load(tmp_path / "missing.pt")
    # another object's file: names what it holds and what was expected
    other_name = "lscale" if name != "lscale" else "umni"
    other = _built(other_name)[0].save(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match=r"it holds an? ") as info:
        cls.load(other)
    assert "other.pt" in str(info.value)
    # a torch file without a format tag, and one of a future version
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="no format tag"):
        cls.load(tmp_path / "plain.pt")
    state = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save({**state, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="format version 99"):
        cls.load(tmp_path / "future.pt")
    # a damaged state (a part missing): no bare KeyError
    damaged = {k: v for i, (k, v) in enumerate(state.items()) if k in ("format", "version") or i % 2}
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(ModelFileError, match=r"damaged\.pt"):
        cls.load(tmp_path / "damaged.pt")


def test_pickled_objects_are_never_loaded(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"format": "causal_wm.world_model", "version": 1, "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="pickled Python objects, which causal_wm never loads"):
        CausalWorldModel.load(tmp_path / "evil.pt")


def test_save_state_adds_the_tag_and_load_state_checks_it(tmp_path):
    path = save_state({"a": torch.ones(2)}, tmp_path / "x.pt", format="causal_wm.test", version=3)
    state = load_state(path, format="causal_wm.test", version=3)
    assert state["format"] == "causal_wm.test" and state["version"] == 3 and torch.equal(state["a"], torch.ones(2))
    with pytest.raises(ModelFileError, match="format version 3"):
        load_state(path, format="causal_wm.test", version=(1, 2))
    with pytest.raises(ModelFileError, match=r"is not a file of format 'causal_wm\.other'"):
        load_state(path, format="causal_wm.other", version=3)
