"""Training one stable-baselines3 agent (PPO, A2C or DQN) on one observation type of a causal scene
(``causal-wm train-agent``, ``scripts/train_agent.py`` and ``scripts/bench_agents.py`` use it).

Observation types:

- ``pixels``: the frames, SB3's ``CnnPolicy`` (NatureCNN);
- ``causal``: the latents of a learned causal encoder (``--model-path``: a saved ``CausalWorldModel``
  or ``ImageCRLResult``), through ``CausalEncoderVecObservation`` (``--encoder-mode wrapper``, the
  frames are encoded once per step) or ``CausalFeaturesExtractor`` (``--encoder-mode extractor``,
  the encoder sits in the policy; ``--fine-tune`` trains it too);
- ``autoencoder``: the code of a plain (non-causal) convolutional autoencoder of the same latent size
  (``--model-path``: a file written by ``PlainAutoencoder.save``), the baseline for the causal encoder;
- ``true``: the scene's true latents (``TrueLatentObservation``), the oracle ceiling.

Writes under ``<out>/<run name>/``: TensorBoard event files (when the ``tensorboard`` package is
installed), ``monitor.csv`` (SB3's ``VecMonitor``: one row per finished episode), ``curve.json`` (env
steps and return of every finished episode) and ``agent.zip``.

    causal-wm train-agent --obs-type true --total-timesteps 50000
    causal-wm train-agent --obs-type causal --model-path model.pt --algo a2c

    from causal_wm.agents.training import TrainConfig, train
    result = train(TrainConfig(obs_type="causal", model_path="model.pt", total_timesteps=20_000))
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.agents.config import ALGOS, AUTOENCODER_FORMAT, ENCODER_MODES, OBS_TYPES, TrainConfig
from causal_wm.agents.features import CausalFeaturesExtractor
from causal_wm.agents.wrappers import CausalEncoderVecObservation, TrueLatentObservation
from causal_wm.crl.image_models import ConvAutoencoder, Standardize
from causal_wm.device import resolve_device
from causal_wm.persistence import Persistent, check_state, read_state, state_errors
from causal_wm.pixels import check_frames, prepare_images


# --- the non-causal baseline ------------------------------------------------------------------------
class _AutoencoderEncoder(nn.Module):
    """float ``(B, 3, H, W)`` in ``[0, 1]`` -> standardised code ``(B, n)`` at the model resolution."""

    def __init__(self, autoencoder: ConvAutoencoder, standardize: Standardize, image_size: int) -> None:
        super().__init__()
        self.autoencoder, self.standardize, self.image_size = autoencoder, standardize, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardize(self.autoencoder.encoder(prepare_images(x, self.image_size)))


class PlainAutoencoder(Persistent):
    """A convolutional autoencoder whose code has ``n`` coordinates: the non-causal baseline of the
    same latent size as a causal encoder. Pixel-wise binary cross-entropy, no regime labels; the code
    is standardised (zero mean, unit variance on the training frames) like the causal latents.
    Offers ``.n``, ``.encoder_module()`` and ``.encode``, so the agent wrappers accept it."""

    FORMAT: ClassVar[str] = AUTOENCODER_FORMAT
    FORMAT_VERSION: ClassVar[int] = 1

    def __init__(self, autoencoder: ConvAutoencoder, standardize: Standardize, settings: dict[str, Any]) -> None:
        self.autoencoder, self.standardize, self.settings = autoencoder, standardize, dict(settings)

    @property
    def n(self) -> int:
        return int(self.settings["n"])

    @property
    def image_size(self) -> int:
        return int(self.settings["image_size"])

    def encoder_module(self) -> nn.Module:
        return _AutoencoderEncoder(self.autoencoder, self.standardize, self.image_size)

    @torch.no_grad()
    def encode(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Codes ``(N, n)`` float32 of uint8 frames ``(N, H, W, 3)`` or float ``(N, 3, H, W)`` in ``[0, 1]``."""
        check_frames(images)
        module = self.encoder_module().eval()
        device = next(self.autoencoder.parameters()).device
        out = [module(prepare_images(images[s: s + batch_size], self.image_size).to(device)).cpu()
               for s in range(0, len(images), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n), np.float32)

    @classmethod
    def fit(cls, frames: np.ndarray, n: int, *, image_size: int = 32, epochs: int = 10, batch_size: int = 64,
            lr: float = 2e-3, channels: int = 32, hidden: int = 256, seed: int = 0, device: str = "auto",
            progress: bool = True) -> PlainAutoencoder:
        """Train on uint8 frames ``(N, H, W, 3)``; ``n`` is the code size (the causal model's latents)."""
        from tqdm import tqdm

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
        if len(frames) < batch_size:
            raise ValueError(f"need at least batch_size = {batch_size} frames, got {len(frames)}")
        dev = resolve_device(device)
        torch.manual_seed(seed)
        ae = ConvAutoencoder(image_size, n, channels, hidden).to(dev)
        x_all = prepare_images(frames, image_size).to(dev)
        opt = torch.optim.Adam(ae.parameters(), lr=lr)
        rng = np.random.default_rng(seed)
        history = []
        for _ in tqdm(range(epochs), desc="plain autoencoder", disable=not progress):
            ae.train()
            order = torch.as_tensor(rng.permutation(len(x_all)), device=dev)
            total = 0.0
            for s in range(0, len(order), batch_size):
                x = x_all[order[s: s + batch_size]]
                _, logits = ae(x)
                loss = F.binary_cross_entropy_with_logits(logits, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(x)
            history.append(total / len(order))
        ae.eval()
        with torch.no_grad():
            codes = torch.cat([ae.encoder(x_all[s: s + 1024]) for s in range(0, len(x_all), 1024)])
        standardize = Standardize(codes.mean(0), codes.std(0).clamp_min(1e-6))
        ae.requires_grad_(False)
        settings = dict(n=n, image_size=image_size, channels=channels, hidden=hidden, epochs=epochs,
                        batch_size=batch_size, lr=lr, seed=seed, frames=len(frames), bce=history)
        return cls(ae, standardize.to(dev), settings)

    # ``save`` and ``load`` come from ``causal_wm.persistence.Persistent``
    def state(self) -> dict[str, Any]:
        return {"format": AUTOENCODER_FORMAT, "version": 1, "settings": json.dumps(self.settings),
                "autoencoder": {k: v.detach().cpu() for k, v in self.autoencoder.state_dict().items()},
                "standardize": {k: v.detach().cpu() for k, v in self.standardize.state_dict().items()}}

    @classmethod
    def from_state(cls, state: Any, device: Any = "cpu", source: str = "state") -> PlainAutoencoder:
        # files written before the format had a version carry none: read them as version 1
        state = {**state, "version": 1} if isinstance(state, dict) and "version" not in state else state
        check_state(state, format=AUTOENCODER_FORMAT, version=1, source=source)
        with state_errors(source, "plain autoencoder"):
            settings = json.loads(state["settings"])
            ae = ConvAutoencoder(settings["image_size"], settings["n"], settings["channels"], settings["hidden"])
            ae.load_state_dict(state["autoencoder"])
            standardize = Standardize(state["standardize"]["mean"], state["standardize"]["std"])
        dev = resolve_device(device)
        ae.to(dev).eval().requires_grad_(False)
        return cls(ae, standardize.to(dev), settings)

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = "cpu") -> PlainAutoencoder:
        """Read a file written by ``save`` (on the CPU by default)."""
        return cls.from_state(read_state(path, "a plain autoencoder"), device, source=str(path))


