"""A stable-baselines3 features extractor made of a learned causal encoder.

    from stable_baselines3 import PPO
    from causal_wm.agents import CausalFeaturesExtractor
    agent = PPO("CnnPolicy", env, policy_kwargs=dict(
        features_extractor_class=CausalFeaturesExtractor,
        features_extractor_kwargs=dict(model_path="model.pt")))      # fine_tune=True to train it too
    agent.save("agent.zip"); agent = PPO.load("agent.zip")           # rebuilds it from model_path

The extractor's kwargs are a path and a flag (JSON-able), so a saved agent rebuilds the encoder from
the model file and then loads its own copy of the weights (fine-tuned ones included) from the agent
file. SB3 hands a features extractor float ``(B, 3, H, W)`` in ``[0, 1]`` for uint8 image spaces
(``VecTransposeImage`` puts channels first, ``normalize_images=True`` divides by 255), which is the
encoder module's input; the features are the latents ``(B, n)``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from causal_wm.agents.wrappers import load_encoder_model


def _check_image_space(space: spaces.Space) -> bool:
    """True for channel-last spaces, False for channel-first; ValueError for anything but RGB images."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        raise ValueError(f"CausalFeaturesExtractor needs an RGB image observation space (3, H, W) or (H, W, 3), "
                         f"got {space}")
    if space.dtype != np.uint8 and not (np.all(space.low >= 0.0) and np.all(space.high <= 1.0)):
        raise ValueError(f"a float image observation space must lie in [0, 1] (uint8 frames are normalised by "
                         f"SB3), got bounds [{space.low.min()}, {space.high.max()}]")
    if space.shape[0] == 3:
        channel_last = False
        height, width = space.shape[1:]
    elif space.shape[-1] == 3:
        channel_last = True
        height, width = space.shape[:2]
    else:
        raise ValueError(f"CausalFeaturesExtractor needs 3 colour channels, got observation shape {space.shape}")
    if height != width:
        raise ValueError(f"CausalFeaturesExtractor needs square frames, got {height} x {width}")
    return channel_last


class CausalFeaturesExtractor(BaseFeaturesExtractor):
    """Features = the learned latents ``(B, n)`` of a saved causal encoder.

    Args:
        observation_space: an RGB image space (uint8 with SB3's default ``normalize_images=True``, or
            float in ``[0, 1]``), any square size; channel-last spaces are transposed here.
        model_path: a saved ``CausalWorldModel`` or ``ImageCRLResult``.
        fine_tune: train the encoder with the policy (default False: frozen, ``requires_grad`` False,
            no gradient graph built).

    The encoder stays in eval mode in both cases, also while SB3 switches the policy to train mode
    for every update: its normalisations are part of the learned latent scale.
    """

    def __init__(self, observation_space: spaces.Box, model_path: str, fine_tune: bool = False) -> None:
        if not isinstance(model_path, str | os.PathLike):
            raise ValueError(f"model_path must be a path (str), got {type(model_path).__name__}")
        channel_last = _check_image_space(observation_space)
        model = load_encoder_model(os.fspath(model_path), device="cpu")
        super().__init__(observation_space, features_dim=int(model.n))
        self.model_path = os.fspath(model_path)
        self.fine_tune = bool(fine_tune)
        self.channel_last = channel_last
        self.encoder = model.encoder_module()
        self.encoder.requires_grad_(self.fine_tune)
        self.encoder.eval()

    def train(self, mode: bool = True) -> CausalFeaturesExtractor:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """float ``(B, 3, H, W)`` in ``[0, 1]`` (or ``(B, H, W, 3)`` for a channel-last space) -> ``(B, n)``."""
        x = observations.permute(0, 3, 1, 2) if self.channel_last else observations
        if x.dtype == torch.uint8 or (x.numel() and float(x.max()) > 1.0 + 1e-6):
            raise ValueError("CausalFeaturesExtractor expects images in [0, 1]: keep SB3's normalize_images=True "
                             "for uint8 frames")
        if self.fine_tune:
            return self.encoder(x)
        with torch.no_grad():
            return self.encoder(x)
