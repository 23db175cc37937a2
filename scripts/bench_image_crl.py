"""Benchmark of the image CRL pipeline (``causal_wm.crl.images``) on several graphs and two scenes,
next to the supervised ceiling.

Scenes: ``causal_wm/Balls-v0`` (3 balls, ``n = 6`` latents: x and y of every ball, a linear Gaussian SCM
on a random DAG) on every graph seed of ``--graph-seeds``, and ``causal_wm/Shadow-v0`` (pendulum, light,
shadow position and length, ``n = 4``, nonlinear mechanisms, one fixed graph). Data of every run: the
observational regime and the two mean-shift hard interventions of every node (``do_values=()``),
collected with ``causal_wm.collect`` (``policy="balanced"``) into an HDF5 file; the learner sees frames
and regime labels only.

Per run (one scene and graph seed) every route of ``--routes`` is fitted with ``fit_image_crl`` at the
preset (the first route trains the autoencoder, the others resume it from the shared checkpoint) and
scored on fresh observational frames rendered from the true SCM (a seed distinct from the data's):
Pearson and Spearman MCC (Hungarian matching), the matched correlation of every true latent, the
R^2 matrix (diag, sep), SHD of the learned graph after the Pearson-MCC matching (reversal = 1: "shd",
reversal = 2: "shd_rev2"), edge precision/recall, seconds, and the checks that need no ground truth
(reconstruction error, pair accuracy against the Bayes accuracy, the read-out's held-out
cross-entropy, graph strengths, decoder error, seconds per stage). Two references on the same test
frames:

- plain autoencoder code: the stage-1 code of the first route reduced to ``n`` principal components;
- supervised ceiling: the encoder's CNN (``ConvEncoder`` at the preset's resolution and widths)
  trained by MSE to regress the standardised true latents from the frames of every regime of the same
  collection: the information limit of the frames at that resolution. ``ceiling_corr_mean`` is the
  mean over latents of the Pearson correlation between its prediction and the truth;
  ``within_ceiling`` = ``ceiling_corr_mean`` - Spearman MCC of the route (``within_ceiling_spearman``:
  the ceiling's own Spearman MCC instead of its mean Pearson correlation).

Fit seconds (``seconds_fit``): the wall time of the ``fit_image_crl`` call with the autoencoder charged
at least its recorded training time (so a route that resumes the shared autoencoder pays for it too); data
collection (``data_seconds``) and the ceiling (``ceiling.seconds``) are recorded apart.

Writes ``benchmarks/results/image_crl.json`` (``scenes.<scene>.runs`` and ``scenes.<scene>.summary``:
means over runs of the default route, the first of ``--routes``, with the goals of the issue; the other
routes under ``summary.routes``) after every run, and PNGs next to it: per scene the MCC per graph seed
with the ceiling marked, and for the first Balls run and the Shadow run the |Spearman| matrix, true vs
learned graph, latent traversals and reconstructions. A rerun skips the runs already in the file with
identical settings (an interrupted benchmark resumes; keep ``--data-dir`` to reuse collections and
checkpoints too) and fits only routes a run lacks.

    python scripts/bench_image_crl.py                     # cpu preset: 5 Balls graphs + Shadow (hours on 2 cores)
    python scripts/bench_image_crl.py --scenes Shadow-v0 --data-dir /tmp/icrl   # one scene, keep data
    python scripts/bench_image_crl.py --routes parametric multinomial           # compare routes
    python scripts/bench_image_crl.py --quick   # smoke test in seconds, writes ./bench_out/image_crl/
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.crl.image_models import ConvEncoder
from causal_wm.crl.images import (
    PRESETS,
    ROUTES,
    ImageCRLResult,
    evaluate_image_crl,
    fit_image_crl,
    image_crl_figures,
    make_config,
    plain_code_mcc,
)
from causal_wm.crl.metrics import correlation_matrix, mcc
from causal_wm.device import machine_info, resolve_device
from causal_wm.pixels import prepare_images

SCENES = ("Balls-v0", "Shadow-v0")
GOALS: dict[str, dict[str, tuple[str, float]]] = {
    "Balls-v0": {"runs": (">=", 5), "mcc_spearman_mean": (">=", 0.98), "mcc_spearman_min": (">=", 0.96),
                 "mcc_pearson_mean": (">=", 0.97), "shd_mean": ("<=", 0.4), "within_ceiling_mean": ("<=", 0.015),
                 "seconds_max": ("<=", 600.0)},
    "Shadow-v0": {"mcc_spearman_mean": (">=", 0.95), "shd_mean": ("<=", 1.0)},
}
# stage-1 code, read-out and graph keys of result.diagnostics that go into the JSON as they are
DIAGNOSTICS = ("reconstruction_mse", "reconstruction_mse_mean_frame", "pair_accuracy", "bayes_accuracy",
               "accuracy_gap", "graph_strength", "graph_threshold", "graph_removed_weight", "decoder_mse",
               "weak_latents", "frames_per_regime", "seconds")


@dataclass
class Config:
    """Settings of the benchmark (every field is a command-line flag)."""

    preset: str = "cpu"
    """preset of fit_image_crl: debug, cpu or full"""
    device: str = "auto"
    """torch device ("auto": CUDA when available)"""
    routes: tuple[str, ...] = (ROUTES[0],)
    """read-out routes to fit on every run; the first is the default route of the summary and trains the
    autoencoder, the others reuse its checkpoint"""
    scenes: tuple[str, ...] = SCENES
    """scenes to run: Balls-v0 (one run per graph seed) and/or Shadow-v0 (one fixed graph: one run)"""
    graph_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """graph seeds of Balls-v0 (random DAG and SCM weights)"""
    num_balls: int = 3
    """balls of Balls-v0 (n = 2 * num_balls latents)"""
    per_regime: int = 0
    """frames per regime collected and used by the fit (0: the preset's max_per_regime)"""
    test_frames: int = 2000
    """fresh observational frames with true latents for the scores"""
    data_dir: str = ""
    """where the HDF5 collections and the checkpoints go (default: a temporary folder, removed at the end)"""
    seed: int = 0
    """seed of the data and of the learner"""
    threads: int = 1
    """torch CPU threads"""
    ceiling: bool = True
    """train the supervised ceiling (a CNN regressing the true latents) on every run"""
    ceiling_epochs: int = 6
    """epochs of the supervised ceiling"""
    ceiling_frames_per_regime: int = 4000
    """frames of every regime (with their true latents, from the same collection) the ceiling trains on"""
    ceiling_lr: float = 1e-3
    """learning rate (Adam, cosine decay) of the supervised ceiling"""
    ceiling_batch_size: int = 64
    """minibatch of the supervised ceiling"""
    progress: bool = False
    """tqdm progress bars of the collection and the fits"""
    out: str = str(RESULTS_DIR / "image_crl.json")
    """JSON results file (runs of other settings of a scene are replaced, other scenes kept); PNGs go next to it"""
    note: str = ""
    """free text stored with the results"""
    quick: bool = False
    """smoke test in seconds: debug preset, 2 balls, 1 graph seed, 60 frames per regime, a tiny ceiling;
    writes under ./bench_out/image_crl/"""


QUICK = {"preset": "debug", "num_balls": 2, "graph_seeds": (0,), "per_regime": 60, "test_frames": 200,
         "ceiling_epochs": 1, "ceiling_frames_per_regime": 60, "out": str(quick_dir("image_crl") / "image_crl.json")}


def parse_args(argv: list[str] | None = None) -> Config:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out", "data_dir"))
    cfg.scenes = tuple(s.removeprefix("causal_wm/") for s in cfg.scenes)
    if cfg.preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(PRESETS)}")
    if not cfg.routes or not set(cfg.routes) <= set(ROUTES) or len(set(cfg.routes)) != len(cfg.routes):
        raise SystemExit(f"--routes must be distinct routes among {ROUTES}")
    if not cfg.scenes or not set(cfg.scenes) <= set(SCENES):
        raise SystemExit(f"--scenes must be among {SCENES}")
    if "Balls-v0" in cfg.scenes and (not cfg.graph_seeds or min(cfg.graph_seeds) < 0):
        raise SystemExit("--graph-seeds must be one or more non-negative ints")
    for name in ("num_balls", "test_frames", "threads", "ceiling_epochs", "ceiling_frames_per_regime",
                 "ceiling_batch_size"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    if cfg.per_regime < 0 or cfg.seed < 0 or not cfg.ceiling_lr > 0:
        raise SystemExit("--per-regime and --seed must be >= 0, --ceiling-lr > 0")
    return cfg


# --- one run ------------------------------------------------------------------------------------------
def scene_runs(cfg: Config) -> list[tuple[str, int | None, dict[str, Any]]]:
    """``(scene, graph seed or None, env kwargs)`` of every run, in order."""
    runs: list[tuple[str, int | None, dict[str, Any]]] = []
    for scene in cfg.scenes:
        if scene == "Balls-v0":
            runs += [(scene, int(g), {"num_balls": cfg.num_balls, "graph_seed": int(g), "do_values": ()})
                     for g in cfg.graph_seeds]
        else:
            runs.append((scene, None, {"do_values": ()}))
    return runs


def run_key(cfg: Config, scene: str, graph_seed: int | None, env_kwargs: dict[str, Any], per_regime: int) -> dict:
    """Everything a run's numbers depend on (routes apart: a run may hold a subset of them)."""
    key = {"scene": scene, "graph_seed": graph_seed, "env_kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in env_kwargs.items()},
           "preset": cfg.preset, "preset_settings": PRESETS[cfg.preset], "per_regime": per_regime,
           "test_frames": cfg.test_frames, "seed": cfg.seed, "device": cfg.device}
    if cfg.ceiling:
        key["ceiling"] = {"epochs": cfg.ceiling_epochs, "frames_per_regime": cfg.ceiling_frames_per_regime,
                          "lr": cfg.ceiling_lr, "batch_size": cfg.ceiling_batch_size}
    return _plain(key)


def _without_graph_seed(key: dict[str, Any]) -> dict[str, Any]:
    """A run's key less its graph seed (top level and in the env kwargs): what all runs of a scene share."""
    out = {k: v for k, v in key.items() if k != "graph_seed"}
    if isinstance(out.get("env_kwargs"), dict):
        out["env_kwargs"] = {k: v for k, v in out["env_kwargs"].items() if k != "graph_seed"}
    return out


def _plain(value: Any) -> Any:
    """JSON round trip: the form a key has after being written and read back."""
    import json

    return json.loads(json.dumps(value, default=float))


def matched_correlations(z_true: np.ndarray, z_hat: np.ndarray) -> dict[str, list]:
    """Per true latent the |correlation| with its matched learned latent: Spearman under the Spearman-MCC
    matching, Pearson under the Pearson-MCC matching (their means are the two MCCs)."""
    out: dict[str, list] = {}
    for method in ("spearman", "pearson"):
        m = mcc(z_true, z_hat, method)
        out[f"per_latent_{method}"] = m.matrix[np.arange(len(m.permutation)), m.permutation].tolist()
        out[f"permutation_{method}"] = m.permutation.tolist()
    return out


def ground_truth_free(result: ImageCRLResult) -> dict[str, Any]:
    """The checks of ``result.diagnostics`` that need no ground truth (histories shortened to their ends)."""
    from causal_wm._torch import to_jsonable

    d = result.diagnostics
    out = {k: d[k] for k in DIAGNOSTICS if k in d}
    readout = d.get("readout") or {}
    out["readout"] = readout
    if "val_cross_entropy" in readout:
        out["readout_val_cross_entropy"] = readout["val_cross_entropy"]
    e2e = d.get("end_to_end")
    if e2e:
        out["end_to_end"] = e2e
    history = d.get("autoencoder_history") or []
    if history:
        out["autoencoder_last_epoch"] = history[-1]
    return to_jsonable(out)


def fit_seconds(result: ImageCRLResult, wall: float) -> float:
    """Wall time of the fit with the autoencoder charged at least its recorded training time (a route that
    resumed the shared autoencoder pays for it as if it had trained it)."""
    s = result.diagnostics.get("seconds", {})
    return float(wall + max(0.0, s.get("autoencoder", 0.0) - s.get("autoencoder_this_run", 0.0)))


def supervised_ceiling(cfg: Config, dataset: Any, n: int, test_x: np.ndarray, test_z: np.ndarray,
                       device: torch.device) -> dict[str, Any]:
    """The encoder's CNN trained to regress the standardised true latents from frames of every regime of
    the collection (MSE, Adam with cosine decay), scored on the test frames."""
    t0 = time.perf_counter()
    fit_cfg = make_config(cfg.preset)
    size = int(fit_cfg.image_size or dataset.obs_shape[0])
    rng = np.random.default_rng([cfg.seed, 91])
    rows = np.sort(np.concatenate([
        r if len(r) <= cfg.ceiling_frames_per_regime else rng.choice(r, cfg.ceiling_frames_per_regime, replace=False)
        for r in dataset.by_regime().values()]))
    # frames at the model resolution, float16 (half the memory of float32; exact to ~1e-3)
    x = torch.cat([prepare_images(dataset.observations(rows[s: s + 4096]), size).half()
                   for s in range(0, len(rows), 4096)])
    z = dataset.latents(rows).astype(np.float64)
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-12
    y = torch.as_tensor((z - mean) / std, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ConvEncoder(size, n, fit_cfg.channels, fit_cfg.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.ceiling_lr)
    bs = min(cfg.ceiling_batch_size, len(rows))
    steps = cfg.ceiling_epochs * (len(rows) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    losses = []
    model.train()
    for epoch in range(cfg.ceiling_epochs):
        order = torch.as_tensor(np.random.default_rng([cfg.seed, 92, epoch]).permutation(len(rows)))
        total = 0.0
        for s in range(0, len(order) - bs + 1, bs):
            idx = order[s: s + bs]
            loss = F.mse_loss(model(x[idx].float().to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(1, (len(order) // bs) * bs))
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(prepare_images(test_x[s: s + 1024], size).to(device)).float().cpu()
                          for s in range(0, len(test_x), 1024)]).numpy().astype(np.float64)
    per_latent = np.diag(correlation_matrix(test_z, pred, "pearson"))
    return {"corr_mean": float(per_latent.mean()), "per_latent_pearson": per_latent.tolist(),
            "mcc_spearman": mcc(test_z, pred, "spearman").value, "mcc_pearson": mcc(test_z, pred).value,
            "train_mse": losses, "frames": len(rows), "image_size": size, "seconds": time.perf_counter() - t0}


def collect_data(cfg: Config, scene: str, graph_seed: int | None, env_kwargs: dict[str, Any], per_regime: int,
                 folder: Path) -> tuple[Any, float, bool]:
    from causal_wm.data import collect

    tag = scene.split("-")[0].lower() + ("" if graph_seed is None else f"{cfg.num_balls}_g{graph_seed}")
    path = folder / f"{tag}_{per_regime}_{cfg.seed}.h5"
    reused = path.exists()
    t0 = time.perf_counter()
    data = collect(f"causal_wm/{scene}", None, path, policy="balanced", per_regime=per_regime, seed=cfg.seed,
                   env_kwargs=env_kwargs, progress=cfg.progress)
    return data, time.perf_counter() - t0, reused


def run_one(cfg: Config, scene: str, graph_seed: int | None, env_kwargs: dict[str, Any], per_regime: int,
            folder: Path, out: Path, device: torch.device, record: dict[str, Any], figures: bool) -> dict[str, Any]:
    """Fill ``record`` (a run, possibly partly done before) with the missing routes, the plain code
    baseline and the ceiling; returns it."""
    env = gym.make(f"causal_wm/{scene}", **env_kwargs)
    world = env.unwrapped
    graph, names = np.asarray(world.graph), list(world.node_names)
    test_z = world.scm.sample(cfg.test_frames, None, seed=10_000 + cfg.seed)
    test_x = world.renderer(test_z)
    env.close()
    data, data_seconds, reused = collect_data(cfg, scene, graph_seed, env_kwargs, per_regime, folder)
    if "data_seconds" not in record:
        record.update(data_seconds=data_seconds, data_reused=reused, rows=len(data),
                      regimes=len(data.regime_counts()))
    record.update(n=int(graph.shape[0]), node_names=names, true_graph=graph.tolist())
    tag = scene.split("-")[0].lower() + ("" if graph_seed is None else f"_g{graph_seed}")
    checkpoints = folder / f"checkpoints_{tag}_{cfg.preset}_{per_regime}_{cfg.seed}"
    routes = record.setdefault("routes", {})
    for route in cfg.routes:
        if route in routes:
            continue
        t0 = time.perf_counter()
        result = fit_image_crl(data, preset=cfg.preset, route=route, device=device, seed=cfg.seed,
                               checkpoint_dir=checkpoints, max_per_regime=per_regime, progress=cfg.progress)
        wall = time.perf_counter() - t0
        metrics = evaluate_image_crl(result, test_x, test_z, graph)
        z_hat = result.encode(test_x)
        entry = {k: metrics[k] for k in ("mcc_spearman", "mcc_pearson", "r2_diag", "r2_sep", "shd", "shd_rev2",
                                         "edge_precision", "edge_recall", "z_error", "permutation",
                                         "spearman_matrix", "learned_graph") if k in metrics}
        entry.update(matched_correlations(test_z, z_hat))
        entry.update(seconds_fit=fit_seconds(result, wall), seconds_fit_call=wall,
                     ground_truth_free=ground_truth_free(result))
        routes[route] = entry
        if "plain_autoencoder_code" not in record:
            record["plain_autoencoder_code"] = plain_code_mcc(result, test_x, test_z)
        if figures and route == cfg.routes[0]:
            record["plots"] = list(image_crl_figures(result, metrics, graph, out.parent, f"image_crl_{tag}",
                                                     names=names, frames=test_x).values())
    if cfg.ceiling and "ceiling" not in record:
        record["ceiling"] = supervised_ceiling(cfg, data, int(graph.shape[0]), test_x, test_z, device)
    if "ceiling" in record:
        record["ceiling_corr_mean"] = record["ceiling"]["corr_mean"]
        for entry in routes.values():
            entry["within_ceiling"] = record["ceiling_corr_mean"] - entry["mcc_spearman"]
            entry["within_ceiling_spearman"] = record["ceiling"]["mcc_spearman"] - entry["mcc_spearman"]
    data.close()
    return record


# --- summaries, figures, the file -------------------------------------------------------------------------
def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def route_summary(runs: list[dict], route: str) -> dict[str, Any]:
    entries = [(r, r["routes"][route]) for r in runs if route in r.get("routes", {})]
    spearman = [e["mcc_spearman"] for _, e in entries]
    seconds = [e["seconds_fit"] for _, e in entries]
    return {
        "runs": len(entries),
        "mcc_spearman_mean": _mean(spearman), "mcc_spearman_min": min(spearman) if spearman else None,
        "mcc_pearson_mean": _mean([e["mcc_pearson"] for _, e in entries]),
        "shd_mean": _mean([e.get("shd") for _, e in entries]),
        "shd_rev2_mean": _mean([e.get("shd_rev2") for _, e in entries]),
        "r2_diag_mean": _mean([e.get("r2_diag") for _, e in entries]),
        "ceiling_corr_mean": _mean([r.get("ceiling_corr_mean") for r, _ in entries]),
        "ceiling_spearman_mean": _mean([r["ceiling"]["mcc_spearman"] for r, _ in entries if "ceiling" in r]),
        "within_ceiling_mean": _mean([e.get("within_ceiling") for _, e in entries]),
        "seconds_mean": _mean(seconds), "seconds_max": max(seconds) if seconds else None,
    }


def scene_summary(scene: str, runs: list[dict], routes: tuple[str, ...]) -> dict[str, Any]:
    summary = {"route": routes[0], **route_summary(runs, routes[0])}
    summary["plain_autoencoder_code_spearman_mean"] = _mean(
        [r["plain_autoencoder_code"]["mcc_spearman"] for r in runs if "plain_autoencoder_code" in r])
    summary["data_seconds_mean"] = _mean([r.get("data_seconds") for r in runs])
    summary["ceiling_seconds_mean"] = _mean([r["ceiling"]["seconds"] for r in runs if "ceiling" in r])
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    summary["goals_met"] = {name: summary.get(name) is not None and bool(ops[op](summary[name], value))
                            for name, (op, value) in GOALS.get(scene, {}).items()}
    summary["routes"] = {route: route_summary(runs, route) for route in routes[1:]}
    return summary


def scene_figure(scene: str, runs: list[dict], route: str, path: Path) -> str:
    """Spearman and Pearson MCC of ``route`` per run (bars), the supervised ceiling (black ticks), the
    other routes and the plain autoencoder code (markers), the scene's Spearman goal (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in runs if route in r.get("routes", {})]
    labels = [r["label"] for r in runs]
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * max(1, len(runs)), 3.6))
    for offset, key, name in ((-0.18, "mcc_spearman", "Spearman MCC"), (0.18, "mcc_pearson", "Pearson MCC")):
        ax.bar(x + offset, [r["routes"][route][key] for r in runs], width=0.36, label=f"{route}: {name}")
    ceilings = [r.get("ceiling_corr_mean") for r in runs]
    if any(c is not None for c in ceilings):
        ax.hlines([c if c is not None else np.nan for c in ceilings], x - 0.4, x + 0.4, colors="k", linewidth=2,
                  label="supervised ceiling (mean corr)")
    others = sorted({k for r in runs for k in r["routes"]} - {route})
    for k, other in enumerate(others):
        ax.plot(x, [r["routes"].get(other, {}).get("mcc_spearman", np.nan) for r in runs], "o",
                color=f"C{k + 2}", label=f"{other}: Spearman MCC")
    ax.plot(x, [r.get("plain_autoencoder_code", {}).get("mcc_spearman", np.nan) for r in runs], "x", color="0.4",
            label="plain autoencoder code")
    goal = GOALS.get(scene, {}).get("mcc_spearman_mean")
    if goal:
        ax.axhline(goal[1], color="0.5", linestyle="--", linewidth=1, label=f"goal (mean) {goal[1]}")
    values = [r["routes"][route][k] for r in runs for k in ("mcc_spearman", "mcc_pearson")]
    low = min([*values, *(c for c in ceilings if c is not None), 0.9]) if values else 0.9
    ax.set_ylim(max(0.0, low - 0.03), 1.005)
    ax.set_xticks(x, labels)
    ax.set_ylabel("correlation (test frames)")
    ax.set_title(f"{scene}: image CRL per run")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def load_results(path: Path) -> dict[str, Any]:
    import json

    if path.exists() and path.stat().st_size:
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return data
        except json.JSONDecodeError:
            pass
    return {}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    per_regime = cfg.per_regime or int(PRESETS[cfg.preset]["max_per_regime"])
    out = Path(cfg.out)
    report = load_results(out)
    scenes: dict[str, Any] = dict(report.get("scenes") or {})
    report.update({
        "description": "Image CRL (causal_wm.crl.images.fit_image_crl) from frames and regime labels: observational "
                       "regime + two mean-shift hard interventions per node, collected with causal_wm.collect "
                       "(balanced). Scored on fresh observational frames with their true latents: MCC with "
                       "Hungarian matching (Pearson, Spearman), R^2 diag/sep, SHD after the Pearson-MCC matching "
                       "('shd': reversal 1, 'shd_rev2': reversal 2). Supervised ceiling: the same CNN trained to "
                       "regress the true latents from the same collection's frames. Summaries: the default route "
                       "(summary.route), means over runs (Balls-v0: one run per graph seed).",
        "settings": {**dataclasses.asdict(cfg), "per_regime": per_regime, "preset_settings": PRESETS[cfg.preset]},
        "machine": machine_info(device=str(device), torch_threads=cfg.threads),
        "goals": {scene: {k: f"{op} {v:g}" for k, (op, v) in goals.items()} for scene, goals in GOALS.items()},
        "note": cfg.note,
    })
    plan = scene_runs(cfg)
    # a scene's runs describe one set of settings: runs of other settings of a scene being run are dropped
    for scene in cfg.scenes:
        keys = [run_key(cfg, s, g, kw, per_regime) for s, g, kw in plan if s == scene]
        prev = (scenes.get(scene) or {}).get("runs", [])
        common = _without_graph_seed(keys[0])
        kept = [r for r in prev if _without_graph_seed(r.get("key", {})) == common]
        scenes[scene] = {"runs": kept, "summary": scene_summary(scene, kept, cfg.routes)}
    report["scenes"] = scenes
    write_json(out, report, indent=1, default=float)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(cfg.data_dir) if cfg.data_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        first_of_scene: set[str] = set()
        for scene, graph_seed, env_kwargs in plan:
            key = run_key(cfg, scene, graph_seed, env_kwargs, per_regime)
            runs = scenes[scene]["runs"]
            record = next((r for r in runs if r.get("key") == key), None)
            figures = scene not in first_of_scene
            first_of_scene.add(scene)
            done = record is not None and set(cfg.routes) <= set(record.get("routes", {})) and \
                (not cfg.ceiling or "ceiling" in record)
            label = "(fixed graph)" if graph_seed is None else f"graph seed {graph_seed}"
            if done:
                print(f"{scene} {label}: in {out} with these settings, skipped")
                continue
            if record is None:
                record = {"key": key, "scene": scene, "graph_seed": graph_seed,
                          "label": "-" if graph_seed is None else f"g{graph_seed}"}
                runs.append(record)
            run_one(cfg, scene, graph_seed, env_kwargs, per_regime, folder, out, device, record, figures)
            runs.sort(key=lambda r: (r["graph_seed"] is None, r["graph_seed"] or 0))
            scenes[scene]["summary"] = scene_summary(scene, runs, cfg.routes)
            write_json(out, report, indent=1, default=float)
            ceiling = record.get("ceiling_corr_mean")
            for route in cfg.routes:
                m = record["routes"][route]
                print(f"{scene} {label} {route}: Spearman MCC {m['mcc_spearman']:.4f}, Pearson MCC "
                      f"{m['mcc_pearson']:.4f}, SHD {m.get('shd')} (rev. 2: {m.get('shd_rev2')}), "
                      f"ceiling {'-' if ceiling is None else f'{ceiling:.4f}'}, fit {m['seconds_fit']:.0f} s, "
                      f"data {record['data_seconds']:.0f} s", flush=True)
    for scene in cfg.scenes:
        entry = scenes[scene]
        if entry["runs"]:
            entry["plot"] = scene_figure(scene, entry["runs"], cfg.routes[0],
                                         out.parent / f"image_crl_{scene.split('-')[0].lower()}_runs.png")
        s = entry["summary"]
        if s["runs"]:
            met = [k for k, v in s["goals_met"].items() if v]
            print(f"{scene} ({s['route']}, {s['runs']} runs): Spearman MCC mean {s['mcc_spearman_mean']:.4f} "
                  f"(min {s['mcc_spearman_min']:.4f}), Pearson {s['mcc_pearson_mean']:.4f}, SHD "
                  f"{s['shd_mean']:.2f}, ceiling {s['ceiling_corr_mean'] or float('nan'):.4f}, fit "
                  f"{s['seconds_mean']:.0f} s; goals met: {len(met)} of {len(s['goals_met'])}")
    write_json(out, report, indent=1, default=float)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
