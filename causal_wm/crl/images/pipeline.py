"""``fit_image_crl``: the four stages of the image pipeline (autoencoder, read-out, graph, decoder),
each cached in the checkpoint folder so that a rerun with the same data and settings resumes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from causal_wm._random import derive_seed
from causal_wm._torch import apply_in_chunks, check_finite, save_atomic, smooth_mlp, to_jsonable, train_early_stopping
from causal_wm.config import apply_overrides
from causal_wm.crl.dag import closest_dag, gap_threshold
from causal_wm.crl.image_models import (
    ConvAutoencoder,
    LatentDecoder,
    ParametricReadout,
)
from causal_wm.crl.images.config import ImageCRLConfig, make_config
from causal_wm.crl.images.frames import _Batches, _Frames
from causal_wm.crl.images.readouts import _fit_readout, _pair_accuracy, fit_parametric_readout
from causal_wm.crl.images.result import ImageCRLResult, _build_modules, build_readout
from causal_wm.crl.pairing import _field, bayes_accuracy, pairs_from_menu
from causal_wm.crl.scores import ClassifierScores
from causal_wm.device import resolve_device
from causal_wm.pixels import frame_statistics, prepare_images

# --- checkpoints ------------------------------------------------------------------------------------

def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        raise ValueError(f"checkpoint {path} was written for other data or settings; use another "
                         "checkpoint_dir or delete it")
    return state


class UnusedFramesWarning(UserWarning):
    """Frames of regimes that the image pipeline does not train on (not observational, not in a pair)."""


def _cached_stage(folder: Path | None, name: str, fingerprint: str, key: str, seconds: dict[str, float],
                  fit: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One stage, run once per data and settings: with a checkpoint folder, the state a finished run of
    the stage saved (``folder / name_<fingerprint>.pt``) is read back instead of fitting again.

    ``fit()`` trains the stage and returns what restores it (plain tensors and strings); the caller
    restores from the returned dict either way. ``seconds[key]`` is the stage's training time as
    recorded when it ran (also after a resume)."""
    path = None if folder is None else folder / f"{name}_{fingerprint[:12]}.pt"
    t0 = time.perf_counter()
    state = _load_checkpoint(path, fingerprint)
    if state is not None:
        seconds[key] = float(state.get("seconds", time.perf_counter() - t0))
        return state
    state = fit()
    seconds[key] = time.perf_counter() - t0
    if path is not None:
        save_atomic({"fingerprint": fingerprint, "seconds": seconds[key], **state}, path)
    return state


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()




