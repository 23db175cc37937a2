"""Collector: policies, regime labelling, ground truth, argument and env errors."""

from __future__ import annotations

import gymnasium as gym
import h5py
import numpy as np
import pytest
from collect_envs import RESET_MARK, TINY_ID, TinyImageEnv, VectorObsEnv, regime_of_action

import causal_wm
from causal_wm.data import Dataset, collect


def _tiny(tmp_path, steps=60, name="tiny.h5", **kwargs):
    kwargs.setdefault("regime_fn", regime_of_action)
    return collect(TinyImageEnv(), steps, tmp_path / name, progress=False, **kwargs)


def test_custom_env_labelled_by_regime_fn(tmp_path):
    ds = _tiny(tmp_path, steps=60, seed=3)
    assert len(ds) == 60
    actions = ds.actions(slice(None))
    np.testing.assert_array_equal(ds.regime, actions)  # regime_fn is the identity on actions
    obs = ds.observations(slice(None))
    assert obs.dtype == np.uint8 and obs.shape == (60, 8, 8, 3)
    # pixel (0, 0) of a step's frame is (step + 1, action, 0): rows are real transitions in order
    np.testing.assert_array_equal(obs[:, 0, 0, 0], ds.step + 1)
    np.testing.assert_array_equal(obs[:, 0, 0, 1], actions)
    assert not np.any(obs[:, 0, 0, 2] == RESET_MARK)
    # episodes are consecutive, steps count up from 0, and only the last step of an episode ends it
    episode, step = ds.episode, ds.step
    assert episode[0] == 0 and np.all(np.diff(episode) >= 0) and np.all(np.diff(episode) <= 1)
    new_episode = np.flatnonzero(np.diff(episode)) + 1
    np.testing.assert_array_equal(step[new_episode], 0)
    terminated = h5py.File(ds.path)["terminated"][:]
    episode_ends = np.append(new_episode, len(ds))
    np.testing.assert_array_equal(np.flatnonzero(terminated) + 1, episode_ends[: terminated.sum()])
    assert terminated.sum() >= len(new_episode)  # every episode but possibly the last one ended
    assert ds.has_latents and not ds.has_targets and ds.menu is None and ds.graph is None
    assert ds.latents([0, 1]).shape == (2, 2)
    # reset observations are kept per episode, marked by the test env
    assert np.all(ds.reset_observations(np.arange(ds.num_episodes))[:, 0, 0, 2] == RESET_MARK)
    assert ds.attrs["package_version"] == causal_wm.__version__
    assert ds.attrs["regime_source"] == "regime_fn" and ds.seed == 3


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _tiny(tmp_path, name="a.h5", seed=1)
    b = _tiny(tmp_path, name="b.h5", seed=1)
    c = _tiny(tmp_path, name="c.h5", seed=2)
    np.testing.assert_array_equal(a.observations(slice(None)), b.observations(slice(None)))
    np.testing.assert_array_equal(a.latents(slice(None)), b.latents(slice(None)))
    assert not np.array_equal(a.observations(slice(None)), c.observations(slice(None)))


def test_env_without_labels_needs_regime_fn(tmp_path):
    with pytest.raises(ValueError, match="regime_fn"):
        collect(TinyImageEnv(), 10, tmp_path / "x.h5", progress=False)
    ds = collect(TinyImageEnv(label=True), 10, tmp_path / "y.h5", progress=False)
    np.testing.assert_array_equal(ds.regime, ds.actions(slice(None)))


def test_regime_fn_must_agree_with_info(tmp_path):
    with pytest.raises(ValueError, match="info\\['regime'\\]"):
        collect(TinyImageEnv(label=True), 30, tmp_path / "x.h5", regime_fn=lambda a: (a + 1) % 3,
                progress=False)


@pytest.mark.parametrize("bad", [-1, 1.5, "one", True, None])
def test_invalid_regime_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid regime"):
        collect(TinyImageEnv(), 10, tmp_path / "x.h5", regime_fn=lambda a: bad, progress=False)


def test_regime_outside_the_menu_is_refused(tmp_path):
    class MenuEnv(TinyImageEnv):
        interventions = (None, causal_wm.Intervention.hard(0), causal_wm.Intervention.hard(1))

        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            info["regime"] = 7
            return obs, reward, terminated, truncated, info

    with pytest.raises(ValueError, match="invalid regime 7"):
        collect(MenuEnv(), 10, tmp_path / "x.h5", progress=False)


