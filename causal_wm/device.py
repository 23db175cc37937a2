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


def machine_info(**extra: Any) -> dict[str, Any]:
    """What benchmark results record about where they ran: CPU count, platform, Python, numpy,
    torch (and its thread count), the CUDA device name (None without CUDA), the load average, the
    package version and the UTC date; ``extra`` adds or overrides entries (e.g. library versions)."""
    import datetime
    import os
    import platform

    import numpy as np

    from causal_wm import __version__

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "causal_wm": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
