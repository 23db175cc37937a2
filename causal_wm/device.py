"""Device choice shared by every torch entry point of causal_wm."""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: Any = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device(device)``.

    Raises ``ValueError`` for a CUDA device on a machine without CUDA (instead of a late crash).
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for CUDA but CUDA is not available")
    return dev
