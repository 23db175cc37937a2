"""H@1 / MRR of chained predictions (``ranking_metrics``, ``rollout_means``)."""

from __future__ import annotations

import numpy as np
import pytest

from causal_wm.world_model.evaluation import ranking_metrics, rollout_means


def test_ranking_of_exact_and_shuffled_predictions():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(50, 3, 4))
    exact = ranking_metrics(true, true, horizons=(1, 3))
    assert exact == {"1": {"H@1": 1.0, "MRR": 1.0}, "3": {"H@1": 1.0, "MRR": 1.0}}
    # a prediction that is another rollout's true state ranks that rollout first
    shifted = ranking_metrics(np.roll(true, 1, axis=0), true, horizons=(1,))
    assert shifted["1"]["H@1"] == 0.0 and shifted["1"]["MRR"] < 0.6
    # the rank is counted by hand for one prediction
    p = true.copy()
    p[0, 0] = true[0, 0] + 10.0
    d = np.linalg.norm(p[0, 0] - true[:, 0], axis=1)
    rank = int(np.sum(d <= d[0]))
    got = ranking_metrics(p, true, horizons=(1,))["1"]
    assert got["MRR"] == pytest.approx((49 + 1 / rank) / 50)
    # horizons beyond the rollouts are left out; bad shapes are refused
    assert set(ranking_metrics(true, true, horizons=(1, 5))) == {"1"}
    with pytest.raises(ValueError, match="both be"):
        ranking_metrics(true[:, :2], true)
    with pytest.raises(ValueError, match="at least 2"):
        ranking_metrics(true[:1], true[:1])


class _Shift:
    """A toy planner model: next = 0.5 * now + action (per coordinate), regime ignored."""

    n = 2
    num_actions = 3

    def __init__(self):
        self.calls = []

    def predict(self, action, noise, z_now=None, regime_now=None):
        self.calls.append((action, regime_now, len(noise)))
        return 0.5 * np.asarray(z_now) + action + noise


def test_rollout_means_chain_predictions_grouped_by_action_and_previous_regime():
    model = _Shift()
    z0 = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0]])
    actions = np.array([[1, 2], [1, 1], [0, 2]])
    out = rollout_means(model, z0, np.array([0, 0, 1]), actions)
    expected = np.zeros((3, 2, 2))
    cur = z0.copy()
    for h in range(2):
        cur = 0.5 * cur + actions[:, h][:, None]
        expected[:, h] = cur
    np.testing.assert_allclose(out, expected)
    # one call per (action, previous regime) group and step, never per row
    # (action, previous regime, rows): step 0 groups (0, 1) and (1, 0); step 1 follows the step-0 actions
    assert model.calls == [(0, 1, 1), (1, 0, 2), (1, 1, 1), (2, 0, 1), (2, 1, 1)]
    with pytest.raises(ValueError, match="one row each"):
        rollout_means(model, z0, np.array([0, 0]), actions)
