"""Torch helpers of the dataset, imported lazily so that reading a collection needs no torch."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

from causal_wm.pixels import to_chw_float


@cache
def regime_image_dataset_class() -> type:
    """The ``torch.utils.data.Dataset`` class behind ``Dataset.torch_dataset`` (built on first use)."""

    class RegimeImageDataset(torch.utils.data.Dataset):
        """Rows ``rows`` of a collection as dicts ``{"obs", "regime", "index"[, "z"]}``."""

        def __init__(self, dataset: Any, rows: np.ndarray, latents: bool) -> None:
            self.dataset = dataset
            self.rows = np.asarray(rows, dtype=np.int64)
            self.latents = latents

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            row = int(self.rows[i])
            item = {"obs": to_chw_float(self.dataset.observations(row)),
                    "regime": torch.tensor(int(self.dataset.regime[row])),
                    "index": torch.tensor(row)}
            if self.latents:
                item["z"] = torch.as_tensor(self.dataset.latents(row), dtype=torch.float32)
            return item

    return RegimeImageDataset