def test_non_image_env_is_refused(tmp_path):
    with pytest.raises(ValueError, match="image observations"):
        collect(VectorObsEnv(), 10, tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match="image observations"):
        collect("CartPole-v1", 10, tmp_path / "x.h5", progress=False, regime_fn=lambda a: 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": None}, "steps"),
    ({"policy": "wander"}, "unknown policy"), ({"policy": "mix:1.5"}, "seeing fraction"),
    ({"policy": -0.1}, "seeing fraction"), ({"per_regime": 5}, "per_regime"),
    ({"policy": "balanced"}, "per_regime"), ({"policy": "balanced", "per_regime": 5}, "steps=10"),
    ({"num_envs": 0}, "num_envs"), ({"num_envs": 2}, "num_envs"), ({"vectorization": "threads"}, "vectorization"),
    ({"chunk_size": 0}, "chunk_size"), ({"compression": "zstd"}, "compression"), ({"seed": -1}, "seed"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    kwargs = {"steps": 10, **kwargs}
    steps = kwargs.pop("steps")
    with pytest.raises(ValueError, match=match):
        collect(TinyImageEnv(), steps, tmp_path / "x.h5", regime_fn=regime_of_action, progress=False, **kwargs)


def test_unwritable_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        _tiny(tmp_path, name="missing/folder/x.h5")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        _tiny(tmp_path, name="adir")


def test_seeing_mix_and_acting_policies(tmp_path):
    seeing = _tiny(tmp_path, steps=40, name="s.h5", policy="seeing")
    assert seeing.regimes == [0]
    none_seeing = _tiny(tmp_path, steps=40, name="m0.h5", policy="mix:0")
    assert 0 not in none_seeing.regimes and set(none_seeing.regimes) <= {1, 2}
    all_seeing = _tiny(tmp_path, steps=40, name="m1.h5", policy=1.0)
    assert all_seeing.regimes == [0]
    mix = _tiny(tmp_path, steps=600, name="m3.h5", policy=0.3)
    assert 0.22 < np.mean(mix.regime == 0) < 0.38  # binomial(600, 0.3): 6 standard deviations
    acting = _tiny(tmp_path, steps=600, name="a.h5", policy="acting")
    counts = np.bincount(acting.regime, minlength=3)
    assert np.all(counts > 150)  # uniform over the 3 actions, regime 0 included
    assert acting.attrs["policy"] == "acting" and mix.attrs["policy"] == "mix:0.3"


def test_callable_policy(tmp_path):
    seen = []

    def always_two(obs):
        seen.append(obs.shape)
        return 2

    ds = _tiny(tmp_path, steps=20, policy=always_two)
    assert ds.regimes == [2] and seen[0] == (8, 8, 3) and len(seen) == 20
    with pytest.raises(ValueError, match="outside the action space"):
        _tiny(tmp_path, steps=5, name="bad.h5", policy=lambda obs: 5)


def test_stable_baselines3_model_policy(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", TinyImageEnv(), n_steps=16, batch_size=16, seed=0, device="cpu")
    ds = _tiny(tmp_path, steps=30, policy=model)
    assert len(ds) == 30 and set(ds.regimes) <= {0, 1, 2}
    assert ds.attrs["policy"] == "model:PPO"


@pytest.mark.parametrize("num_envs", [1, 2])
def test_balanced_gives_exactly_per_regime(tmp_path, num_envs):
    ds = collect(TINY_ID, None, tmp_path / "b.h5", policy="balanced", per_regime=25, regime_fn=regime_of_action,
                 num_envs=num_envs, progress=False)
    assert ds.regime_counts() == {0: 25, 1: 25, 2: 25}
    reference = collect(TINY_ID, 75, tmp_path / "r.h5", policy="balanced", per_regime=25,
                        regime_fn=regime_of_action, progress=False)
    np.testing.assert_array_equal(ds.observations(slice(None)), reference.observations(slice(None)))


def test_balanced_needs_known_regimes(tmp_path):
    with pytest.raises(ValueError, match="balanced"):
        collect(TinyImageEnv(label=True), None, tmp_path / "b.h5", policy="balanced", per_regime=5, progress=False)


def test_balls_env_ground_truth(tmp_path):
    env = gym.make("causal_wm/Balls-v0")
    ds = collect(env, 120, tmp_path / "balls.h5", seed=5, progress=False)
    unwrapped = env.unwrapped
    assert ds.env_id == "causal_wm/Balls-v0"
    np.testing.assert_array_equal(ds.graph, unwrapped.graph)
    assert ds.menu == list(unwrapped.interventions)
    assert ds.scm_params["n"] == unwrapped.graph.shape[0]
    assert ds.obs_shape == (64, 64, 3) and ds.num_latents == unwrapped.graph.shape[0]
    np.testing.assert_array_equal(ds.regime, ds.actions(slice(None)))
    masks = ds.targets(slice(None))
    for row in range(0, 120, 7):
        intervention = ds.menu[ds.regime[row]]
        expected = np.zeros(ds.num_latents, dtype=bool)
        if intervention is not None:
            expected[list(intervention.targets)] = True
        np.testing.assert_array_equal(masks[row], expected)
    # truncation by the 50-step time limit ends the episodes
    truncated = h5py.File(ds.path)["truncated"][:]
    np.testing.assert_array_equal(np.flatnonzero(truncated), [49, 99])


def test_balls_balanced(tmp_path):
    ds = collect("causal_wm/Balls-v0", None, tmp_path / "bb.h5", policy="balanced", per_regime=4, progress=False)
    counts = ds.regime_counts()
    assert set(counts.values()) == {4} and len(counts) == len(ds.menu)


def test_dataset_of_missing_or_foreign_file(tmp_path):
    from causal_wm.data import DatasetError

    with pytest.raises(DatasetError, match="no collection file"):
        Dataset(tmp_path / "nothing.h5")


def test_stored_frames_equal_a_replay_of_the_env(tmp_path):
    """Lossless: every stored frame equals the frame the env gives when its episode is replayed from
    the episode seed with the stored actions (chunk sizes chosen to cut storage chunks unevenly)."""
    from causal_wm.data import episode_seeds

    ds = collect(TinyImageEnv(), 230, tmp_path / "r.h5", regime_fn=regime_of_action, seed=4, chunk_size=50,
                 progress=False)
    obs, actions = ds.observations(slice(None)), ds.actions(slice(None))
    env = TinyImageEnv()
    for e in range(ds.num_episodes):
        rows = np.flatnonzero(ds.episode == e)
        frame, _ = env.reset(seed=episode_seeds(4, e)[0])
        np.testing.assert_array_equal(ds.reset_observations([e])[0], frame)
        for row in rows:
            frame = env.step(int(actions[row]))[0]
            np.testing.assert_array_equal(obs[row], frame)
