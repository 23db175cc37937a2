"""The typed hand-off from CRL to the world model: every learner's result is a ``Representation``
with the same names meaning the same shapes, and the world model takes any object that is one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causal_wm.crl import Representation, register_representation
from causal_wm.crl.gscale import gscale_i
from causal_wm.crl.lscale import lscale_i
from causal_wm.crl.metrics import mcc
from causal_wm.crl.umni import umni_crl
from causal_wm.persistence import ModelFileError
from causal_wm.scm import Intervention, gscale_problem, lscale_problem, umni_problem
from causal_wm.world_model import CausalWorldModel

torch.set_num_threads(1)


def _check_shapes(result, x: np.ndarray) -> None:
    assert isinstance(result, Representation)
    n = result.n
    z = result.encode(x)
    assert z.shape == (len(x), n)
    assert result.graph.shape == (n, n)
    assert isinstance(result.env_targets, dict)
    assert all(isinstance(r, int) and isinstance(t, tuple) and all(0 <= k < n for k in t)
               for r, t in result.env_targets.items())
    module = result.encoder_module()
    assert isinstance(module, torch.nn.Module)
    with torch.no_grad():
        z_module = module(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(z_module, z, atol=1e-3)
    assert result.decode(z).shape[0] == len(x)
    assert result.to("cpu") is result
    assert isinstance(result.state(), dict) and isinstance(result.diagnostics, dict)


def test_lscale_result_is_a_representation_with_regime_targets():
    p = lscale_problem(3, 5, 3000, seed=0)
    result = lscale_i(p.observations, seed=0)
    _check_shapes(result, p.observations[0][:50])
    # regime m is envs[m]; its target is the learned latent matched to the env's true node
    assert result.env_targets == {m + 1: (int(result.target_latents[m]),) for m in range(3)}
    perm = mcc(p.latents[0], result.encode(p.observations[0])).permutation
    for m, (node,) in enumerate(p.targets):
        assert result.env_targets[m + 1] == (int(perm[node]),)
    # with the data's own regime labels
    relabelled = lscale_i(p.observations, seed=0, regimes=[4, 7, 9])
    assert relabelled.env_targets == {r: result.env_targets[m + 1] for m, r in enumerate([4, 7, 9])}
    with pytest.raises(ValueError, match="3 distinct positive ints"):
        lscale_i(p.observations, regimes=[1, 1, 2])


def test_umni_result_targets_are_the_rows_of_its_matrix():
    p = umni_problem(3, 5, 3000, hard=True, seed=0)
    result = umni_crl(p.observations, seed=0, calibration_splits=0)
    _check_shapes(result, p.observations[0][:50])
    for m, row in enumerate(result.target_matrix):
        assert result.env_targets[m + 1] == tuple(int(i) for i in np.flatnonzero(row))
    assert sum(len(t) for t in result.env_targets.values()) == int(result.target_matrix.sum())


def test_gscale_result_is_a_representation():
    p = gscale_problem(2, 4, 600, seed=3)
    result = gscale_i(p.observations, pairs=p.pairs, preset="debug", seed=0, device="cpu", epochs=3, restarts=1)
    _check_shapes(result, p.observations[0][:50])
    for k, (a, b) in enumerate(result.pairs):
        assert result.env_targets[a] == result.env_targets[b] == (k,)
    np.testing.assert_array_equal(result.decoder_module()(torch.as_tensor(result.encode(p.observations[0][:5]))
                                                          .float()).detach().numpy().shape, (5, 4))


def test_image_result_is_a_representation():
    from tests.test_persistence import _built

    result, frames = _built("image_crl")
    assert isinstance(result, Representation)
    assert result.encode(frames).shape == (len(frames), result.n)
    assert result.env_targets == {r: (k,) for k, p in enumerate(result.pairs) for r in p}


# --- a user's own representation ------------------------------------------------------------------
@register_representation
class KnownMixing:
    """The true unmixing of a linear problem: the world model on top must recover the SCM exactly."""

    FORMAT = "tests.known_mixing"

    def __init__(self, unmixing: np.ndarray, graph: np.ndarray, env_targets: dict[int, tuple[int, ...]]) -> None:
        self.unmixing, self.graph, self.env_targets = unmixing, graph, env_targets
        self.diagnostics: dict = {}

    @property
    def n(self) -> int:
        return self.unmixing.shape[0]

    def encode(self, x):
        return np.asarray(x) @ self.unmixing.T

    def decode(self, z):
        return np.asarray(z) @ np.linalg.pinv(self.unmixing).T

    def encoder_module(self):
        layer = torch.nn.Linear(self.unmixing.shape[1], self.n, bias=False)
        layer.weight.data = torch.as_tensor(self.unmixing, dtype=torch.float32)
        return layer

    def to(self, device):
        return self

    def state(self):
        return {"format": self.FORMAT, "unmixing": torch.as_tensor(self.unmixing), "graph": torch.as_tensor(self.graph),
                "env_targets": [[r, list(t)] for r, t in self.env_targets.items()]}

    @classmethod
    def from_state(cls, state, device="auto", source="state"):
        return cls(state["unmixing"].numpy(), state["graph"].numpy(), {r: tuple(t) for r, t in state["env_targets"]})


def test_world_model_accepts_a_users_representation(tmp_path):
    rng = np.random.default_rng(0)
    graph = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    menu = [None, *(Intervention.hard(j, shift=1.5, std=0.5) for j in range(3))]
    rows = 3000
    regimes = np.repeat(np.arange(4), rows)
    z = np.zeros((4 * rows, 3))
    noise = rng.standard_normal((4 * rows, 3))
    z[:, 0] = noise[:, 0]
    z[:, 1] = 0.8 * z[:, 0] + 0.6 * noise[:, 1]
    z[:, 2] = -0.7 * z[:, 1] + 0.7 * noise[:, 2]
    for r in (1, 2, 3):
        j = r - 1
        sel = regimes == r
        z[sel, j] = 1.5 + 0.5 * noise[sel, j]
        if j < 1:
            z[sel, 1] = 0.8 * z[sel, 0] + 0.6 * noise[sel, 1]
        if j < 2:
            z[sel, 2] = -0.7 * z[sel, 1] + 0.7 * noise[sel, 2]
    mixing = rng.normal(size=(6, 3))
    x = z @ mixing.T
    rep = KnownMixing(np.linalg.pinv(mixing), graph, {1: (0,), 2: (1,), 3: (2,)})
    model = CausalWorldModel.fit_arrays(x, regimes, menu=menu, representation=rep, preset="debug")
    assert model.representation is rep
    np.testing.assert_allclose(model.encode(x[:10]), z[:10], atol=1e-8)
    # the mechanisms are the true ones: an unseen do on the root's latent moves its child by 0.8 per unit
    imagined = model.sample(20_000, {0: 2.0}, seed=0)
    assert abs(imagined[:, 1].mean() - 1.6) < 0.05 and abs(imagined[:, 2].mean() + 1.12) < 0.05
    loaded = CausalWorldModel.load(model.save(tmp_path / "m.pt"))
    assert isinstance(loaded.representation, KnownMixing)
    np.testing.assert_array_equal(loaded.sample(50, {0: 2.0}, seed=1), model.sample(50, {0: 2.0}, seed=1))


def test_world_model_names_what_a_non_representation_lacks():
    class Half:
        n = 2

        def encode(self, x):
            return x

    with pytest.raises(ValueError, match=r"not a causal_wm.crl.Representation \(missing \['graph', 'env_targets'"):
        CausalWorldModel.fit_arrays(np.zeros((10, 2)), np.zeros(10, dtype=int), representation=Half())


def test_an_unregistered_format_cannot_be_loaded(tmp_path):
    from causal_wm.crl import representation_from_state

    with pytest.raises(ModelFileError, match=r"unknown representation format 'tests\.unknown'.*register_rep"):
        representation_from_state({"format": "tests.unknown"})
