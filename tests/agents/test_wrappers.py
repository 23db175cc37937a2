"""Tests of the observation wrappers (``causal_wm.agents.wrappers``) with a tiny image CRL model."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.agents.wrappers import (
    CausalEncoderObservation,
    CausalEncoderVecObservation,
    TrueLatentObservation,
    load_encoder_model,
)
from causal_wm.crl.images import fit_image_crl

torch.set_num_threads(1)

SCENE = dict(num_balls=2, image_size=32, ball_radius=2.5)


def make_env(**kwargs) -> gym.Env:
    """The reach task in the scene the tiny model was trained on."""
    return gym.make("causal_wm/Balls-v0", **SCENE, task="reach", persistence=0.9, **kwargs)


@pytest.fixture(scope="module")
def data():
    """Frames per regime ``{r: (150, 32, 32, 3)}`` and the menu of the tiny scene."""
    env = gym.make("causal_wm/Balls-v0", **SCENE, do_values=())
    scene = env.unwrapped
    menu = list(scene.interventions)
    frames = {r: scene.renderer(scene.scm.sample(150, iv, seed=r)) for r, iv in enumerate(menu)}
    env.close()
    return frames, menu


@pytest.fixture(scope="module")
def model(data):
    frames, menu = data
    return fit_image_crl(frames, menu=menu, preset="debug", seed=0, device="cpu", progress=False)


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory):
    return str(model.save(tmp_path_factory.mktemp("model") / "tiny.pt"))


class DotEnv(gym.Env):
    """A user's own image env: a white dot on a black 24 x 24 uint8 HWC frame; action 0/1 moves it
    left/right; reward: minus the distance to the centre column."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, size: int = 24) -> None:
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(2)
        self.x = 0
        self.t = 0

    def _frame(self) -> np.ndarray:
        frame = np.zeros((self.size, self.size, 3), np.uint8)
        frame[self.size // 2 - 1: self.size // 2 + 2, max(0, self.x - 1): self.x + 2] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = int(self.np_random.integers(0, self.size)), 0
        return self._frame(), {}

    def step(self, action):
        self.x = int(np.clip(self.x + (1 if int(action) == 1 else -1), 0, self.size - 1))
        self.t += 1
        return self._frame(), -abs(self.x - self.size // 2) / self.size, False, self.t >= 20, {}


def _encoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.encoder_module().state_dict().items()}


# --- single env -------------------------------------------------------------------------------------
def test_observation_space_and_values_equal_model_encode(model):
    env = CausalEncoderObservation(make_env(), model)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (model.n,), np.float32)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (model.n,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    np.testing.assert_allclose(obs, model.encode(env.unwrapped.render()[None])[0], atol=1e-4)
    for action in (0, 3, 5):
        obs, *_ = env.step(action)
        np.testing.assert_allclose(obs, model.encode(env.unwrapped.render()[None])[0], atol=1e-4)


def test_wrapper_loads_a_model_path_and_agrees_with_the_model_object(model, model_path):
    by_path = CausalEncoderObservation(make_env(), model_path)
    by_object = CausalEncoderObservation(make_env(), model)
    np.testing.assert_allclose(by_path.reset(seed=1)[0], by_object.reset(seed=1)[0], atol=1e-6)


def test_any_frame_size_is_resized_to_the_model_resolution(model):
    env = CausalEncoderObservation(gym.make("causal_wm/Balls-v0", num_balls=2, image_size=64, ball_radius=5.0,
                                            task="reach"), model)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, model.encode(env.unwrapped.render()[None])[0], atol=1e-4)


# --- vector env -------------------------------------------------------------------------------------
def _venv(num_envs: int = 3, seed: int = 7) -> DummyVecEnv:
    venv = DummyVecEnv([make_env for _ in range(num_envs)])
    venv.seed(seed)
    return venv


def test_vector_variant_equals_per_env_encoding_including_terminal_observations(model):
    raw, wrapped = _venv(), CausalEncoderVecObservation(_venv(), model)
    assert wrapped.observation_space == spaces.Box(-np.inf, np.inf, (model.n,), np.float32)
    frames, latents = raw.reset(), wrapped.reset()
    assert latents.shape == (3, model.n) and latents.dtype == np.float32
    np.testing.assert_allclose(latents, model.encode(frames), atol=1e-4)
    rng = np.random.default_rng(0)
    terminal_seen = 0
    for _ in range(51):  # one episode (50 steps) and one step into the next
        actions = rng.integers(0, raw.action_space.n, size=3)
        raw.step_async(actions)
        wrapped.step_async(actions)
        frames, r_raw, d_raw, i_raw = raw.step_wait()
        latents, r_wrapped, d_wrapped, i_wrapped = wrapped.step_wait()
        # float32 matrix products round differently for a batch of 3 than for one frame (~1e-5 here)
        np.testing.assert_allclose(latents, np.stack([model.encode(f[None])[0] for f in frames]), atol=1e-4)
        np.testing.assert_array_equal(r_raw, r_wrapped)
        np.testing.assert_array_equal(d_raw, d_wrapped)
        for info_raw, info_wrapped in zip(i_raw, i_wrapped, strict=True):
            if "terminal_observation" in info_raw:
                terminal_seen += 1
                np.testing.assert_allclose(info_wrapped["terminal_observation"],
                                           model.encode(info_raw["terminal_observation"][None])[0], atol=1e-4)
    assert terminal_seen == 3


