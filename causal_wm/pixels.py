"""The one place where frames change layout and type.

On disk and from environments frames are uint8 ``(..., H, W, 3)`` (gymnasium's convention); inside
torch modules they are float32 ``(..., 3, H, W)`` in ``[0, 1]`` (stable-baselines3's convention), so the
same encoder module serves the learners, the world model and SB3 agents. Every conversion between
the two, and the resizing to a model's resolution, goes through these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["prepare_images", "to_chw_float", "to_hwc_uint8"]


def to_chw_float(images: Any, device: Any = None) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` (numpy or torch) -> float32 ``(..., C, H, W)`` in ``[0, 1]``.

    With ``device`` the uint8 tensor moves there first (4x fewer bytes to copy), then converts.
    """
    if isinstance(images, torch.Tensor):
        tensor = images
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dtype != torch.uint8:
        raise ValueError(f"to_chw_float takes uint8 frames (..., H, W, C), got {tensor.dtype}")
    if device is not None:
        from causal_wm.device import resolve_device

        tensor = tensor.to(resolve_device(device))
    return tensor.movedim(-1, -3).to(torch.float32).div_(255.0)


def to_hwc_uint8(pixels: torch.Tensor | np.ndarray) -> np.ndarray:
    """float ``(..., 3, H, W)`` in ``[0, 1]`` (values outside are clipped) -> uint8 numpy ``(..., H, W, 3)``."""
    x = torch.as_tensor(pixels).detach().float().cpu()
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).movedim(-3, -1).numpy()


def prepare_images(images: Any, image_size: int) -> torch.Tensor:
    """Model input from frames: uint8 ``(N, H, W, 3)`` (numpy or torch) or float ``(N, 3, H, W)`` in
    ``[0, 1]`` -> float ``(N, 3, S, S)`` in ``[0, 1]`` at the model resolution ``S`` (area downsampling
    when ``S`` divides the size, antialiased bilinear otherwise). Stays on the input's device."""
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3), got shape {tuple(x.shape)}")
        x = to_chw_float(x)
    else:
        if x.shape[1] != 3:
            raise ValueError(f"float images must be (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        x = x.float()
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"images must be square, got {tuple(x.shape[-2:])}")
    size = x.shape[-1]
    if size == image_size:
        return x
    if size % image_size == 0:
        return F.avg_pool2d(x, size // image_size)
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
