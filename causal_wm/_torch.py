"""Small torch helpers shared across causal_wm (the learners, the world model, the agents): device choice, seeded
generators, smooth MLPs and a minibatch training loop with early stopping."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed`` (leaves the global torch seed alone)."""
    return torch.Generator(device=device).manual_seed(int(seed))


def smooth_mlp(in_dim: int, out_dim: int, hidden: int, depth: int, *, zero_last: bool = False,
               seed: int = 0) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with SiLU activations, then a linear output.

    SiLU rather than ReLU because the learners differentiate the network in its input: ReLU nets
    have piecewise-constant input gradients. ``zero_last`` starts the output at exactly 0 (for
    residual corrections on top of a fitted baseline). Initialised from ``seed`` without touching
    the global torch random state.
    """
    if depth < 1 or hidden < 1:
        raise ValueError(f"an MLP needs depth >= 1 and hidden >= 1, got depth={depth}, hidden={hidden}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        last = nn.Linear(width, out_dim)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        return nn.Sequential(*layers)


@dataclass
class TrainResult:
    """What a training run did: mean training and held-out loss per epoch (index 0 = before
    training; no training loss there), the epoch whose weights were kept, and epochs run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0


def train_early_stopping(module: nn.Module, step_loss: Callable[[], torch.Tensor],
                         val_loss: Callable[[], float], *, epochs: int, steps_per_epoch: int,
                         lr: float, weight_decay: float = 0.0, patience: int = 5, lr_decays: int = 0,
                         min_delta: float = 0.0) -> TrainResult:
    """Adam on ``step_loss()`` (one minibatch loss per call) for up to ``epochs`` epochs of
    ``steps_per_epoch`` steps, with ``val_loss()`` on held-out data after every epoch.

    After ``patience`` epochs without an improvement larger than ``min_delta`` the learning rate is
    halved and training resumes from the best weights so far; after ``lr_decays`` halvings (default
    0: plain early stopping) the next plateau stops training. The best weights are restored at the
    end (the initial weights count as epoch 0, so a good initialisation is kept when training only
    makes it worse). Halving instead of stopping helps the score-matching estimators: minibatch noise
    of a fixed step size dominates once the held-out loss flattens.
    """
    result = TrainResult()
    module.eval()
    best = val_loss()
    result.val_loss.append(best)
    result.train_loss.append(math.nan)
    best_state = copy.deepcopy(module.state_dict())
    params = [p for p in module.parameters() if p.requires_grad]
    if epochs <= 0 or not params:
        return result
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    bad, decays = 0, 0
    for epoch in range(1, epochs + 1):
        module.train()
        total = 0.0
        for _ in range(steps_per_epoch):
            loss = step_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        module.eval()
        v = val_loss()
        result.train_loss.append(total / steps_per_epoch)
        result.val_loss.append(v)
        result.epochs_run = epoch
        if not math.isfinite(v):
            break
        if v < best - min_delta:
            best, bad, result.best_epoch = v, 0, epoch
            best_state = copy.deepcopy(module.state_dict())
        else:
            bad += 1
            if bad >= patience:
                if decays >= lr_decays:
                    break
                decays, bad = decays + 1, 0
                module.load_state_dict(best_state)
                for group in opt.param_groups:
                    group["lr"] *= 0.5
    module.load_state_dict(best_state)
    module.eval()
    return result


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename: an interrupted write never
    leaves a truncated file under ``path``, and a failed one (disk full: ``OSError``) removes the
    temporary file. Written through a Python file object, so that a full disk raises
    ``OSError(ENOSPC)`` rather than torch's opaque ``RuntimeError`` of its own file writer."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # keep the original error
            pass
        raise
    return path


def to_jsonable(value: Any) -> Any:
    """Nested dicts, lists and tuples with numpy arrays and scalars -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@torch.no_grad()
def apply_in_chunks(module: nn.Module, values: np.ndarray, device: torch.device | str,
                    chunk: int = 65536) -> np.ndarray:
    """``module`` on ``values`` ``(N, ...)`` (float32 on ``device``, ``chunk`` rows at a time) -> float64 numpy."""
    x = torch.as_tensor(values, dtype=torch.float32, device=device)
    if len(x) == 0:
        return np.zeros((0,), dtype=np.float64)
    return torch.cat([module(c) for c in torch.split(x, chunk)]).cpu().numpy().astype(np.float64)


def check_finite(value: float, what: str) -> None:
    """``FloatingPointError`` naming ``what`` when a training loss (or weight sum) is NaN or infinite."""
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} became {value} (diverged); the model was not written. Lower the "
                                 "learning rate or check the data; the last checkpoint stays as it was")
