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
    ParametricReadout,
    StructuredReadout,
)
from causal_wm.crl.images.config import ImageCRLConfig
from causal_wm.crl.images.result import build_readout
from causal_wm.crl.latent_scm import MECHANISMS
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


def fit_parametric_readout(config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                           codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                           seed: int, progress: bool, *, mechanisms: list[str] | None = None,
                           start: ParametricReadout | None = None, members: int = 1,
                           epochs: int | None = None) -> tuple[ParametricReadout, dict[str, Any]]:
    """Route "parametric": train ``ParametricReadout`` (``h`` and the latent SCM together) by balanced
    cross-entropy over the regimes plus ``scm_l1`` times the mechanisms' sparsity penalty (and the
    gauge and law terms).

    With ``mechanism="auto"`` a linear and a network SCM are both trained and the network is kept only
    when its held-out per-frame cross-entropy is lower by more than three standard errors (paired over
    the held-out frames); ``mechanisms`` overrides the candidates. ``start`` (a fitted single-member
    read-out, e.g. after the end-to-end stage) replaces the discriminant start of the first member and
    is refined. With ``members > 1`` further members are trained with the chosen mechanism from other
    seeds, their standardised outputs are averaged, and one latent SCM is fitted on the average with
    the maps frozen. ``epochs`` caps the epochs of every fit (default ``readout_epochs``). Returns the
    fitted module (output standardised and oriented on observational frames) and diagnostics."""
    regimes = [0] + [r for p in pairs for r in p]
    n = len(pairs)
    pooled = np.concatenate([codes_train[r] for r in regimes])
    mean, std = pooled.mean(axis=0), np.maximum(pooled.std(axis=0), 1e-8)
    train = [torch.as_tensor(codes_train[r], dtype=torch.float32, device=device) for r in regimes]
    held = [torch.as_tensor(codes_val[r], dtype=torch.float32, device=device) for r in regimes]
    bs = config.readout_batch_size
    labels = torch.arange(len(regimes), device=device).repeat_interleave(bs)
    held_labels = torch.cat([torch.full((len(v),), m, device=device) for m, v in enumerate(held)])
    held_all = torch.cat(held)
    # balanced: every held-out frame weighs 1 / (regimes x frames of its regime)
    held_weight = torch.cat([torch.full((len(v),), 1.0 / (len(held) * len(v)), device=device) for v in held])
    steps = max(1, max(len(t) for t in train) // bs)
    if mechanisms is None:
        mechanisms = ["linear", "mlp"] if config.mechanism == "auto" else [config.mechanism]
    if start is not None and (start.mechanism != mechanisms[0] or start.num_members != 1):
        raise ValueError(f"a {start.mechanism} start with {start.num_members} members cannot begin a "
                         f"{mechanisms[0]} fit")

    def per_frame(m: ParametricReadout) -> torch.Tensor:
        with torch.no_grad():
            out = [F.cross_entropy(m.regime_logits(c), lab, reduction="none")
                   for c, lab in zip(torch.split(held_all, 8192), torch.split(held_labels, 8192), strict=True)]
        return torch.cat(out)

    def train_model(model: ParametricReadout, member_seed: int, refine: bool, what: str) -> dict[str, Any]:
        gen = torch.Generator(device=device).manual_seed(member_seed)

        def step() -> torch.Tensor:
            batch = torch.cat([t[torch.randint(len(t), (bs,), generator=gen, device=device)] for t in train])
            z = model.raw(batch)
            loss = F.cross_entropy(model.scm.logits(z), labels)
            # gauge: the loss is (nearly) invariant to affine maps of every latent; pin mean 0 and
            # variance 1 on observational frames so the L1 penalty and the learning rate see one scale
            obs = z[:bs]
            gauge = obs.mean(0).pow(2).sum() + (obs.var(0) - 1.0).pow(2).sum()
            laws = model.scm.law_mismatch(z, bs) if config.law_weight > 0 else 0.0
            return loss + config.scm_l1 * model.scm.sparsity_penalty() + 0.1 * gauge + config.law_weight * laws

        def val_loss() -> float:
            return float((per_frame(model) * held_weight).sum())

        # a warm start needs few epochs to show its worth
        fit = train_early_stopping(model, step, val_loss, epochs=epochs or config.readout_epochs, steps_per_epoch=steps,
                                   lr=1e-3 if refine else 2e-3,
                                   patience=max(3, config.classifier_patience // 4) if refine
                                   else config.classifier_patience, lr_decays=1 if refine else 2)
        check_finite(fit.val_loss[fit.best_epoch], f"the parametric read-out loss ({what})")
        return {"val_cross_entropy": fit.val_loss[fit.best_epoch], "epochs": fit.epochs_run,
                "best_epoch": fit.best_epoch}

    def new_model(mechanism: str, model_seed: int | None = None) -> ParametricReadout:
        model = build_readout(config, n, derive_seed(seed, 21) if model_seed is None else model_seed, members=1,
                              mechanism=mechanism)
        assert isinstance(model, ParametricReadout)
        return model.to(device)

    def discriminant_model(mechanism: str, member: int) -> ParametricReadout:
        model = new_model(mechanism, derive_seed(seed, 21, member))
        with torch.no_grad():
            model.inp.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            model.inp.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        _discriminant_start(model, [(codes_train[r] - mean) / std for r in regimes])
        return model

    # member 0, with the mechanism candidates
    fitted: dict[str, tuple[ParametricReadout, np.ndarray, dict[str, Any]]] = {}
    for mechanism in tqdm(mechanisms, desc="parametric read-out", disable=not progress or len(mechanisms) == 1):
        if start is not None and mechanism == start.mechanism:
            model = new_model(mechanism)
            model.load_state_dict(start.state_dict())
        else:
            # every candidate starts from the discriminant start: a network SCM started at the fitted
            # linear one stays in the linear solution's basin, where a latent whose mechanism is an
            # interaction (c = a * b: no linear trace) comes out mixed with its parents
            model = discriminant_model(mechanism, 0)
        refine = start is not None
        diag = train_model(model, derive_seed(seed, 22, MECHANISMS.index(mechanism)), refine, f"{mechanism} mechanisms")
        fitted[mechanism] = (model, per_frame(model).double().cpu().numpy(), diag)
    chosen = mechanisms[0]
    selection: dict[str, Any] = {}
    if set(fitted) == {"linear", "mlp"}:
        w = held_weight.double().cpu().numpy()
        diff = (fitted["linear"][1] - fitted["mlp"][1])
        gain = float(np.sum(w * diff))
        se = float(np.sqrt(np.sum(w**2 * (diff - gain) ** 2)))
        chosen = "mlp" if gain > 3.0 * se else "linear"
        selection = {"cross_entropy_gain_of_mlp": gain, "standard_error": se}
    model = fitted[chosen][0]
    _standardize_output(model, codes_train[0], device)
    diagnostics: dict[str, Any] = {"mechanism": chosen, "candidates": {m: v[2] for m, v in fitted.items()},
                                   **selection, "val_cross_entropy": fitted[chosen][2]["val_cross_entropy"]}
    if members > 1:
        trained = [model]
        member_diag = [fitted[chosen][2]]
        for i in tqdm(range(1, members), desc="read-out members", disable=not progress):
            extra = discriminant_model(chosen, i)
            member_diag.append(train_model(extra, derive_seed(seed, 23, i), False, f"member {i}"))
            _standardize_output(extra, codes_train[0], device)
            trained.append(extra)
        model = _average_members(trained, config, device)
        ensemble = _fit_scm_only(model, train, bs, config, device, derive_seed(seed, 24), per_frame, held_weight)
        _standardize_output(model, codes_train[0], device, orient=False)
        diagnostics.update({"members": member_diag, "ensemble": ensemble,
                            "val_cross_entropy": ensemble["val_cross_entropy"]})
    model.eval().requires_grad_(False)
    return model, diagnostics


def _standardize_output(model: ParametricReadout, codes_obs: np.ndarray, device: torch.device,
                        orient: bool = True) -> None:
    """Set the output standardisation on observational codes; with ``orient`` latent ``k`` increases
    from the first regime of its pair towards the second (by the laws' means)."""
    model.eval()
    _set_standardization(model.out, apply_in_chunks(model.raw, codes_obs, device))
    if orient:
        mu = model.scm.mu.detach().cpu().numpy()
        k = np.arange(model.n)
        with torch.no_grad():
            model.out.std.mul_(torch.as_tensor(np.where(mu[2 * k + 1, k] < mu[2 * k, k], -1.0, 1.0),
                                               dtype=torch.float32, device=model.out.std.device))


@torch.no_grad()
def _average_members(trained: list[ParametricReadout], config: ImageCRLConfig, device: torch.device
                     ) -> ParametricReadout:
    """One read-out whose map is the mean of the members' standardised, oriented outputs; its latent
    SCM starts at the first member's, rewritten in that member's standardised coordinates."""
    from causal_wm.crl.latent_scm import export_parameters, load_parameters

    first = trained[0]
    n = first.n
    model = build_readout(config, n, 0, members=len(trained), mechanism=first.mechanism).to(device)
    assert isinstance(model, ParametricReadout)
    model.inp.load_state_dict(first.inp.state_dict())
    for i, member in enumerate(trained):
        # every member shares the first one's input standardisation (they were fitted on the same codes)
        model.members[i].load_state_dict(member.members[0].state_dict())
        model.member_center[i] = member.member_center[0] + member.member_scale[0] * member.out.mean
        model.member_scale[i] = member.member_scale[0] * member.out.std
    load_parameters(model.scm, export_parameters(first.scm, list(range(2 * n)), first.out.mean.cpu().numpy(),
                                                 first.out.std.cpu().numpy()))
    return model


def _fit_scm_only(model: ParametricReadout, train: list[torch.Tensor], bs: int, config: ImageCRLConfig,
                  device: torch.device, seed: int, per_frame: Any, held_weight: torch.Tensor) -> dict[str, Any]:
    """Fit only the latent SCM of ``model`` (its map frozen) on the latents of every training code."""
    with torch.no_grad():
        z_train = [torch.as_tensor(apply_in_chunks(model.raw, t, device), dtype=torch.float32, device=device)
                   for t in train]
    labels = torch.arange(len(train), device=device).repeat_interleave(bs)
    gen = torch.Generator(device=device).manual_seed(seed)
    scm = model.scm

    def step() -> torch.Tensor:
        z = torch.cat([t[torch.randint(len(t), (bs,), generator=gen, device=device)] for t in z_train])
        laws = scm.law_mismatch(z, bs) if config.law_weight > 0 else 0.0
        return (F.cross_entropy(scm.logits(z), labels) + config.scm_l1 * scm.sparsity_penalty()
                + config.law_weight * laws)

    def val_loss() -> float:
        return float((per_frame(model) * held_weight).sum())

    for p in model.parameters():
        p.requires_grad_(False)
    for p in scm.parameters():
        p.requires_grad_(True)
    fit = train_early_stopping(scm, step, val_loss, epochs=config.readout_epochs,
                               steps_per_epoch=max(1, max(len(t) for t in train) // bs), lr=3e-3,
                               patience=max(3, config.classifier_patience // 4), lr_decays=1)
    check_finite(fit.val_loss[fit.best_epoch], "the latent SCM of the averaged read-out")
    return {"val_cross_entropy": fit.val_loss[fit.best_epoch], "epochs": fit.epochs_run, "best_epoch": fit.best_epoch}


@torch.no_grad()
def _discriminant_start(model: ParametricReadout, codes: list[np.ndarray]) -> None:
    """Start latent ``k`` at the linear discriminant of pair ``k`` in the standardised code
    (``Sigma^-1 (mean_second - mean_first)``, the log ratio of two Gaussians with a shared covariance),
    scaled to observational mean 0 and variance 1, and every intervention law at the regime's mean and
    std along it: a start that already separates every pair with its own latent, so the fit refines
    it instead of searching over which latent serves which pair."""
    n = model.n
    obs = codes[0]
    directions = np.zeros((n, obs.shape[1]))
    for k in range(n):
        a, b = codes[1 + 2 * k], codes[2 + 2 * k]
        shared = 0.5 * (np.cov(a, rowvar=False) + np.cov(b, rowvar=False)) + 1e-6 * np.eye(obs.shape[1])
        w = np.linalg.solve(shared, b.mean(axis=0) - a.mean(axis=0))
        directions[k] = w / max(float(np.std(obs @ w)), 1e-12)
    offset = -(obs @ directions.T).mean(axis=0)
    for member in model.members:
        member.linear.weight.copy_(torch.as_tensor(directions, dtype=torch.float32))
        member.linear.bias.copy_(torch.as_tensor(offset, dtype=torch.float32))
    for m in range(2 * n):
        z = codes[1 + m] @ directions.T + offset
        k = m // 2
        model.scm.mu[m, k] = float(z[:, k].mean())
        model.scm.log_tau[m, k] = float(np.log(max(z[:, k].std(), 1e-3)))


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
