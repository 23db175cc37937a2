"""Tests of ``CausalFeaturesExtractor`` (``causal_wm.agents.features``) with a tiny image CRL model."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.agents.features import CausalFeaturesExtractor
from causal_wm.crl.images import ImageCRLResult, fit_image_crl

torch.set_num_threads(1)

SCENE = dict(num_balls=2, image_size=32, ball_radius=2.5)
ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}


def make_env(**kwargs) -> gym.Env:
    return gym.make("causal_wm/Balls-v0", **SCENE, task="reach", persistence=0.9, **kwargs)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    env = gym.make("causal_wm/Balls-v0", **SCENE, do_values=())
    scene = env.unwrapped
    menu = list(scene.interventions)
    frames = {r: scene.renderer(scene.scm.sample(150, iv, seed=r)) for r, iv in enumerate(menu)}
    env.close()
    model = fit_image_crl(frames, menu=menu, preset="debug", seed=0, device="cpu", progress=False)
    return str(model.save(tmp_path_factory.mktemp("model") / "tiny.pt"))


@pytest.fixture(scope="module")
def model(model_path):
    return ImageCRLResult.load(model_path, device="cpu")


class CheckerEnv(gym.Env):
    """A user's own image env: a 32 x 32 uint8 HWC frame whose left or right half is lit; the agent is
    rewarded for naming the lit half."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, (32, 32, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(2)
        self.side, self.t = 0, 0

    def _frame(self) -> np.ndarray:
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[:, 16 * self.side: 16 * self.side + 16] = 200
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side, self.t = int(self.np_random.integers(2)), 0
        return self._frame(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self.side else 0.0
        self.side, self.t = int(self.np_random.integers(2)), self.t + 1
        return self._frame(), reward, False, self.t >= 10, {}


def _policy_kwargs(model_path: str, fine_tune: bool = False) -> dict:
    return dict(features_extractor_class=CausalFeaturesExtractor,
                features_extractor_kwargs=dict(model_path=model_path, fine_tune=fine_tune))


def _agent(algo: str, env, model_path: str, fine_tune: bool = False, seed: int = 0):
    kwargs = dict(policy_kwargs=_policy_kwargs(model_path, fine_tune), seed=seed, device="cpu")
    if algo == "ppo":
        return PPO("CnnPolicy", env, n_steps=64, batch_size=64, n_epochs=2, **kwargs)
    if algo == "a2c":
        return A2C("CnnPolicy", env, n_steps=8, **kwargs)
    return DQN("CnnPolicy", env, buffer_size=500, learning_starts=64, train_freq=4, target_update_interval=50,
               **kwargs)


def _venv(num_envs: int = 2, factory=make_env) -> DummyVecEnv:
    venv = DummyVecEnv([factory for _ in range(num_envs)])
    venv.seed(3)
    return venv


def _extractors(agent) -> list[CausalFeaturesExtractor]:
    return [m for m in agent.policy.modules() if isinstance(m, CausalFeaturesExtractor)]


def _state(extractor: CausalFeaturesExtractor) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in extractor.encoder.state_dict().items()}


def test_features_equal_model_encode_on_sb3_preprocessed_frames(model, model_path):
    env = make_env()
    frames = np.stack([env.reset(seed=s)[0] for s in range(5)])
    space = spaces.Box(0, 255, (3, 32, 32), dtype=np.uint8)  # as VecTransposeImage presents it
    extractor = CausalFeaturesExtractor(space, model_path)
    assert extractor.features_dim == model.n
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_allclose(extractor(x).numpy(), model.encode(frames), atol=1e-4)
    channel_last = CausalFeaturesExtractor(spaces.Box(0, 255, (32, 32, 3), dtype=np.uint8), model_path)
    np.testing.assert_allclose(channel_last(x.permute(0, 2, 3, 1)).numpy(), model.encode(frames), atol=1e-4)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_frozen_extractor_learns_round_trips_and_keeps_its_weights(algo, model_path, tmp_path):
    venv = _venv()
    agent = _agent(algo, venv, model_path)
    extractors = _extractors(agent)
    assert extractors
    before = [_state(e) for e in extractors]
    assert all(not p.requires_grad for e in extractors for p in e.encoder.parameters())
    agent.learn(256)
    for extractor, state in zip(extractors, before, strict=True):
        for key, value in _state(extractor).items():
            assert torch.equal(value, state[key]), key
        assert not extractor.encoder.training

    agent.save(tmp_path / "agent.zip")
    loaded = ALGOS[algo].load(tmp_path / "agent.zip", device="cpu")
    assert [type(e) for e in _extractors(loaded)] == [type(e) for e in extractors]
    obs = np.concatenate([venv.reset() for _ in range(3)]).transpose(0, 3, 1, 2)  # as VecTransposeImage gives
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_encoder_stays_in_eval_mode_when_sb3_switches_to_train_mode(model_path):
    agent = _agent("ppo", _venv(), model_path)
    agent.policy.set_training_mode(True)
    extractor = _extractors(agent)[0]
    assert extractor.training and agent.policy.training
    assert not any(m.training for m in extractor.encoder.modules())


