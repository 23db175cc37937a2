"""Observation wrappers that give an agent learned (or true) latents instead of pixels.

    env = CausalEncoderObservation(gym.make("causal_wm/Balls-v0"), model)    # Box(n) float32
    venv = CausalEncoderVecObservation(make_vec_env(...), model)              # one forward pass per step
    oracle_env = TrueLatentObservation(gym.make("causal_wm/Balls-v0"))        # the scene's true z

Encoders: any object with ``.n`` and ``.encoder_module()`` (a ``CausalWorldModel`` or an
``ImageCRLResult``), or the path of a saved one. The encoder module maps float ``(B, 3, H, W)`` in
``[0, 1]`` to latents ``(B, n)``; the wrappers feed it the env's uint8 frames (HWC, the gymnasium
convention, or CHW after SB3's ``VecTransposeImage``) divided by 255, exactly as ``model.encode`` does.
The module runs in eval mode under ``torch.no_grad``: the wrappers never train it.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from causal_wm.device import resolve_device
from causal_wm.pixels import to_chw_float, to_unit_float


class EncoderModel(Protocol):
    """What the wrappers and the features extractor need from a model."""

    n: int

    def encoder_module(self) -> torch.nn.Module:
        """float ``(B, 3, H, W)`` in ``[0, 1]`` -> latents ``(B, n)``."""
        ...


def load_encoder_model(model: EncoderModel | str | os.PathLike, device: str | torch.device = "cpu") -> EncoderModel:
    """The model itself, or the model saved at a path (a ``CausalWorldModel`` or an ``ImageCRLResult``)."""
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(f"no model file at {path!r}")
        try:
            from causal_wm.world_model import load_model
        except ImportError:  # the world-model package is optional here: an image CRL result is enough
            from causal_wm.crl.images import ImageCRLResult
            return ImageCRLResult.load(path, device=device)
        return load_model(path, device=device)
    if not (hasattr(model, "n") and callable(getattr(model, "encoder_module", None))):
        raise ValueError(f"model must have .n and .encoder_module() (a CausalWorldModel or ImageCRLResult) "
                         f"or be a path, got {type(model).__name__}")
    return model


def image_layout(space: gym.Space, what: str = "observation space") -> str:
    """``"hwc"`` or ``"chw"`` for a uint8 RGB image space ``(H, W, 3)`` / ``(3, H, W)``; ValueError otherwise."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) != 3:
        raise ValueError(f"the {what} must be a uint8 image Box (H, W, 3) or (3, H, W), got {space}")
    if space.shape[-1] == 3:
        return "hwc"
    if space.shape[0] == 3:
        return "chw"
    raise ValueError(f"the {what} must have 3 colour channels, (H, W, 3) or (3, H, W), got shape {space.shape}")


def latent_space(n: int) -> spaces.Box:
    """The observation space of ``n`` latents: unbounded ``Box`` ``(n,)`` float32."""
    return spaces.Box(-np.inf, np.inf, (n,), dtype=np.float32)


class _FrameEncoder:
    """Encodes uint8 frames ``(B, H, W, 3)`` or ``(B, 3, H, W)`` to latents ``(B, n)`` float32 numpy."""

    def __init__(self, model: EncoderModel | str | os.PathLike, space: gym.Space,
                 device: str | torch.device | None) -> None:
        self.layout = image_layout(space)
        self.shape = tuple(space.shape)
        if device is None:
            # a model object stays where it is (its modules are shared with the caller); a file goes to "auto"
            self.model = load_encoder_model(model, device="auto")
            self.module = self.model.encoder_module()
            self.device = next(iter(self.module.parameters()), torch.zeros(())).device
        else:
            self.device = resolve_device(device)
            self.model = load_encoder_model(model, device=self.device)
            self.module = self.model.encoder_module().to(self.device)
        self.module.eval()
        self.n = int(self.model.n)
        height, width = self.shape[:2] if self.layout == "hwc" else self.shape[1:]
        if height != width:
            raise ValueError(f"the encoder needs square frames, got {height} x {width}")

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.shape[1:] != self.shape:
            raise ValueError(f"frames must have shape (B, {', '.join(map(str, self.shape))}), got {frames.shape}")
        # the same float conversion as ``model.encode``, so wrapped observations equal its latents
        x = to_chw_float(frames, self.device) if self.layout == "hwc" else to_unit_float(frames, self.device)
        self.module.eval()
        return self.module(x).float().cpu().numpy().astype(np.float32, copy=False)


