"""Stage 2 of the image pipeline: the read-outs ``y -> z_hat`` from the stage-1 codes (one log-ratio
classifier per pair, one multinomial classifier over all regimes, or the structured read-out) and
their held-out pair accuracy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from causal_wm._random import derive_seed
from causal_wm._torch import apply_in_chunks, check_finite, train_early_stopping
from causal_wm.crl.image_models import (
    MultinomialReadout,
    PairReadout,
    StructuredReadout,
)
from causal_wm.crl.images.config import ImageCRLConfig
from causal_wm.crl.scores import ClassifierScores


# --- stage 2: read-outs ------------------------------------------------------------------------------
def _fit_readout(readout: nn.Module, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                 codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                 seed: int, progress: bool) -> dict[str, Any]:
    if isinstance(readout, PairReadout):
        return _fit_pair_readout(readout, config, codes_train, pairs, device, seed, progress)
    if isinstance(readout, MultinomialReadout):
        return _fit_multinomial_readout(readout, config, codes_train, codes_val, pairs, device, seed)
    assert isinstance(readout, StructuredReadout)
    return _fit_structured_readout(readout, config, codes_train, codes_val, pairs, device, seed, progress)


def _fit_pair_readout(readout: PairReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                      pairs: list[tuple[int, int]], device: torch.device, seed: int, progress: bool) -> dict[str, Any]:
    """One balanced classifier per pair on the codes; latent ``k`` = logit of ``log p^second / p^first``."""
    regimes = [0] + [r for p in pairs for r in p]
    index = {r: i for i, r in enumerate(regimes)}
    estimator = ClassifierScores(pairs=[(index[b], index[a]) for a, b in pairs], hidden=config.classifier_hidden,
                                 depth=config.classifier_depth, epochs=config.classifier_epochs,
                                 batch_size=config.classifier_batch_size, patience=config.classifier_patience,
                                 seed=seed, device=str(device), progress=progress)
    estimator.fit([codes_train[r] for r in regimes])
    support = estimator.support
    with torch.no_grad():
        readout.center.copy_(torch.as_tensor(support.center, dtype=torch.float32))
        readout.whitening.copy_(torch.as_tensor(support.basis / estimator.scale[None, :], dtype=torch.float32))
        for k, (a, b) in enumerate(pairs):
            readout.heads[k].load_state_dict(estimator.networks[(index[b], index[a])].state_dict())
        raw = apply_in_chunks(readout.log_ratios, codes_train[0], device)
        _set_standardization(readout.out, raw)
    return {"classifier_epochs": [estimator.train_results[(index[b], index[a])].epochs_run for a, b in pairs]}


def _fit_multinomial_readout(readout: MultinomialReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                             codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                             seed: int) -> dict[str, Any]:
    """One balanced multinomial classifier over the regimes (observational, then the pairs in order)."""
    regimes = [0] + [r for p in pairs for r in p]
    pooled = np.concatenate([codes_train[r] for r in regimes])
    with torch.no_grad():
        readout.inp.mean.copy_(torch.as_tensor(pooled.mean(axis=0), dtype=torch.float32))
        readout.inp.std.copy_(torch.as_tensor(np.maximum(pooled.std(axis=0), 1e-8), dtype=torch.float32))
    train = [torch.as_tensor(codes_train[r], dtype=torch.float32, device=device) for r in regimes]
    held = [torch.as_tensor(codes_val[r], dtype=torch.float32, device=device) for r in regimes]
    bs = max(1, config.classifier_batch_size // 4)
    labels = torch.arange(len(regimes), device=device).repeat_interleave(bs)
    gen = torch.Generator(device=device).manual_seed(derive_seed(seed, 11))

    def step() -> torch.Tensor:
        batch = torch.cat([t[torch.randint(len(t), (bs,), generator=gen, device=device)] for t in train])
        return F.cross_entropy(readout.regime_logits(batch), labels)

    def val_loss() -> float:
        # mean of the per-regime losses: balanced classes whatever the held-out sizes
        with torch.no_grad():
            return float(sum(F.cross_entropy(readout.regime_logits(v), torch.full((len(v),), m, device=device))
                             for m, v in enumerate(held)) / len(held))

    steps = max(1, max(len(t) for t in train) // bs)
    fit = train_early_stopping(readout, step, val_loss, epochs=config.classifier_epochs, steps_per_epoch=steps,
                               lr=2e-3, patience=config.classifier_patience)
    check_finite(fit.val_loss[fit.best_epoch], "the multinomial read-out loss")
    readout.eval()
    _set_standardization(readout.out, apply_in_chunks(readout.log_ratios, codes_train[0], device))
    return {"val_cross_entropy": fit.val_loss[fit.best_epoch], "epochs": fit.epochs_run,
            "best_epoch": fit.best_epoch}


def _set_standardization(out: nn.Module, raw: np.ndarray) -> None:
    std = raw.std(axis=0)
    if np.any(~np.isfinite(raw)) or np.any(std <= 0):
        raise FloatingPointError("a learned latent is constant or not finite on the observational frames; "
                                 "the read-out failed (check the pair classifiers' accuracy)")
    with torch.no_grad():
        out.mean.copy_(torch.as_tensor(raw.mean(axis=0), dtype=torch.float32))
        out.std.copy_(torch.as_tensor(std, dtype=torch.float32))


def _fit_structured_readout(readout: StructuredReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                            codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                            seed: int, progress: bool) -> dict[str, Any]:
    """Shared MLP ``y -> z`` with 1-d heads per pair plus code reconstruction; best of the restarts."""
    pooled = np.concatenate(list(codes_train.values()))
    mean, std = pooled.mean(axis=0), np.maximum(pooled.std(axis=0), 1e-8)
    tensor = {r: torch.as_tensor(c, dtype=torch.float32, device=device) for r, c in codes_train.items()}
    held = {r: torch.as_tensor(c, dtype=torch.float32, device=device) for r, c in codes_val.items()}
    bs = config.classifier_batch_size
    n = len(pairs)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    losses = []
    for restart in tqdm(range(config.structured_restarts), desc="structured read-out", disable=not progress):
        candidate = StructuredReadout(readout.inp.mean.numel(), n, config.classifier_hidden, config.classifier_depth,
                                      derive_seed(seed, 101, restart)).to(device)
        with torch.no_grad():
            candidate.inp.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            candidate.inp.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, 102, restart))

        def losses_of(source: dict[int, torch.Tensor], sample: bool, m: StructuredReadout = candidate,
                      g: torch.Generator = gen) -> tuple[torch.Tensor, torch.Tensor]:
            def pick(r: int) -> torch.Tensor:
                c = source[r]
                if not sample:
                    return c
                return c[torch.randint(len(c), (min(bs, len(c)),), generator=g, device=device)]

            classify = torch.zeros((), device=device)
            recon = torch.zeros((), device=device)
            for k, (a, b) in enumerate(pairs):
                ya, yb = pick(a), pick(b)
                za, zb = m.raw(ya), m.raw(yb)
                # label 1 for the second regime: logit ~ log p^second / p^first
                classify = classify + 0.5 * (F.softplus(m.logits(za)[:, k]).mean()
                                             + F.softplus(-m.logits(zb)[:, k]).mean())
                recon = recon + F.mse_loss(m.reconstruct(za), m.inp(ya)) + F.mse_loss(m.reconstruct(zb), m.inp(yb))
            y0 = pick(0)
            recon = recon + F.mse_loss(m.reconstruct(m.raw(y0)), m.inp(y0))
            return classify / n, recon / (2 * n + 1)

        def step() -> torch.Tensor:
            c, r = losses_of(tensor, True)
            return c + config.structured_recon_weight * r

        def val_loss() -> float:
            with torch.no_grad():
                c, r = losses_of(held, False)
                return float(c + config.structured_recon_weight * r)

        steps = max(1, -(-max(len(c) for c in codes_train.values()) // bs))
        train_early_stopping(candidate, step, val_loss, epochs=config.structured_epochs, steps_per_epoch=steps,
                             lr=2e-3, patience=config.classifier_patience * 2)
        with torch.no_grad():
            c_val, _ = losses_of(held, False)
        score = float(c_val)
        losses.append(score)
        if math.isfinite(score) and (best is None or score < best[0]):
            best = (score, {k: v.detach().clone() for k, v in candidate.state_dict().items()})
    if best is None:
        raise FloatingPointError("every restart of the structured read-out diverged (NaN loss)")
    readout.load_state_dict(best[1])
    readout.eval()
    with torch.no_grad():
        raw = apply_in_chunks(readout.raw, codes_train[0], device)
        # orient every latent so that it increases with its pair's logit
        logit = apply_in_chunks(readout.log_ratios, codes_train[0], device)
        sign = np.sign([np.corrcoef(raw[:, k], logit[:, k])[0, 1] for k in range(n)])
        _set_standardization(readout.out, raw)
        readout.out.std.mul_(torch.as_tensor(np.where(sign == 0, 1.0, sign), dtype=torch.float32))
    return {"restart_val_classifier_loss": losses, "chosen_restart": int(np.nanargmin(losses))}


@torch.no_grad()
def _pair_accuracy(readout: nn.Module, codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]],
                   device: torch.device) -> list[float]:
    """Held-out balanced accuracy of every pair classifier (its logit's sign)."""

    def logits(y: np.ndarray) -> np.ndarray:
        return apply_in_chunks(readout.log_ratios, y, device)

    out = []
    for k, (a, b) in enumerate(pairs):
        out.append(float(0.5 * ((logits(codes_val[a])[:, k] < 0).mean() + (logits(codes_val[b])[:, k] > 0).mean())))
    return out