# --- training ---------------------------------------------------------------------------------------
def check_config(config: TrainConfig) -> TrainConfig:
    if config.obs_type not in OBS_TYPES:
        raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {config.obs_type!r}")
    if config.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {config.algo!r}")
    if config.encoder_mode not in ENCODER_MODES:
        raise ValueError(f"encoder_mode must be one of {ENCODER_MODES}, got {config.encoder_mode!r}")
    if config.obs_type in ("causal", "autoencoder") and not config.model_path:
        raise ValueError(f"obs_type {config.obs_type!r} needs model_path")
    if config.encoder_mode == "extractor" and config.obs_type != "causal":
        raise ValueError("encoder_mode 'extractor' applies to obs_type 'causal' only")
    if config.fine_tune and config.encoder_mode != "extractor":
        raise ValueError("fine_tune needs encoder_mode 'extractor' (the wrapper never trains the encoder)")
    if config.total_timesteps < 1 or config.n_envs < 1:
        raise ValueError("total_timesteps and n_envs must be positive")
    return config


def algo_settings(algo: str, total_timesteps: int, n_envs: int) -> dict[str, Any]:
    """Hyperparameters, the same for every observation type. The reach task rewards the current
    sample only, so a short horizon (gamma 0.9) suffices."""
    if algo == "ppo":
        return dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=3e-4, gamma=0.9, gae_lambda=0.95,
                    ent_coef=0.01)
    if algo == "a2c":
        return dict(n_steps=16, learning_rate=7e-4, gamma=0.9, ent_coef=0.01)
    return dict(buffer_size=min(50_000, max(1_000, total_timesteps)), learning_starts=min(1_000, total_timesteps // 4),
                batch_size=64, train_freq=4, target_update_interval=max(100, 1_000 // n_envs), gamma=0.9,
                exploration_fraction=0.3, exploration_final_eps=0.05, learning_rate=3e-4)


def make_training_env(config: TrainConfig):
    """The training ``VecEnv`` of ``config``: seeded, episode statistics recorded (``VecMonitor``)
    into ``<run>/monitor.csv``, observations of ``obs_type`` (the causal extractor sees frames)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    def thunk(rank: int):
        def make() -> gym.Env:
            env = gym.make(config.env_id, **config.env_kwargs)
            if config.obs_type == "true":
                env = TrueLatentObservation(env)
            env.action_space.seed(config.seed + rank)
            return env
        return make

    venv = DummyVecEnv([thunk(rank) for rank in range(config.n_envs)])
    venv.seed(config.seed)
    run_dir = Path(config.out) / run_name(config)
    venv = VecMonitor(venv, filename=str(run_dir / "monitor.csv"))
    if config.obs_type == "causal" and config.encoder_mode == "wrapper":
        venv = CausalEncoderVecObservation(venv, config.model_path, device=config.device)
    elif config.obs_type == "autoencoder":
        venv = CausalEncoderVecObservation(venv, PlainAutoencoder.load(config.model_path, device=config.device),
                                           device=config.device)
    return venv


def run_name(config: TrainConfig) -> str:
    if config.run_name:
        return config.run_name
    env = config.env_id.split("/")[-1]
    mode = "" if config.obs_type != "causal" or config.encoder_mode == "wrapper" else \
        ("-finetuned" if config.fine_tune else "-extractor")
    return f"{env}__{config.obs_type}{mode}__{config.algo}__{config.seed}"


def build_agent(config: TrainConfig, venv, tensorboard_log: str | None = None):
    from stable_baselines3 import A2C, DQN, PPO

    policy_kwargs: dict[str, Any] = {}
    if config.obs_type == "pixels":
        policy = "CnnPolicy"
    elif config.obs_type == "causal" and config.encoder_mode == "extractor":
        policy = "CnnPolicy"
        policy_kwargs = dict(features_extractor_class=CausalFeaturesExtractor,
                             features_extractor_kwargs=dict(model_path=str(config.model_path),
                                                            fine_tune=config.fine_tune))
    else:
        policy = "MlpPolicy"
    cls = {"ppo": PPO, "a2c": A2C, "dqn": DQN}[config.algo]
    return cls(policy, venv, seed=config.seed, device=str(resolve_device(config.device)), verbose=0,
               tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs or None,
               **algo_settings(config.algo, config.total_timesteps, config.n_envs))


def _episode_recorder():
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeRecorder(BaseCallback):
        """Env steps (all envs together) and return of every finished episode; ``charts/`` scalars."""

        def __init__(self) -> None:
            super().__init__()
            self.steps: list[int] = []
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                episode = info.get("episode")
                if episode is not None:
                    self.steps.append(int(self.num_timesteps))
                    self.returns.append(float(episode["r"]))
                    self.logger.record_mean("charts/episodic_return", float(episode["r"]))
            return True

    return EpisodeRecorder()


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one agent; returns (and writes to ``<run>/curve.json``) the settings, the learning curve
    (``steps``: env steps at the end of every episode, ``returns``: its return), ``final_return``
    (mean of the last 10% of episodes), wall time and env steps per second."""
    check_config(config)
    torch.set_num_threads(config.torch_threads)
    run_dir = Path(config.out) / run_name(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import tensorboard  # noqa: F401  (SB3 writes event files only when it is installed)
        tensorboard_log: str | None = str(run_dir)
    except ImportError:
        tensorboard_log = None
    venv = make_training_env(config)
    agent = build_agent(config, venv, tensorboard_log)
    recorder = _episode_recorder()
    start = time.perf_counter()
    agent.learn(total_timesteps=config.total_timesteps, callback=recorder, tb_log_name="tb")
    wall = time.perf_counter() - start
    venv.close()
    returns = np.asarray(recorder.returns, dtype=np.float64)
    tail = returns[-max(1, len(returns) // 10):] if len(returns) else returns
    result = {
        "config": dataclasses.asdict(config),
        "algo_settings": algo_settings(config.algo, config.total_timesteps, config.n_envs),
        "steps": recorder.steps,
        "returns": [round(float(r), 4) for r in returns],
        "final_return": float(tail.mean()) if len(tail) else None,
        "episodes": len(returns),
        "timesteps": int(agent.num_timesteps),
        "wall_s": wall,
        "steps_per_s": agent.num_timesteps / wall if wall > 0 else None,
        "tensorboard": tensorboard_log is not None,
        "run_dir": str(run_dir),
    }
    if config.save_agent:
        agent.save(run_dir / "agent.zip")
        result["agent"] = str(run_dir / "agent.zip")
    (run_dir / "curve.json").write_text(json.dumps(result, indent=1))
    return result