class CausalEncoderObservation(gym.ObservationWrapper):
    """Replaces an image observation by the learned latents ``(n,)`` float32 of the frame.

    Args:
        env: an env with uint8 RGB frames, ``(H, W, 3)`` or ``(3, H, W)``, square (any size: the
            encoder resizes to its own resolution).
        model: a ``CausalWorldModel`` / ``ImageCRLResult`` or the path of a saved one.
        device: where the encoder runs (``"auto"``: CUDA when available). None (default): a model
            object stays on its device, a model file is loaded with ``"auto"``. A given device moves the
            model's modules there (the encoder module shares them with the model).
    """

    def __init__(self, env: gym.Env, model: EncoderModel | str | os.PathLike,
                 device: str | torch.device | None = None) -> None:
        super().__init__(env)
        self.encoder = _FrameEncoder(model, env.observation_space, device)
        self.observation_space = latent_space(self.encoder.n)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Latents ``(n,)`` float32 of one frame."""
        return self.encoder(np.asarray(observation)[None])[0]


class CausalEncoderVecObservation(VecEnvWrapper):
    """Vector-env variant of ``CausalEncoderObservation``: the frames of all envs, together with the
    terminal frames that SB3 puts in ``info["terminal_observation"]`` on auto-reset (used to bootstrap
    truncated episodes), are encoded in one forward pass per step.

    Args:
        venv: an SB3 ``VecEnv`` with uint8 RGB frames (``(H, W, 3)``, or ``(3, H, W)`` after
            ``VecTransposeImage``).
        model, device: as for ``CausalEncoderObservation``.
    """

    def __init__(self, venv: VecEnv, model: EncoderModel | str | os.PathLike,
                 device: str | torch.device | None = None) -> None:
        self.encoder = _FrameEncoder(model, venv.observation_space, device)
        super().__init__(venv, observation_space=latent_space(self.encoder.n))

    def reset(self) -> np.ndarray:
        return self.encoder(self.venv.reset())

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, dones, infos = self.venv.step_wait()
        terminal = [i for i, info in enumerate(infos) if info.get("terminal_observation") is not None]
        frames = np.asarray(obs)
        if terminal:
            frames = np.concatenate([frames, np.stack([infos[i]["terminal_observation"] for i in terminal])])
        latents = self.encoder(frames)
        num_envs = len(obs)
        for k, i in enumerate(terminal):
            infos[i] = {**infos[i], "terminal_observation": latents[num_envs + k]}
        return latents[:num_envs], rewards, dones, infos


class TrueLatentObservation(gym.ObservationWrapper):
    """Replaces the observation by the scene's true latents ``env.unwrapped.z`` ``(n,)`` float32: the
    oracle input, the ceiling for any encoder. Needs a causal scene of ``causal_wm.envs`` (or any env
    whose unwrapped env has ``n`` and a ``z`` property holding the current latents)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        scene = env.unwrapped
        if not (hasattr(scene, "n") and hasattr(scene, "z")):
            raise ValueError(f"{type(scene).__name__} exposes no true latents (.n and .z): TrueLatentObservation "
                             f"needs a causal scene of causal_wm.envs")
        self.observation_space = latent_space(int(scene.n))

    def observation(self, observation: Any) -> np.ndarray:
        """The current true latents ``(n,)`` float32 (the frame is dropped)."""
        return np.asarray(self.env.unwrapped.z, dtype=np.float32)
