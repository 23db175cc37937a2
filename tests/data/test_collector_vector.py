"""Vector envs: gymnasium's autoreset pseudo-steps never enter the data; lanes do not change the data."""

from __future__ import annotations

import gymnasium as gym
import h5py
import numpy as np
import pytest
from collect_envs import RESET_MARK, TINY_ID, TinyImageEnv, regime_of_action
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from causal_wm.data import collect


def _all(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def _check_transitions(ds):
    """Every row is a real step: frame marks (step + 1, action), no reset frame, steps 0.. per episode."""
    obs = ds.observations(slice(None))
    assert not np.any(obs[:, 0, 0, 2] == RESET_MARK), "a reset observation entered the data"
    np.testing.assert_array_equal(obs[:, 0, 0, 0], ds.step + 1)
    np.testing.assert_array_equal(obs[:, 0, 0, 1], ds.actions(slice(None)))
    for e in np.unique(ds.episode):
        np.testing.assert_array_equal(ds.step[ds.episode == e], np.arange(np.sum(ds.episode == e)))


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_user_sync_vector_env_any_autoreset_mode(tmp_path, mode):
    envs = SyncVectorEnv([TinyImageEnv for _ in range(3)], autoreset_mode=mode)
    ds = collect(envs, 80, tmp_path / "v.h5", regime_fn=regime_of_action, seed=4, progress=False)
    _check_transitions(ds)
    reference = collect(TinyImageEnv(), 80, tmp_path / "one.h5", regime_fn=regime_of_action, seed=4,
                        progress=False)
    a, b = _all(ds.path), _all(reference.path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    envs.close()


def test_gymnasium_default_vector_env_would_leak_reset_steps():
    """The hazard the collector guards against: with next-step autoreset, the step after an episode
    ends returns the reset frame with reward 0 and the action ignored."""
    envs = SyncVectorEnv([lambda: TinyImageEnv(min_length=2, max_length=2)])
    envs.reset(seed=0)
    frames = [envs.step(np.array([1]))[0][0, 0, 0] for _ in range(3)]
    assert frames[1][0] == 2 and frames[2][2] == RESET_MARK
    envs.close()


def test_user_async_vector_env(tmp_path):
    envs = AsyncVectorEnv([TinyImageEnv, TinyImageEnv])
    try:
        ds = collect(envs, 50, tmp_path / "a.h5", regime_fn=regime_of_action, seed=2, progress=False)
    finally:
        envs.close()
    _check_transitions(ds)
    reference = collect(TinyImageEnv(), 50, tmp_path / "one.h5", regime_fn=regime_of_action, seed=2,
                        progress=False)
    np.testing.assert_array_equal(ds.observations(slice(None)), reference.observations(slice(None)))


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_make_vec_from_id_matches_single_env(tmp_path, vectorization):
    ds = collect(TINY_ID, 70, tmp_path / "v.h5", regime_fn=regime_of_action, num_envs=2,
                 vectorization=vectorization, seed=9, progress=False)
    _check_transitions(ds)
    reference = collect(gym.make(TINY_ID), 70, tmp_path / "one.h5", regime_fn=regime_of_action, seed=9,
                        progress=False)
    a, b = _all(ds.path), _all(reference.path)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert ds.attrs["num_envs"] == 2 and ds.attrs["vectorization"] == vectorization


def test_balls_two_lanes_match_one(tmp_path):
    one = collect("causal_wm/Balls-v0", 130, tmp_path / "one.h5", seed=1, progress=False)
    two = collect("causal_wm/Balls-v0", 130, tmp_path / "two.h5", seed=1, num_envs=2, progress=False)
    a, b = _all(one.path), _all(two.path)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _bad_regime(action):
    return -1


def _pixel_policy(obs):
    return int(obs[1, 1, 0]) % 3


def test_worker_processes_balanced_and_errors(tmp_path):
    ds = collect(TINY_ID, None, tmp_path / "b.h5", policy="balanced", per_regime=30, regime_fn=regime_of_action,
                 num_envs=2, vectorization="async", progress=False)
    reference = collect(TINY_ID, None, tmp_path / "r.h5", policy="balanced", per_regime=30,
                        regime_fn=regime_of_action, progress=False)
    assert ds.regime_counts() == {0: 30, 1: 30, 2: 30}
    np.testing.assert_array_equal(ds.observations(slice(None)), reference.observations(slice(None)))
    with pytest.raises(ValueError, match="invalid regime -1"):
        collect(TINY_ID, 50, tmp_path / "x.h5", regime_fn=_bad_regime, num_envs=2, vectorization="async",
                progress=False)


def test_user_policy_with_async_id_uses_a_vector_env(tmp_path):
    ds = collect(TINY_ID, 60, tmp_path / "p.h5", policy=_pixel_policy, regime_fn=regime_of_action, num_envs=2,
                 vectorization="async", seed=5, progress=False)
    _check_transitions(ds)
    reference = collect(TINY_ID, 60, tmp_path / "r.h5", policy=_pixel_policy, regime_fn=regime_of_action, seed=5,
                        progress=False)
    np.testing.assert_array_equal(ds.observations(slice(None)), reference.observations(slice(None)))
    assert ds.attrs["vectorization"] == "async"