# --- the pipeline -------------------------------------------------------------------------------------
def fit_image_crl(data: Any, *, preset: str = "cpu", config: ImageCRLConfig | None = None,
                  device: str | torch.device = "auto", seed: int = 0,
                  checkpoint_dir: str | os.PathLike | None = None, progress: bool = True,
                  menu: Sequence[Any] | None = None, pairs: Sequence[tuple[int, int]] | str | None = None,
                  callback: Callable[[dict[str, Any]], None] | None = None, **overrides: Any) -> ImageCRLResult:
    """Learn latent causal variables, their DAG and a decoder from images with regime labels.

    Args:
        data: a ``causal_wm.data.Dataset`` (frames are read on demand; see ``cache_bytes``), or
            in-memory frames: a mapping ``regime -> uint8 (N, H, W, 3)`` or a list indexed by regime.
            Regime 0 is observational.
        preset: ``"debug"`` (seconds), ``"cpu"`` (minutes on a CPU), ``"full"`` (published size, GPU);
            see ``PRESETS``.
        config: an ``ImageCRLConfig`` to use instead of the preset (``overrides`` still apply); the
            resolved settings are in ``result.config``.
        device: torch device; ``"auto"`` picks CUDA when available (then bfloat16 autocast for the
            autoencoder, see ``amp``).
        seed: seeds initialisation, subsampling, splits and minibatches (same seed, same result on
            one device).
        checkpoint_dir: where stage checkpoints go; a run with the same data, settings and seed
            resumes from them (the autoencoder from its last finished epoch). The autoencoder
            checkpoint is shared by both routes and refuses other data or stage-1 settings
            (``ValueError``); the later stages are keyed by all settings.
        progress: tqdm progress bars.
        menu: the intervention menu (``menu[k]`` of regime ``k``, ``menu[0]`` None); default: the
            dataset's. Used to pair regimes (``pairs_from_menu``), for the Bayes accuracy of every
            pair and for ``env_targets``.
        pairs: ``[(first, second)]`` regimes of the two hard interventions on each node, when there is
            no menu or to override it; latent ``k`` is pair ``k``. ``"find"``: the pairing is unknown and
            found from the data (``causal_wm.crl.gscale.find_pairs`` on the stage-1 codes); then every
            interventional regime present must be one of two hard interventions on its node.
        callback: called with a dict after every autoencoder epoch (``stage``, ``epoch``,
            ``train_loss``: mean pixel cross-entropy, ``val_mse``: held-out pixel MSE); it may raise to
            stop a run (the epoch's checkpoint is already written).
        overrides: any ``ImageCRLConfig`` field.

    Returns:
        ``ImageCRLResult``. ``diagnostics`` holds ``reconstruction_mse`` (held-out pixel MSE of the
        autoencoder at the model resolution) and ``reconstruction_mse_mean_frame`` (MSE of the mean
        frame, for scale), ``pair_accuracy`` and ``bayes_accuracy`` (held-out balanced accuracy of
        every pair classifier and that of the design), ``graph_strength`` ``M`` and the threshold
        used, ``decoder_mse`` (held-out ``decode(encode(x))`` MSE), the autoencoder learning curve
        and ``seconds`` per stage (as recorded when the stage ran, also after a resume; ``total`` is
        this call's wall time).

    Raises:
        ValueError: bad data or settings, missing pairs, a checkpoint of another run.
        FloatingPointError: a loss diverged (NaN or infinite); nothing broken is written.
    """
    started = time.perf_counter()
    config = make_config(preset, **overrides) if config is None else apply_overrides(config, overrides)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    dev = resolve_device(device)
    frames = _Frames(data, menu)
    if config.image_size is None:
        config.image_size = frames.size
    if config.image_size > frames.size:
        raise ValueError(f"image_size {config.image_size} exceeds the frames' size {frames.size}")
    config.validate()

    present = set(np.unique(frames.regime).tolist())
    if 0 not in present:
        raise ValueError("the data have no observational frames (regime 0)")
    pairs_source = "given"
    if pairs is None and frames.menu is None:
        # a user's env without a menu: the pairing is found from the data (its confidence in diagnostics)
        pairs, pairs_source = "find", "found (no intervention menu)"
    elif pairs is None:
        pairs_source = "menu"
    find = isinstance(pairs, str)
    if find:
        pairs_source = "found" if pairs_source == "given" else pairs_source
        if pairs != "find":
            raise ValueError(f"pairs must be None, 'find' or a list of regime pairs, got {pairs!r}")
        interventional = sorted(r for r in present if r != 0)
        if len(interventional) < 2 or len(interventional) % 2:
            raise ValueError(f"finding the pairs from the data (pairs='find', or no intervention menu) needs exactly "
                             f"two hard interventions per node (an even number of interventional regimes), got regimes "
                             f"{interventional}; pass menu=[None, iv_1, ...] or pairs=[(a, b), ...]")
        used = [0, *interventional]
        n = len(interventional) // 2
    else:
        if pairs is None:
            assert frames.menu is not None
            pairs = pairs_from_menu(frames.menu)
        try:
            pairs = [(int(a), int(b)) for a, b in pairs]
        except (TypeError, ValueError) as err:
            raise ValueError(f"pairs must be a list of (first, second) regimes, got {pairs!r}") from err
        used = [0] + [r for p in pairs for r in p]
        missing = sorted({r for r in used if r not in present})
        if missing:
            raise ValueError(f"regimes {missing} of the pairs have no frames in the data")
        if len(set(used)) != len(used):
            raise ValueError(f"pairs must use distinct interventional regimes, got {pairs}")
        n = len(pairs)

    unused = sorted(r for r in present if r not in used)
    if unused:
        counts = {int(r): int(np.sum(frames.regime == r)) for r in unused}
        warnings.warn(f"frames of regimes {counts} (regime: frames) do not train the representation: only the "
                      f"observational regime and the pairs {pairs if not find else '(to be found)'} do (a pair is "
                      "two hard interventions on one node); the world model still uses regimes whose targets "
                      "map to learned latents", UnusedFramesWarning, stacklevel=2)

    # rows: a seeded subsample per regime, split into train / held-out
    rng = np.random.default_rng([seed, 1])
    train_rows: dict[int, np.ndarray] = {}
    val_rows: dict[int, np.ndarray] = {}
    for r in used:
        rows = np.flatnonzero(frames.regime == r)
        if config.max_per_regime is not None and len(rows) > config.max_per_regime:
            rows = np.sort(rng.choice(rows, config.max_per_regime, replace=False))
        rows = rng.permutation(rows)
        num_val = max(2, round(config.val_fraction * len(rows)))
        if len(rows) - num_val < 10:
            raise ValueError(f"regime {r} has {len(rows)} frames; need at least {num_val + 10}")
        val_rows[r], train_rows[r] = np.sort(rows[:num_val]), np.sort(rows[num_val:])
    all_rows = np.concatenate([np.concatenate([train_rows[r], val_rows[r]]) for r in used])
    # the autoencoder sees a subsample (ae_max_per_regime); only its frames are held in memory, every
    # frame is encoded once (streamed) for the read-out, whose estimation error needs the most frames
    ae_rng = np.random.default_rng([seed, 3])
    ae_train_rows, ae_val_rows = {}, {}
    for r in used:
        tr, va = train_rows[r], val_rows[r]
        if config.ae_max_per_regime is not None and len(tr) > config.ae_max_per_regime:
            tr = np.sort(ae_rng.choice(tr, config.ae_max_per_regime, replace=False))
            keep = max(2, round(config.val_fraction * config.ae_max_per_regime))
            va = np.sort(ae_rng.choice(va, min(len(va), keep), replace=False))
        ae_train_rows[r], ae_val_rows[r] = tr, va
    ae_rows = np.concatenate([np.concatenate([ae_train_rows[r], ae_val_rows[r]]) for r in used])
    batches = _Batches(frames, ae_rows, int(config.image_size), dev, config.cache_bytes, progress)
    offsets = np.cumsum([0] + [len(ae_train_rows[r]) + len(ae_val_rows[r]) for r in used])
    train_pos = {r: offsets[i] + np.arange(len(ae_train_rows[r])) for i, r in enumerate(used)}
    val_pos = {r: offsets[i] + len(ae_train_rows[r]) + np.arange(len(ae_val_rows[r])) for i, r in enumerate(used)}

    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    probe = frames.read(np.sort(all_rows[[0, -1]]))
    stage1_keys = ("image_size", "max_per_regime", "ae_max_per_regime", "val_fraction", "code_dim", "channels",
                   "hidden", "ae_epochs", "batch_size", "lr", "ae_regime_weight")
    data_print = _fingerprint(all_rows, probe, [int(frames.size)], pairs, seed)
    stage1_print = _fingerprint(data_print, {k: getattr(config, k) for k in stage1_keys})
    later_print = _fingerprint(stage1_print, dataclasses.asdict(config))
    seconds: dict[str, float] = {}

    ae, readout, latent_decoder = _build_modules(config, n, seed)
    ae.to(dev)
    t0 = time.perf_counter()
    ae_train = np.concatenate([train_pos[r] for r in used])
    ae_val = np.concatenate([val_pos[r] for r in used])
    position_labels = np.concatenate([np.full(len(ae_train_rows[r]) + len(ae_val_rows[r]), i)
                                      for i, r in enumerate(used)])
    history = _train_autoencoder(ae, batches, ae_train, ae_val, config, dev, seed,
                                 None if ckpt is None else ckpt / "autoencoder.pt", stage1_print, progress, callback,
                                 labels=position_labels)
    # training time as recorded epoch by epoch, so a resumed run still reports what the stage cost
    seconds["autoencoder"] = float(sum(h.get("seconds", 0.0) for h in history))
    seconds["autoencoder_this_run"] = time.perf_counter() - t0
    ae.eval().requires_grad_(False)
    recon, mean_frame = _reconstruction_error(ae, batches, ae_val, ae_train)

    t0 = time.perf_counter()
    codes_train, codes_val = _encode_all(ae.encoder, frames, [train_rows, val_rows], int(config.image_size), dev,
                                         progress)
    seconds["codes"] = time.perf_counter() - t0
    pair_search = None
    if find:
        from causal_wm.crl.gscale import find_pairs

        t0 = time.perf_counter()
        # a subsample per regime: the pairing needs far fewer frames than the read-out
        search = find_pairs([codes_train[r][:5000] for r in used], n=n, seed=seed, device=str(dev))
        pairs = [(used[a], used[b]) for a, b in search.pairs]
        pair_search = {"margin": search.margin, "classifier_accuracy": search.classifier_accuracy,
                       "concentration": search.concentration.tolist()}
        seconds["find_pairs"] = time.perf_counter() - t0
    assert not isinstance(pairs, str) and pairs is not None

    parametric = config.route == "parametric"
    end_to_end = parametric and config.e2e_epochs > 0
    candidates = ["linear", "mlp"] if config.mechanism == "auto" else [config.mechanism]
    # the end-to-end stage fine-tunes one map; the members are trained on the codes it leaves
    first_members = 1 if end_to_end else config.readout_members

    def fit_readout() -> dict[str, Any]:
        nonlocal readout
        if parametric:
            # before an end-to-end stage the read-out is only its start: half the epochs
            readout, diag = fit_parametric_readout(config, codes_train, codes_val, pairs, dev, seed, progress,
                                                   mechanisms=candidates, members=first_members,
                                                   epochs=max(1, config.readout_epochs // 2) if end_to_end else None)
        else:
            diag = _fit_readout(readout, config, codes_train, codes_val, pairs, dev, seed, progress)
        return {"readout": readout.state_dict(), "diagnostics": json.dumps(to_jsonable(diag))}

    readout.to(dev)
    saved = _cached_stage(ckpt, f"readout_{config.route}", later_print, "readout", seconds, fit_readout)
    readout_diag = json.loads(saved["diagnostics"])
    if parametric:
        readout = _restore_parametric(saved, readout_diag, config, n, seed, first_members, dev)
    else:
        readout.load_state_dict(saved["readout"])
        readout.eval().requires_grad_(False)

    z_train = {r: apply_in_chunks(readout, codes_train[r], dev) for r in used}
    z_val = {r: apply_in_chunks(readout, codes_val[r], dev) for r in used}

    def fit_decoder() -> dict[str, Any]:
        _fit_latent_decoder(latent_decoder, z_train, z_val, codes_train, codes_val, config, dev, seed)
        check_finite(float(sum(p.detach().sum() for p in latent_decoder.parameters())), "the latent decoder")
        return {"decoder": latent_decoder.state_dict()}

    latent_decoder.to(dev)
    saved = _cached_stage(ckpt, f"decoder_{config.route}", later_print, "decoder", seconds, fit_decoder)
    latent_decoder.load_state_dict(saved["decoder"])
    latent_decoder.eval().requires_grad_(False)

    e2e_diag = None
    if end_to_end:
        assert isinstance(readout, ParametricReadout)
        e2e_diag = _end_to_end_stage(ae, readout, latent_decoder, frames, train_rows, val_rows, used, config, dev,
                                     seed, progress, ckpt, later_print, seconds)
        # the encoder changed: encode every frame again and refine the read-out on all of them (the
        # end-to-end stage saw a subsample; the read-out's estimation error needs every frame)
        t0 = time.perf_counter()
        codes_train, codes_val = _encode_all(ae.encoder, frames, [train_rows, val_rows], int(config.image_size), dev,
                                             progress)
        seconds["codes_after_end_to_end"] = time.perf_counter() - t0
        start = readout

        def refine_readout() -> dict[str, Any]:
            # a network SCM is refined as it is; a linear one gets the network candidate again
            again = [start.mechanism] + (["mlp"] if start.mechanism == "linear" and "mlp" in candidates else [])
            refined, diag = fit_parametric_readout(config, codes_train, codes_val, pairs, dev, seed, progress,
                                                   mechanisms=again, start=start, members=config.readout_members)
            return {"readout": refined.state_dict(), "diagnostics": json.dumps(to_jsonable(diag))}

        saved = _cached_stage(ckpt, "readout_refined", later_print, "readout_refined", seconds, refine_readout)
        readout_diag = {**json.loads(saved["diagnostics"]), "before_end_to_end": readout_diag}
        readout = _restore_parametric(saved, readout_diag, config, n, seed, config.readout_members, dev)
        # the latent decoder was trained on the start's standardised output: fold in the new standardisation
        _fold_standardization(latent_decoder, start.out.mean, start.out.std, readout.out.mean, readout.out.std)
    accuracy = _pair_accuracy(readout, codes_val, pairs, dev)
    design = frames.menu
    bayes = [None if design is None else bayes_accuracy(design[a], design[b]) for a, b in pairs]

    if parametric:
        t0 = time.perf_counter()
        strength = _mechanism_strength(readout, codes_train[0], dev)
        graph, tau, removed = _graph_from_strength(strength, config.edge_threshold)
        seconds["graph"] = time.perf_counter() - t0
    else:
        saved = _cached_stage(ckpt, f"graph_{config.route}", later_print, "graph", seconds, lambda: {
            "strength": torch.as_tensor(_graph_strength(z_train, z_val, pairs, config, dev, seed, progress))})
        strength = saved["strength"].numpy()
        graph, tau, removed = _graph_from_strength(strength, config.graph_threshold)

    env_targets = _env_targets(pairs, frames.menu)
    result = ImageCRLResult(ae, readout, latent_decoder, graph, env_targets, pairs, dataclasses.asdict(config))
    decoder_mse = _decoder_error(result, batches, np.concatenate([val_pos[r] for r in used]))
    seconds["total"] = time.perf_counter() - started
    result.diagnostics = {
        "route": config.route, "preset": preset, "device": str(dev), "n": n, "pairs": [list(p) for p in pairs],
        "frames_per_regime": {int(r): int(len(train_rows[r]) + len(val_rows[r])) for r in used},
        "reconstruction_mse": recon, "reconstruction_mse_mean_frame": mean_frame,
        "pair_accuracy": accuracy, "bayes_accuracy": bayes,
        "accuracy_gap": [None if b is None else b - a for a, b in zip(accuracy, bayes, strict=True)],
        "graph_strength": strength.tolist(), "graph_threshold": tau, "graph_removed_weight": removed,
        "decoder_mse": decoder_mse, "pairs_source": pairs_source, "pair_search": pair_search,
        "weak_latents": _weak_latents(accuracy, bayes),
        "frames": frame_statistics(frames.read(np.sort(np.random.default_rng(derive_seed(seed, 6)).choice(
            all_rows, min(len(all_rows), 2000), replace=False)))),
        "autoencoder_history": history, "readout": readout_diag, "end_to_end": e2e_diag, "seconds": seconds,
    }
    return result


def _restore_parametric(saved: dict[str, Any], diagnostics: dict[str, Any], config: ImageCRLConfig, n: int, seed: int,
                        members: int, device: torch.device) -> ParametricReadout:
    """The parametric read-out a (possibly cached) stage saved; ``config.mechanism`` becomes the resolved
    choice, so the result can be rebuilt from its config."""
    config.mechanism = str(diagnostics["mechanism"])
    readout = build_readout(config, n, seed, members=members).to(device)
    readout.load_state_dict(saved["readout"])
    readout.eval().requires_grad_(False)
    assert isinstance(readout, ParametricReadout)
    return readout


def _weak_latents(accuracy: list[float], bayes: list[float | None], margin: float = 0.03) -> list[int]:
    """Learned latents whose pair classifier's held-out accuracy falls more than ``margin`` below the
    design's Bayes accuracy (or, without a design, below 0.6): flagged without ground truth."""
    return [k for k, (a, b) in enumerate(zip(accuracy, bayes, strict=True)) if a < (0.6 if b is None else b - margin)]


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_autoencoder(ae: ConvAutoencoder, batches: _Batches, train: np.ndarray, val: np.ndarray,
                       config: ImageCRLConfig, device: torch.device, seed: int, path: Path | None,
                       fingerprint: str, progress: bool,
                       callback: Callable[[dict[str, Any]], None] | None,
                       labels: np.ndarray | None = None) -> list[dict[str, float]]:
    """Stage 1: pixel-wise binary cross-entropy of ``decoder(encoder(x))`` logits against the pixels in
    ``[0, 1]``, plus ``ae_regime_weight`` times the cross-entropy of a small regime classifier on the
    code (``labels[position]`` = class of the frame at every position of ``batches``): a detail that
    few pixels show (a thin shadow) costs the reconstruction little, but the regimes that intervene on
    it tell it apart, so the code keeps it. Held-out pixel MSE after every epoch, then a checkpoint."""
    head = None
    if config.ae_regime_weight > 0:
        if labels is None:
            raise ValueError("ae_regime_weight needs the regime labels of the frames")
        head = smooth_mlp(config.code_dim, int(labels.max()) + 1, config.classifier_hidden, 1,
                          seed=derive_seed(seed, 41)).to(device)
        label_tensor = torch.as_tensor(labels, device=device)
    params = list(ae.parameters()) + ([] if head is None else list(head.parameters()))
    opt = torch.optim.Adam(params, lr=config.lr)
    history: list[dict[str, float]] = []
    start = 0
    state = _load_checkpoint(path, fingerprint)
    if state is not None:
        ae.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        history = [dict(h) for h in state["history"]]
        start = int(state["epoch"])
    bar = tqdm(range(start, config.ae_epochs), desc="autoencoder", disable=not progress, initial=start,
               total=config.ae_epochs)
    for epoch in bar:
        epoch_start = time.perf_counter()
        ae.train()
        order = train[np.random.default_rng([seed, 2, epoch]).permutation(len(train))]
        total = torch.zeros((), device=device)
        total_ce = torch.zeros((), device=device)
        for s in range(0, len(order), config.batch_size):
            positions = order[s: s + config.batch_size]
            x = batches.get(positions)
            with _autocast(device, config.amp):
                y, logits = ae(x)
            # cross-entropy on the logits, not MSE on sigmoid pixels: saturated sigmoids on the plain
            # background leave MSE without gradient and the decoder collapses to a constant frame
            recon = F.binary_cross_entropy_with_logits(logits.float(), x)
            loss = recon
            if head is not None:
                ce = F.cross_entropy(head(y.float()), label_tensor[torch.as_tensor(positions, device=device)])
                loss = recon + config.ae_regime_weight * ce
                total_ce += ce.detach() * len(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += recon.detach() * len(x)
        train_loss = float(total) / len(order)
        check_finite(train_loss, f"the autoencoder loss (epoch {epoch + 1})")
        ae.eval()
        val_loss, _ = _reconstruction_error(ae, batches, val, None)
        check_finite(val_loss, f"the autoencoder held-out loss (epoch {epoch + 1})")
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_mse": val_loss,
                        **({} if head is None else {"train_regime_cross_entropy": float(total_ce) / len(order)}),
                        "seconds": time.perf_counter() - epoch_start})
        bar.set_postfix(bce=f"{train_loss:.4f}", val_mse=f"{val_loss:.5f}")
        if path is not None:
            save_atomic({"fingerprint": fingerprint, "epoch": epoch + 1, "model": ae.state_dict(),
                         "optimizer": opt.state_dict(), "history": history,
                         **({} if head is None else {"head": head.state_dict()})}, path)
        if callback is not None:
            callback({"stage": "autoencoder", **history[-1]})
    return history


@torch.no_grad()
def _reconstruction_error(ae: ConvAutoencoder, batches: _Batches, positions: np.ndarray,
                          mean_from: np.ndarray | None) -> tuple[float, float | None]:
    """Pixel MSE at ``positions``, and the MSE of the mean frame of ``mean_from`` (None: skipped)."""
    mean = None
    if mean_from is not None:
        acc = None
        for s in range(0, len(mean_from), 512):
            x = batches.get(mean_from[s: s + 512]).sum(0)
            acc = x if acc is None else acc + x
        mean = acc / len(mean_from)
    err = base = 0.0
    for s in range(0, len(positions), 512):
        x = batches.get(positions[s: s + 512])
        _, logits = ae(x)
        err += float(((torch.sigmoid(logits.float()) - x) ** 2).mean(dim=(1, 2, 3)).sum())
        if mean is not None:
            base += float(((mean - x) ** 2).mean(dim=(1, 2, 3)).sum())
    return err / len(positions), (None if mean is None else base / len(positions))


@torch.no_grad()
def _encode_all(encoder: nn.Module, frames: _Frames, row_sets: Sequence[dict[int, np.ndarray]], image_size: int,
                device: torch.device, progress: bool) -> list[dict[int, np.ndarray]]:
    """Stage-1 codes ``(m, code_dim)`` float64 of the rows of every set (regime -> rows), read in row
    order in chunks (sequential reads from HDF5; nothing but the codes is kept)."""
    keys = [(i, r) for i, rows in enumerate(row_sets) for r in rows]
    rows = np.concatenate([row_sets[i][r] for i, r in keys])
    owner = np.concatenate([np.full(len(row_sets[i][r]), j) for j, (i, r) in enumerate(keys)])
    order = np.argsort(rows, kind="stable")
    codes = np.empty((len(rows), 0))
    chunk = 4096
    for s in tqdm(range(0, len(order), chunk), desc="encoding frames", disable=not progress, leave=False):
        idx = order[s: s + chunk]
        y = encoder(prepare_images(torch.as_tensor(frames.read(rows[idx]), device=device), image_size))
        y = y.float().cpu().numpy().astype(np.float64)
        if codes.shape[1] == 0:
            codes = np.empty((len(rows), y.shape[1]))
        codes[idx] = y
    out: list[dict[int, np.ndarray]] = [{} for _ in row_sets]
    for j, (i, r) in enumerate(keys):
        out[i][r] = codes[owner == j]
    return out


# --- stage 3: the graph --------------------------------------------------------------------------------
def _graph_strength(z_train: dict[int, np.ndarray], z_val: dict[int, np.ndarray], pairs: list[tuple[int, int]],
                    config: ImageCRLConfig, device: torch.device, seed: int, progress: bool) -> np.ndarray:
    """``M[i, k] = E|dr/dz_i| / E|dr/dz_k|`` for ``r = log p^0 / p^m``, averaged over the two regimes
    ``m`` of pair ``k``, at observational samples (train and held-out); diagonal 0."""
    regimes = [0] + [r for p in pairs for r in p]
    estimator = ClassifierScores(pairs=[(0, j) for j in range(1, len(regimes))], hidden=config.classifier_hidden,
                                 depth=config.classifier_depth, epochs=config.classifier_epochs,
                                 batch_size=config.classifier_batch_size, patience=config.classifier_patience,
                                 seed=derive_seed(seed, 5), device=str(device), progress=progress)
    estimator.fit([z_train[r] for r in regimes])
    points = np.concatenate([z_train[0], z_val[0]])
    n = len(pairs)
    M = np.zeros((n, n))
    for k in range(n):
        for j in (1 + 2 * k, 2 + 2 * k):
            g = np.abs(estimator.pair_difference(points, 0, j)).mean(axis=0)
            M[:, k] += 0.5 * g / max(g[k], 1e-12)
    np.fill_diagonal(M, 0.0)
    return M


def _mechanism_strength(readout: nn.Module, codes_obs: np.ndarray, device: torch.device) -> np.ndarray:
    """Parametric route: ``S[i, k] = E|d g_k / d u_i|`` of the latent SCM's mechanisms in the output
    (standardised) latents ``u``, over observational frames; diagonal 0."""
    assert isinstance(readout, ParametricReadout)
    raw = torch.as_tensor(apply_in_chunks(readout.raw, codes_obs[:20_000], device), dtype=torch.float32,
                          device=device)
    scale = readout.out.std.abs().cpu().numpy().astype(np.float64)
    return readout.scm.edge_strength(raw) * scale[:, None] / scale[None, :]


def _graph_from_strength(M: np.ndarray, threshold: float | str) -> tuple[np.ndarray, float, float]:
    n = M.shape[0]
    off = M[~np.eye(n, dtype=bool)]
    if threshold == "auto":
        tau = gap_threshold(off, n * (n - 1) // 2) if off.size else 1.0
    else:
        tau = float(threshold)
    W = np.where(M > tau, np.log(np.maximum(M, 1e-300) / tau), 0.0)
    np.fill_diagonal(W, 0.0)
    res = closest_dag(W)
    return res.adjacency.astype(np.int64), float(tau), float(res.removed_weight)


# --- stage 5: end to end (parametric route) ---------------------------------------------------------------
def _end_to_end_stage(ae: ConvAutoencoder, readout: ParametricReadout, latent_decoder: LatentDecoder, frames: _Frames,
                      train_rows: dict[int, np.ndarray], val_rows: dict[int, np.ndarray], used: list[int],
                      config: ImageCRLConfig, device: torch.device, seed: int, progress: bool, ckpt: Path | None,
                      fingerprint: str, seconds: dict[str, float]) -> dict[str, Any]:
    """Select and cache the frames, fine-tune (``causal_wm.crl.images.end_to_end``), checkpoint."""
    from causal_wm.crl.images.end_to_end import train_end_to_end

    def fit() -> dict[str, Any]:
        rng = np.random.default_rng(derive_seed(seed, 32))
        cap = config.e2e_max_per_regime
        train = [tr if cap is None or len(tr) <= cap else np.sort(rng.choice(tr, cap, replace=False))
                 for tr in (train_rows[r] for r in used)]
        held = [va if len(va) <= 400 else np.sort(rng.choice(va, 400, replace=False))
                for va in (val_rows[r] for r in used)]
        rows = np.concatenate(train + held)
        batches = _Batches(frames, rows, int(config.image_size), device, config.cache_bytes, progress)
        offsets = np.cumsum([0] + [len(t) for t in train + held])
        positions = [offsets[i] + np.arange(len(t)) for i, t in enumerate(train + held)]
        diag = train_end_to_end(ae, readout, latent_decoder, batches, positions[: len(used)], positions[len(used):],
                                config, device, seed, progress)
        return {"autoencoder": ae.state_dict(), "readout": readout.state_dict(),
                "decoder": latent_decoder.state_dict(), "diagnostics": json.dumps(to_jsonable(diag))}

    saved = _cached_stage(ckpt, "end_to_end", fingerprint, "end_to_end", seconds, fit)
    ae.load_state_dict(saved["autoencoder"])
    readout.load_state_dict(saved["readout"])
    latent_decoder.load_state_dict(saved["decoder"])
    for m in (ae, readout, latent_decoder):
        m.eval().requires_grad_(False)
    return json.loads(saved["diagnostics"])


@torch.no_grad()
def _fold_standardization(latent_decoder: LatentDecoder, old_mean: torch.Tensor, old_std: torch.Tensor,
                          mean: torch.Tensor, std: torch.Tensor) -> None:
    """The latent decoder read ``(raw - old_mean) / old_std``; make it read ``(raw - mean) / std`` with the
    same output (the change is folded into its first layer)."""
    first = latent_decoder.net[0]
    assert isinstance(first, nn.Linear)
    # z_old = (z_new * std + mean - old_mean) / old_std
    first.bias += first.weight @ ((mean - old_mean) / old_std)
    first.weight *= (std / old_std)[None, :]


# --- stage 4: decoder ------------------------------------------------------------------------------------
def _fit_latent_decoder(decoder: LatentDecoder, z_train: dict[int, np.ndarray], z_val: dict[int, np.ndarray],
                        codes_train: dict[int, np.ndarray], codes_val: dict[int, np.ndarray],
                        config: ImageCRLConfig, device: torch.device, seed: int) -> None:
    keys = sorted(z_train)
    cap = config.decoder_max_per_regime
    zt = torch.as_tensor(np.concatenate([z_train[r][:cap] for r in keys]), dtype=torch.float32, device=device)
    yt = torch.as_tensor(np.concatenate([codes_train[r][:cap] for r in keys]), dtype=torch.float32, device=device)
    zv = torch.as_tensor(np.concatenate([z_val[r] for r in keys]), dtype=torch.float32, device=device)
    yv = torch.as_tensor(np.concatenate([codes_val[r] for r in keys]), dtype=torch.float32, device=device)
    with torch.no_grad():
        decoder.code.mean.copy_(yt.mean(0))
        decoder.code.std.copy_(yt.std(0).clamp_min(1e-8))
    gen = torch.Generator(device=device).manual_seed(derive_seed(seed, 4))
    bs = config.classifier_batch_size

    def step() -> torch.Tensor:
        idx = torch.randint(len(zt), (min(bs, len(zt)),), generator=gen, device=device)
        return F.mse_loss(decoder.net(zt[idx]), decoder.code(yt[idx]))

    def val_loss() -> float:
        with torch.no_grad():
            return float(F.mse_loss(decoder.net(zv), decoder.code(yv)))

    train_early_stopping(decoder, step, val_loss, epochs=config.decoder_epochs,
                         steps_per_epoch=max(1, -(-len(zt) // bs)), lr=2e-3, patience=config.classifier_patience * 2)


@torch.no_grad()
def _decoder_error(result: ImageCRLResult, batches: _Batches, positions: np.ndarray) -> float:
    encoder, decoder = result.encoder_module().eval(), result.decoder_module().eval()
    err = 0.0
    for s in range(0, len(positions), 512):
        x = batches.get(positions[s: s + 512])
        err += float(((decoder(encoder(x)) - x) ** 2).mean(dim=(1, 2, 3)).sum())
    return err / len(positions)


def _env_targets(pairs: list[tuple[int, int]], menu: Sequence[Any] | None) -> dict[int, tuple[int, ...]]:
    out = {r: (k,) for k, p in enumerate(pairs) for r in p}
    if menu is None:
        return out
    node_of_latent = {}
    for k, (a, _) in enumerate(pairs):
        targets = _field(menu[a], "targets") if a < len(menu) and menu[a] is not None else None
        if targets is not None and len(targets) == 1:
            node_of_latent[int(targets[0])] = k
    for r, iv in enumerate(menu):
        if iv is None or r in out:
            continue
        targets = [int(t) for t in _field(iv, "targets")]
        if all(t in node_of_latent for t in targets):
            out[r] = tuple(sorted(node_of_latent[t] for t in targets))
    return dict(sorted(out.items()))