def test_vector_variant_reads_channel_first_frames(model):
    raw, wrapped = _venv(2), CausalEncoderVecObservation(VecTransposeImage(_venv(2)), model)
    np.testing.assert_allclose(wrapped.reset(), model.encode(raw.reset()), atol=1e-4)


# --- true latents -----------------------------------------------------------------------------------
def test_true_latent_observation_is_the_scene_latents():
    env = TrueLatentObservation(make_env())
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (4,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32
    np.testing.assert_allclose(obs, info["z"].astype(np.float32))
    obs, *_, info = env.step(2)
    np.testing.assert_allclose(obs, info["z"].astype(np.float32))


def test_true_latent_observation_needs_a_causal_scene():
    with pytest.raises(ValueError, match="no true latents"):
        TrueLatentObservation(DotEnv())


# --- errors -----------------------------------------------------------------------------------------
def test_non_image_observation_space_is_rejected(model):
    with pytest.raises(ValueError, match="uint8 image Box"):
        CausalEncoderObservation(TrueLatentObservation(make_env()), model)


def test_wrong_channels_and_non_square_frames_are_rejected(model):
    class Frames(DotEnv):
        def __init__(self, shape):
            super().__init__()
            self.observation_space = spaces.Box(0, 255, shape, dtype=np.uint8)

    with pytest.raises(ValueError, match="3 colour channels"):
        CausalEncoderObservation(Frames((24, 24, 4)), model)
    with pytest.raises(ValueError, match="square"):
        CausalEncoderObservation(Frames((24, 32, 3)), model)


def test_frames_of_another_size_than_the_space_are_rejected(model):
    env = CausalEncoderObservation(make_env(), model)
    with pytest.raises(ValueError, match="frames must have shape"):
        env.observation(np.zeros((16, 16, 3), np.uint8))


def test_bad_models_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="encoder_module"):
        CausalEncoderObservation(make_env(), object())
    with pytest.raises(ValueError, match="no model file"):
        load_encoder_model(tmp_path / "missing.pt")


# --- agents -----------------------------------------------------------------------------------------
def _small_agent(algo: str, env, seed: int = 0):
    if algo == "ppo":
        return PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=seed, device="cpu")
    if algo == "a2c":
        return A2C("MlpPolicy", env, n_steps=8, seed=seed, device="cpu")
    return DQN("MlpPolicy", env, buffer_size=500, learning_starts=64, train_freq=4, target_update_interval=50,
               seed=seed, device="cpu")


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_agents_learn_on_the_vector_wrapper_and_leave_the_encoder_unchanged(model, algo):
    before = _encoder_state(model)
    venv = CausalEncoderVecObservation(_venv(2), model)
    agent = _small_agent(algo, venv).learn(256)
    assert agent.num_timesteps >= 256
    action, _ = agent.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,)
    for key, value in _encoder_state(model).items():
        assert torch.equal(value, before[key]), key


def test_agent_on_the_single_env_wrapper_round_trips(model, tmp_path):
    env = CausalEncoderObservation(make_env(), model)
    agent = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(128)
    agent.save(tmp_path / "agent.zip")
    loaded = PPO.load(tmp_path / "agent.zip", env=env, device="cpu")
    obs = np.stack([env.reset(seed=s)[0] for s in range(8)])
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_a_users_own_image_env_works_with_the_wrapper(model):
    env = CausalEncoderObservation(DotEnv(), model)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (model.n,)
    np.testing.assert_allclose(obs, model.encode(env.env.unwrapped._frame()[None])[0], atol=1e-4)
    PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu").learn(64)


def test_a_causal_world_model_file_serves_as_the_encoder(data, model, tmp_path):
    from causal_wm.world_model import CausalWorldModel

    frames, menu = data
    images = np.concatenate(list(frames.values()))
    regimes = np.concatenate([np.full(len(f), r) for r, f in frames.items()])
    world_model = CausalWorldModel.fit_arrays(images, regimes, menu=menu, preset="debug", representation=model)
    path = tmp_path / "world_model.pt"
    world_model.save(path)
    env = CausalEncoderObservation(make_env(), str(path))
    assert type(env.encoder.model).__name__ == "CausalWorldModel"
    obs, _ = env.reset(seed=2)
    np.testing.assert_allclose(obs, world_model.encode(env.unwrapped.render()[None])[0], atol=1e-4)
