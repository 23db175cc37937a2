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

__all__ = [
    "check_frames",
    "check_latents",
    "frame_statistics",
    "frames_differ",
    "prepare_images",
    "to_chw_float",
    "to_hwc_uint8",
    "to_unit_float",
]


def to_chw_float(images: Any, device: Any = None) -> torch.Tensor:
    """uint8 ``(..., H, W, C)`` (numpy or torch) -> float32 ``(..., C, H, W)`` in ``[0, 1]``.

    With ``device`` the uint8 tensor moves there first (4x fewer bytes to copy), then converts.
    """
    return to_unit_float(images, device).movedim(-1, -3)


def to_unit_float(images: Any, device: Any = None) -> torch.Tensor:
    """uint8 frames of any layout (numpy or torch) -> float32 in ``[0, 1]``, same layout; with ``device``
    the uint8 tensor moves there first."""
    tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {tensor.dtype}")
    if device is not None:
        from causal_wm.device import resolve_device

        tensor = tensor.to(resolve_device(device))
    return tensor.to(torch.float32).div_(255.0)


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


def check_frames(images: Any) -> None:
    """``ValueError`` unless ``images`` are uint8 ``(N, H, W, 3)`` or finite floats ``(N, 3, H, W)`` in
    ``[0, 1]`` (float frames in ``[0, 255]`` would encode to latents off by orders of magnitude)."""
    try:
        x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"images must be an array of frames, got {type(images).__name__} ({err})") from None
    if x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8 or x.numel() == 0:
        return
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        hint = " (they look like 0..255: pass uint8 frames or divide by 255)" if hi > 1.5 else ""
        raise ValueError(f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")


def check_latents(z: Any, n: int) -> np.ndarray:
    """Latents as float ``(N, n)``; ``ValueError`` for another shape or NaN / infinite values."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != n:
        raise ValueError(f"latents must have shape (N, {n}), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("latents contain NaN or infinite values")
    return z


def frame_statistics(frames: np.ndarray) -> dict[str, Any]:
    """What a model remembers of its training frames uint8 ``(N, H, W, 3)``: the frame shape, the mean
    of every channel in ``[0, 1]`` and the spread of per-frame channel means (for ``frames_differ``)."""
    x = np.asarray(frames, dtype=np.float64) / 255.0
    per_frame = x.mean(axis=(1, 2))  # (N, 3)
    return {"shape": list(frames.shape[1:]), "channel_mean": per_frame.mean(axis=0).tolist(),
            "frame_mean_std": per_frame.std(axis=0).tolist()}


def frames_differ(frames: Any, stats: dict[str, Any]) -> str | None:
    """Why uint8 ``frames`` ``(N, H, W, 3)`` do not look like the training frames described by ``stats``
    (another frame size, or channel means far outside the training spread), or None."""
    x = np.asarray(frames)
    if x.dtype != np.uint8 or x.ndim != 4 or not len(x):
        return None
    if list(x.shape[1:]) != list(stats["shape"]):
        return f"frames are {tuple(x.shape[1:])}, the model was fitted on {tuple(stats['shape'])} frames"
    sample = x[:: max(1, len(x) // 256)]
    mean = sample.astype(np.float64).mean(axis=(0, 1, 2)) / 255.0
    ref, spread = np.asarray(stats["channel_mean"]), np.asarray(stats["frame_mean_std"])
    tolerance = 6.0 * spread / np.sqrt(len(sample)) + 0.5 * spread + 0.03
    if np.any(np.abs(mean - ref) > tolerance):
        return (f"their mean colour {np.round(mean, 3).tolist()} is far from the training frames' "
                f"{np.round(ref, 3).tolist()} (another scene?)")
    return None
