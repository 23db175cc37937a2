"""Batched prediction over a menu (``predict_actions``) equals action-by-action ``predict``."""

from __future__ import annotations

import numpy as np
import pytest

from causal_wm.agents import OneStepPlanner
from causal_wm.scm import Intervention
from causal_wm.world_model import ActionConditionedModel, CausalWorldModel
from causal_wm.world_model.ensemble import ProbabilisticEnsemble


class _Unbatched:
    """A planner model that hides ``predict_actions`` (the action-by-action path)."""

    def __init__(self, model):
        self.model, self.n, self.num_actions = model, model.n, model.num_actions

    def predict(self, action, noise, z_now=None, regime_now=None):
        return self.model.predict(action, noise, z_now, regime_now)


@pytest.fixture(scope="module")
def fitted(scm_world):
    z, regimes = scm_world.sample(1500, seed=5)
    episode, step = np.arange(1500) // 50, np.arange(1500) % 50  # transitions: the models read z_now too
    kw = {"episode": episode, "step": step, "seed": 0, "device": "cpu", "epochs": 3}
    interventions = [scm_world.menu[r] for r in regimes]
    causal = CausalWorldModel.fit_arrays(z, regimes, menu=scm_world.menu, episode=episode, step=step,
                                         preset="debug", seed=0, representation=scm_world.model.representation)
    causal.persistence[:] = 0.6  # exercise the abduction of the current noise
    return {"causal": causal, "noncausal": ActionConditionedModel().fit(z, interventions, **kw),
            "pets": ProbabilisticEnsemble().fit(z, interventions, members=3, **kw), "z": z}


@pytest.mark.parametrize("name", ["causal", "noncausal", "pets"])
def test_predict_actions_equals_predict(fitted, scm_world, name):
    menu = [*scm_world.menu, Intervention.do((0, 2), (1.5, -1.0), std=0.05)]  # an entry the data never showed
    model = fitted[name].for_menu(menu)
    noise = np.random.default_rng(1).standard_normal((16, model.n))
    z_now = fitted["z"][5]
    actions = list(range(model.num_actions))
    batched = model.predict_actions(actions, noise, z_now, 2)
    assert batched.shape == (len(actions), 16, model.n)
    for a in actions:
        np.testing.assert_allclose(batched[a], model.predict(a, noise, z_now, 2), rtol=1e-5, atol=1e-5)
    # the planner takes the batched path and scores every action as the action-by-action path does
    reward = lambda z: -np.abs(z[:, 3] - 1.0)  # noqa: E731
    fast = OneStepPlanner(model, reward, num_samples=32, seed=4).action_values(z_now, 2)
    slow = OneStepPlanner(_Unbatched(model), reward, num_samples=32, seed=4).action_values(z_now, 2)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        model.predict_actions([model.num_actions], noise)
