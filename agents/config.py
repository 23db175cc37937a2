"""Settings of an agent's training run (``causal_wm.agents.training.train``), kept apart from the
trainer so that the command line can describe them without importing torch or stable-baselines3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OBS_TYPES = ("pixels", "causal", "autoencoder", "true")
ALGOS = ("ppo", "a2c", "dqn")
ENCODER_MODES = ("wrapper", "extractor")
AUTOENCODER_FORMAT = "causal_wm.plain_autoencoder"


@dataclass
class TrainConfig:
    """Settings of one training run."""

    env_id: str = "causal_wm/Balls-v0"
    """gymnasium id of the environment (image observations, discrete actions)"""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"task": "reach", "persistence": 0.9})
    """keyword arguments of gym.make (JSON on the command line)"""
    obs_type: str = "true"
    """what the agent sees: pixels, causal, autoencoder or true"""
    algo: str = "ppo"
    """ppo, a2c or dqn"""
    total_timesteps: int = 50_000
    """env steps of training (all envs together)"""
    seed: int = 0
    """seed of the envs, the agent and torch"""
    model_path: str | None = None
    """the encoder file for obs_type causal (a causal model) or autoencoder (a PlainAutoencoder)"""
    encoder_mode: str = "wrapper"
    """causal encoder as an observation wrapper (encode once per step) or as a features extractor"""
    fine_tune: bool = False
    """train the causal encoder with the policy (encoder_mode extractor only)"""
    n_envs: int = 8
    """parallel envs (a DummyVecEnv: one process)"""
    out: str = "runs"
    """folder of the run folders"""
    run_name: str | None = None
    """name of the run folder (default: <env>__<obs_type>__<algo>__<seed>)"""
    device: str = "auto"
    """torch device of the agent and the encoder (auto: CUDA when available)"""
    torch_threads: int = 1
    """torch CPU threads"""
    save_agent: bool = True
    """write <run>/agent.zip"""