def test_fine_tuned_extractor_changes_its_weights_and_round_trips(model_path, tmp_path):
    venv = _venv()
    agent = _agent("ppo", venv, model_path, fine_tune=True)
    extractor = _extractors(agent)[0]
    assert all(p.requires_grad for p in extractor.encoder.parameters())
    before = _state(extractor)
    agent.learn(256)
    assert any(not torch.equal(value, before[key]) for key, value in _state(extractor).items())
    assert not extractor.encoder.training

    agent.save(tmp_path / "agent.zip")
    loaded = PPO.load(tmp_path / "agent.zip", device="cpu")
    loaded_extractor = _extractors(loaded)[0]
    assert loaded_extractor.fine_tune
    for key, value in _state(loaded_extractor).items():  # the fine-tuned weights, not the file's
        assert torch.equal(value, extractor.encoder.state_dict()[key]), key
    obs = venv.reset().transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_a_users_own_image_env_works_with_the_extractor(model_path):
    agent = _agent("ppo", _venv(factory=CheckerEnv), model_path)
    agent.learn(128)
    action, _ = agent.predict(np.zeros((1, 3, 32, 32), np.uint8), deterministic=True)
    assert action.shape == (1,)


def test_non_image_spaces_and_bad_inputs_are_rejected(model_path):
    with pytest.raises(ValueError, match="RGB image observation space"):
        CausalFeaturesExtractor(spaces.Box(-np.inf, np.inf, (4,), np.float32), model_path)
    with pytest.raises(ValueError, match="3 colour channels"):
        CausalFeaturesExtractor(spaces.Box(0, 255, (4, 32, 32), np.uint8), model_path)
    with pytest.raises(ValueError, match="square"):
        CausalFeaturesExtractor(spaces.Box(0, 255, (3, 32, 16), np.uint8), model_path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CausalFeaturesExtractor(spaces.Box(0.0, 255.0, (3, 32, 32), np.float32), model_path)
    with pytest.raises(ValueError, match="no model file"):
        CausalFeaturesExtractor(spaces.Box(0, 255, (3, 32, 32), np.uint8), "missing.pt")
    extractor = CausalFeaturesExtractor(spaces.Box(0, 255, (3, 32, 32), np.uint8), model_path)
    with pytest.raises(ValueError, match="normalize_images"):
        extractor(torch.full((1, 3, 32, 32), 200.0))


@pytest.mark.gpu
def test_extractor_and_wrapper_on_cuda_agree_with_the_cpu_model(model, model_path):
    from causal_wm.agents.wrappers import CausalEncoderObservation

    env = make_env()
    frames = np.stack([env.reset(seed=s)[0] for s in range(4)])
    expected = model.encode(frames)
    extractor = CausalFeaturesExtractor(spaces.Box(0, 255, (3, 32, 32), dtype=np.uint8), model_path).to("cuda")
    x = torch.as_tensor(frames, device="cuda").permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_allclose(extractor(x).cpu().numpy(), expected, atol=1e-4)
    wrapped = CausalEncoderObservation(make_env(), model_path, device="cuda")
    np.testing.assert_allclose(wrapped.reset(seed=0)[0], expected[0], atol=1e-4)
    agent = PPO("CnnPolicy", _venv(), n_steps=64, batch_size=64, n_epochs=1, device="cuda",
                policy_kwargs=_policy_kwargs(model_path)).learn(128)
    assert next(_extractors(agent)[0].encoder.parameters()).is_cuda
