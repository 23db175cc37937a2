"""Frames of every regime, from an HDF5 collection or from memory, and model-ready minibatches of
selected rows (cached on the device when they fit, streamed per batch otherwise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from causal_wm.pixels import prepare_images


# --- frames ---------------------------------------------------------------------------------------
class _Frames:
    """Frames of every regime, read by row number from a ``Dataset`` (HDF5) or from memory.

    ``regime`` is ``(N,)``; ``read(rows)`` returns uint8 ``(m, H, W, 3)``.
    """

    def __init__(self, data: Any, menu: Sequence[Any] | None) -> None:
        from causal_wm.data import Dataset

        if isinstance(data, Dataset):
            self.dataset: Dataset | None = data
            self.memory: np.ndarray | None = None
            self.regime = np.asarray(data.regime, dtype=np.int64)
            shape = tuple(data.obs_shape)
            self.menu = data.menu if menu is None else list(menu)
            self.latent_source = data if data.has_latents else None
        else:
            arrays = self._arrays(data)
            self.dataset = None
            self.memory = np.concatenate([a for _, a in arrays])
            self.regime = np.concatenate([np.full(len(a), r, dtype=np.int64) for r, a in arrays])
            shape = self.memory.shape[1:]
            self.menu = None if menu is None else list(menu)
            self.latent_source = None
        if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1]:
            raise ValueError(f"frames must be square RGB images (H, W, 3), got frame shape {shape}")
        self.size = int(shape[0])
        self.frame_bytes = int(np.prod(shape))

    @staticmethod
    def _arrays(data: Any) -> list[tuple[int, np.ndarray]]:
        if isinstance(data, Mapping):
            items = sorted((int(r), a) for r, a in data.items())
        elif isinstance(data, Sequence) and not isinstance(data, str | np.ndarray):
            items = list(enumerate(data))
        else:
            raise ValueError("data must be a causal_wm.data.Dataset, a mapping regime -> uint8 frames "
                             "(N, H, W, 3), or a list of such arrays indexed by regime")
        out = []
        shapes = set()
        for r, a in items:
            a = np.asarray(a)
            if a.dtype != np.uint8 or a.ndim != 4:
                raise ValueError(f"frames of regime {r} must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
            shapes.add(a.shape[1:])
            out.append((r, a))
        if len(shapes) > 1:
            raise ValueError(f"all regimes need frames of one shape, got {sorted(shapes)}")
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self.memory is not None:
            return self.memory[rows]
        assert self.dataset is not None
        return self.dataset.observations(rows)

    def latents(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.latent_source is None else self.latent_source.latents(rows)


class _Batches:
    """Model-ready minibatches (float ``(B, 3, S, S)`` in ``[0, 1]`` on the device) of selected rows.

    Selected frames that fit ``cache_bytes`` are read once, chunk by chunk, into a uint8 tensor on the
    device; otherwise every batch is read from the source (sorted rows: fast slab reads in HDF5).
    """

    def __init__(self, frames: _Frames, rows: np.ndarray, image_size: int, device: torch.device,
                 cache_bytes: int, progress: bool) -> None:
        self.frames, self.rows, self.image_size, self.device = frames, np.asarray(rows), image_size, device
        self.position = {int(r): i for i, r in enumerate(self.rows)}
        self.cache: torch.Tensor | None = None
        if len(self.rows) * frames.frame_bytes <= cache_bytes:
            order = np.argsort(self.rows)
            cache = torch.empty((len(self.rows), frames.size, frames.size, 3), dtype=torch.uint8, device=device)
            for s in tqdm(range(0, len(order), 4096), desc="reading frames", disable=not progress, leave=False):
                chunk = order[s: s + 4096]
                cache[torch.as_tensor(chunk, device=device)] = torch.as_tensor(frames.read(self.rows[chunk]),
                                                                              device=device)
            self.cache = cache

    def get(self, positions: np.ndarray) -> torch.Tensor:
        """Frames at ``positions`` (indices into ``rows``) as model input."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.cache is not None:
            raw = self.cache[torch.as_tensor(positions, device=self.device)]
        else:
            order = np.argsort(self.rows[positions])
            raw = torch.as_tensor(self.frames.read(self.rows[positions][order]), device=self.device)
            raw = raw[torch.as_tensor(np.argsort(order), device=self.device)]
        return prepare_images(raw, self.image_size)
