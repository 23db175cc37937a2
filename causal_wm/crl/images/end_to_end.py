"""The end-to-end stage of the parametric route: the CNN encoder, the read-out ``h`` with its latent
SCM, the latent decoder and the image decoder are fine-tuned together on frames, by the regime
cross-entropy of the latent SCM's logits plus the reconstruction of the frames through the
``n``-dimensional latent (``frames -> y -> z -> y' -> frames``), early-stopped on the held-out regime
cross-entropy. The first stages froze the code ``y`` of a reconstruction-only autoencoder; here
the encoder can sharpen exactly the features the causal variables need, and the decoder learns to
draw from ``z`` alone (``decode(encode(x))`` gets as sharp as the autoencoder)."""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from causal_wm._random import derive_seed
from causal_wm._torch import check_finite
from causal_wm.crl.image_models import ConvAutoencoder, LatentDecoder, ParametricReadout
from causal_wm.crl.images.config import ImageCRLConfig
from causal_wm.crl.images.frames import _Batches


def train_end_to_end(ae: ConvAutoencoder, readout: ParametricReadout, latent_decoder: LatentDecoder,
                     batches: _Batches, train_pos: list[np.ndarray], val_pos: list[np.ndarray],
                     config: ImageCRLConfig, device: torch.device, seed: int, progress: bool) -> dict[str, Any]:
    """Fine-tune all modules in place; ``train_pos[m]`` / ``val_pos[m]`` are positions in ``batches`` of
    the frames of classifier regime ``m`` (0 observational, then the pairs' regimes in order).

    Every step draws ``e2e_batch_per_regime`` frames of every regime (balanced classes). Loss:
    cross-entropy of ``readout.scm.logits`` + ``e2e_recon_weight`` x pixel binary cross-entropy of the
    reconstruction through ``z`` + the read-out's L1 and gauge terms. After every epoch the held-out
    regime cross-entropy decides: the best epoch's weights are kept, and ``classifier_patience // 2``
    (at least 2) epochs without improvement stop the stage. Returns the learning curve."""
    modules = torch.nn.ModuleList([ae, readout, latent_decoder])
    for m in modules:
        m.requires_grad_(True)
    # the standardisation buffers stay fixed; everything else trains
    params = [p for p in modules.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.e2e_lr)
    bs = config.e2e_batch_per_regime
    labels = torch.arange(len(train_pos), device=device).repeat_interleave(bs)
    rng = np.random.default_rng(derive_seed(seed, 31))
    steps = max(1, max(len(p) for p in train_pos) // bs)

    def autocast() -> Any:
        # bfloat16 for the convolutions on CUDA; the latent SCM's log densities stay in float32
        if config.amp and device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with autocast():
            y = ae.encoder(x)
        raw = readout.raw(y.float())
        logits = readout.scm.logits(raw)
        code = latent_decoder(readout.out(raw))
        with autocast():
            recon = ae.decoder(code)
        return raw, logits, recon

    @torch.no_grad()
    def held_out() -> float:
        modules.eval()
        total = 0.0
        for m, pos in enumerate(val_pos):
            ce = 0.0
            for s in range(0, len(pos), 512):
                x = batches.get(pos[s: s + 512])
                logits = readout.scm.logits(readout.raw(ae.encoder(x)))
                ce += float(F.cross_entropy(logits, torch.full((len(x),), m, device=device), reduction="sum"))
            total += ce / len(pos)
        return total / len(val_pos)

    best = held_out()
    history: list[dict[str, float]] = [{"epoch": 0, "val_cross_entropy": best}]
    best_state = copy.deepcopy(modules.state_dict())
    patience = max(2, config.classifier_patience // 2)
    bad = 0
    bar = tqdm(range(1, config.e2e_epochs + 1), desc="end to end", disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        modules.train()
        totals = np.zeros(2)
        for _ in range(steps):
            idx = np.concatenate([p[rng.integers(0, len(p), bs)] for p in train_pos])
            x = batches.get(idx)
            raw, logits, recon = forward(x)
            ce = F.cross_entropy(logits, labels)
            rec = F.binary_cross_entropy_with_logits(recon.float(), x)
            obs = raw[:bs]
            gauge = obs.mean(0).pow(2).sum() + (obs.var(0) - 1.0).pow(2).sum()
            laws = readout.scm.law_mismatch(raw, bs) if config.law_weight > 0 else 0.0
            loss = (ce + config.e2e_recon_weight * rec + config.scm_l1 * readout.scm.sparsity_penalty() + 0.1 * gauge
                    + config.law_weight * laws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            totals += [float(ce.detach()), float(rec.detach())]
        check_finite(float(totals.sum()), f"the end-to-end loss (epoch {epoch})")
        val = held_out()
        history.append({"epoch": epoch, "train_cross_entropy": totals[0] / steps, "train_recon_bce": totals[1] / steps,
                        "val_cross_entropy": val, "seconds": time.perf_counter() - started})
        bar.set_postfix(ce=f"{totals[0] / steps:.4f}", val_ce=f"{val:.4f}")
        if val < best:
            best, bad = val, 0
            best_state = copy.deepcopy(modules.state_dict())
        else:
            bad += 1
            if bad >= patience:
                break
    modules.load_state_dict(best_state)
    for m in modules:
        m.eval().requires_grad_(False)
    return {"history": history, "best_val_cross_entropy": best}
