"""The end-to-end demo behind ``causal-wm demo``: seeing and acting data from Balls-v0, causal
representation learning from the images, evaluation against the ground truth, and a report.

    from causal_wm.demo import run_demo
    summary = run_demo("causal_wm_demo", preset="cpu")   # writes report.md, summary.json and PNGs

Every stage resumes after an interruption: the collection continues its HDF5 file and the learner
its checkpoints, so running the same command again picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causal_wm.config import config_dict, resolve_config
from causal_wm.world_model.config import PRESETS as WORLD_MODEL_PRESETS
from causal_wm.world_model.config import WorldModelConfig


@dataclass
class DemoConfig:
    """Settings of ``run_demo`` (presets in ``DEMO_PRESETS``, named overrides of these defaults)."""

    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """settings of the learners: the causal world model, its image CRL stage in world_model.crl"""
    per_regime: int = 4000
    """frames of every regime collected"""
    test_frames: int = 2000
    """fresh frames the learned representation is scored on"""
    samples: int = 1000
    """samples per intervention when imagined and real interventions are compared"""
    plan_steps: int = 500
    """env steps of each planner"""
    agent_steps: int = 100_000
    """PPO steps of the agent on the learned causal features"""


DEMO_PRESETS: dict[str, dict[str, Any]] = {
    "debug": {"world_model": WORLD_MODEL_PRESETS["debug"], "per_regime": 150, "test_frames": 400, "samples": 200,
              "plan_steps": 40, "agent_steps": 512},
    # fits the demo's budget of five minutes on 2 CPU cores: the world model's cpu preset on its 20,000
    # frames per regime with a shorter autoencoder schedule, one read-out map and no end-to-end stage (the
    # fitter's cpu preset, with both, is what scripts/bench_image_crl.py measures)
    "cpu": {"world_model": WORLD_MODEL_PRESETS["cpu"], "world_model.crl.ae_max_per_regime": 1200,
            "world_model.crl.ae_epochs": 10, "world_model.crl.readout_members": 1, "world_model.crl.e2e_epochs": 0,
            "per_regime": 20_000, "test_frames": 2000, "samples": 1000, "plan_steps": 500, "agent_steps": 100_000},
    "full": {"world_model": WORLD_MODEL_PRESETS["full"], "per_regime": 10_000, "test_frames": 5000, "samples": 2000,
             "plan_steps": 500, "agent_steps": 100_000},
}


def make_demo_config(preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> DemoConfig:
    """The demo preset's config with ``overrides`` (dotted keys, e.g. ``{"world_model.crl.ae_epochs": 5}``)."""
    config = resolve_config(DemoConfig, DEMO_PRESETS, preset, overrides)
    config.world_model.validate()
    return config


ENV_ID = "causal_wm/Balls-v0"


def _scalars(metrics: dict[str, Any]) -> dict[str, float | int]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


STAGES = ("collecting seeing and acting data", "learning the causal representation from the images",
          "scoring the representation against the ground truth", "fitting the causal world model",
          "imagining joint interventions the data never showed", "planning interventions",
          "training the PPO agent")


def run_demo(out: str | Path = "causal_wm_demo", *, preset: str = "cpu", seed: int = 0, device: str = "auto",
             num_balls: int = 3, graph_seed: int = 0, progress: bool = True, agent: bool = True,
             overrides: Mapping[str, Any] | None = None,
             on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Collect, learn, evaluate, plan, train an agent and report; returns the JSON summary (also
    written to ``out/summary.json``; the report is ``out/report.md``).

    Args:
        out: output folder (created).
        preset: ``"debug"`` (seconds), ``"cpu"`` (minutes on a CPU), ``"full"`` (published size, GPU).
        seed: seeds collection, learning, planning and the agent.
        device: torch device for learning (``"auto"``: CUDA when present).
        num_balls, graph_seed: the scene (``n = 2 * num_balls`` latents; the latent DAG is drawn from
            ``graph_seed``).
        agent: train the short PPO agent on the learned causal features.
        overrides: settings on top of the preset (``DemoConfig`` fields, dotted for nested ones:
            ``{"world_model.crl.max_per_regime": 2000}``); the resolved config goes into the report.
        on_stage: called with the name of every stage as it starts (``STAGES``); with ``progress`` a
            heading ``[k/N] stage`` is printed too.
    """
    import gymnasium as gym
    import torch

    import causal_wm
    from causal_wm.agents.evaluation import compare_planners
    from causal_wm.crl.images import evaluate_image_crl, fit_image_crl, image_crl_figures
    from causal_wm.viz import image_grid
    from causal_wm.world_model import CausalWorldModel
    from causal_wm.world_model.scoring import intervention_errors, world_model_figures

    settings = make_demo_config(preset, overrides)
    stages = [st for st in STAGES if agent or st != STAGES[-1]]

    def begin(name: str) -> None:
        if on_stage is not None:
            on_stage(name)
        if progress:
            print(f"[{stages.index(name) + 1}/{len(stages)}] {name}", flush=True)

    if preset == "debug" and progress:
        print("preset debug: a smoke test of every stage in seconds; its numbers mean nothing", flush=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # The learner needs the observational regime and the two hard interventions of every node;
    # the do entries of the default menu are left out of the data (the world model imagines them).
    scene_kwargs = {"num_balls": num_balls, "graph_seed": graph_seed}
    env_kwargs = {**scene_kwargs, "do_values": ()}
    env = gym.make(ENV_ID, **env_kwargs)
    scene = env.unwrapped
    graph = np.asarray(scene.graph)
    names = list(scene.node_names)

    begin(STAGES[0])
    t0 = time.perf_counter()
    dataset = causal_wm.collect(ENV_ID, None, out / "balls.h5", policy="balanced",
                                per_regime=settings.per_regime, seed=seed, env_kwargs=env_kwargs,
                                progress=progress)
    seconds["collect"] = time.perf_counter() - t0

    figures: dict[str, str] = {}
    by_regime = dataset.by_regime()
    regimes = sorted(by_regime)
    samples = np.stack([dataset.observations(np.sort(by_regime[r][:8])) for r in regimes])
    labels = ["seeing" if dataset.menu[r] is None else dataset.menu[r].label() for r in regimes]
    figures["samples"] = str(out / "samples.png")
    colours = ", ".join(f"ball {b} {_colour_name(c)}" for b, c in enumerate(scene.renderer.colors))
    image_grid(samples, row_labels=labels, title=f"Balls-v0: one row per regime ({colours})",
               path=figures["samples"])

    # 1. causal representation learning from the images
    begin(STAGES[1])
    t0 = time.perf_counter()
    model = fit_image_crl(dataset, preset=preset, config=settings.world_model.crl, device=device, seed=seed,
                          checkpoint_dir=out / "checkpoints", progress=progress)
    seconds["learn"] = time.perf_counter() - t0
    model.save(out / "image_crl.pt")

    begin(STAGES[2])
    t0 = time.perf_counter()
    z_test = scene.scm.sample(settings.test_frames, None, seed=10_000 + seed)
    x_test = scene.renderer(z_test)
    metrics = evaluate_image_crl(model, x_test, z_test, graph)
    figures.update(image_crl_figures(model, metrics, graph, out, "learned", names=names, frames=x_test))
    seconds["evaluate"] = time.perf_counter() - t0

    # 2. the causal world model on top: mechanisms, interventions, calibration
    begin(STAGES[3])
    t0 = time.perf_counter()
    world_model = CausalWorldModel.fit(dataset, representation=model, config=settings.world_model, seed=seed,
                                       progress=progress)
    world_model.save(out / "world_model.pt")
    # interventions of the default menu: the do entries never occur in the data
    menu_env = gym.make(ENV_ID, **scene_kwargs)
    rows = intervention_errors(world_model, menu_env, samples=settings.samples, seed=seed)
    in_data = {iv for iv in dataset.menu if iv is not None}
    imagined = {
        "seen": _mean_errors([r for a, r in enumerate(rows) if menu_env.unwrapped.interventions[a] in in_data]),
        "unseen": _mean_errors([r for a, r in enumerate(rows)
                                if a > 0 and menu_env.unwrapped.interventions[a] not in in_data]),
    }
    figures.update(world_model_figures(world_model, metrics, menu_env, out, "world_model", seed=seed,
                                       representation_figures=False))
    seconds["world_model"] = time.perf_counter() - t0

    # 2b. joint interventions the data never showed: the causal model against a non-causal one
    begin(STAGES[4])
    t0 = time.perf_counter()
    joint, joint_figures = _joint_panel(world_model, dataset, scene, out, samples=settings.samples, seed=seed,
                                        device=device, progress=progress)
    figures.update(joint_figures)
    seconds["joint_interventions"] = time.perf_counter() - t0

    # 3. planning on the reach task with the default menu (do interventions: never in the data)
    begin(STAGES[5])
    t0 = time.perf_counter()
    reach = gym.make(ENV_ID, **scene_kwargs, task="reach")
    planning = compare_planners(world_model, reach, steps=settings.plan_steps, seed=seed, progress=progress)
    figures["planning"] = str(out / "planning.png")
    _plot_planning(planning, figures["planning"])
    seconds["plan"] = time.perf_counter() - t0

    # 4. a short PPO agent on the learned causal features
    agent_summary: dict[str, Any] | None = None
    if agent:
        begin(STAGES[6])
        t0 = time.perf_counter()
        agent_summary = _train_agent(out, world_model_path=out / "world_model.pt", steps=settings.agent_steps,
                                     seed=seed, scene_kwargs=scene_kwargs, device=device)
        figures["agent"] = agent_summary.pop("figure")
        seconds["agent"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    env.close()

    summary = {
        "env_id": ENV_ID, "env_kwargs": env_kwargs, "preset": preset, "settings": config_dict(settings), "seed": seed,
        "device": str(model.device), "torch": torch.__version__, "package_version": causal_wm.__version__,
        "dataset": {"path": str(dataset.path), "rows": len(dataset), "regimes": len(regimes)},
        "true_graph": graph.tolist(), "learned_graph_aligned": np.asarray(model.graph)[
            np.ix_(metrics["permutation"], metrics["permutation"])].tolist(),
        "metrics": _scalars(metrics), "permutation": list(map(int, metrics["permutation"])),
        "diagnostics": {**{k: metrics[k] for k in ("pair_accuracy", "bayes_accuracy") if k in metrics},
                        "weak_latents": model.diagnostics.get("weak_latents", []),
                        "val_cross_entropy": model.diagnostics.get("readout", {}).get("val_cross_entropy"),
                        "reconstruction_mse": model.diagnostics.get("reconstruction_mse"),
                        "decoder_mse": model.diagnostics.get("decoder_mse")},
        "world_model": {"repr": repr(world_model), "imagined_interventions": imagined,
                        "persistence": world_model.persistence.tolist()},
        "joint_interventions": joint,
        "planning": {name: {**{k: r[k] for k in ("success_rate", "mean_reward", "mean_distance")},
                            "actions": _action_counts(r["action_counts"], reach.unwrapped.interventions)}
                     for name, r in planning["planners"].items()} | {"settings": planning["settings"]},
        "agent": agent_summary,
        "seconds": seconds, "figures": {k: Path(v).name for k, v in figures.items()},
    }
    dataset.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    (out / "report.md").write_text(_report(summary))
    return summary


def joint_interventions(scene: Any, max_count: int = 4, value: float = 1.5) -> list[Any]:
    """Two-node ``do`` interventions for the joint panel: pairs where one node causes the other (the
    mediator pairs, where adding up the two single effects is wrong) first, then other pairs; signs
    alternate so the values differ from any single-node entry of the data. Returns ``Intervention``s."""
    from causal_wm.scm import Intervention, ancestors

    n, names = scene.n, list(scene.node_names)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    related = [p for p in pairs if p[0] in ancestors(scene.graph, p[1]) or p[1] in ancestors(scene.graph, p[0])]
    ordered = related + [p for p in pairs if p not in related]
    out = []
    for k, (i, j) in enumerate(ordered[:max_count]):
        vi, vj = value, (-value if k % 2 else value)
        out.append(Intervention.do((i, j), (vi, vj), std=0.05, name=f"do({names[i]}={vi:g}, {names[j]}={vj:g})"))
    return out


def _joint_panel(world_model: Any, dataset: Any, scene: Any, out: Path, *, samples: int, seed: int, device: str,
                 progress: bool, max_rows: int = 20_000) -> tuple[dict[str, Any], dict[str, str]]:
    """Imagined vs real under joint interventions the data never showed, for the causal world model and
    the non-causal action-conditioned model (fitted on the same encoded frames, at most ``max_rows``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causal_wm.pixels import prepare_images, to_hwc_uint8
    from causal_wm.world_model.baseline import ActionConditionedModel
    from causal_wm.world_model.evaluation import distribution_distances

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(dataset))[: min(max_rows, len(dataset))])
    z = world_model.encode(dataset.observations(idx))
    menu = dataset.menu
    noncausal = ActionConditionedModel().fit(z, [menu[r] for r in dataset.regime[idx]], episode=dataset.episode[idx],
                                             step=dataset.step[idx], seed=seed, device=device, progress=progress)
    rows, pictures, labels = [], [], []
    for k, iv in enumerate(joint_interventions(scene)):
        z_true = scene.scm.sample(samples, iv, seed=seed + 31 * (k + 1))
        frames = scene.renderer(z_true)
        real = world_model.encode(frames)
        row: dict[str, Any] = {"intervention": iv.label()}
        imagined = {}
        for name, model in (("causal", world_model), ("noncausal", noncausal)):
            imagined[name] = model.sample(samples, iv, seed=seed + k)
            d = distribution_distances(imagined[name], real, seed=seed)
            row[name] = {"mmd": d["mmd"], "mean_error": d["mean_error"]}
        rows.append(row)
        real_frames = to_hwc_uint8(prepare_images(frames[:4], world_model.image_size))
        pictures.append([real_frames, world_model.decode(imagined["causal"][:4]),
                         world_model.decode(imagined["noncausal"][:4])])
        labels.append(iv.label())
    figures: dict[str, str] = {}
    if not rows:
        return {"interventions": []}, figures
    # frames: real | causal | non-causal, one row per intervention
    R = len(pictures)
    fig, axes = plt.subplots(R, 14, figsize=(14 * 0.9 + 1.8, 0.95 * R + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * 4 + [0.25] + [1] * 4 + [0.25] + [1] * 4})
    for r, blocks in enumerate(pictures):
        for b, block in enumerate(blocks):
            for c in range(4):
                ax = axes[r, b * 5 + c]
                ax.imshow(block[c])
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0 and c == 0:
                    ax.set_title(("real frames", "causal world model", "non-causal model")[b], loc="left",
                                 fontsize=9)
        for gap in (4, 9):
            axes[r, gap].axis("off")
        axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("joint interventions the data never showed: real vs imagined (decoded)", fontsize=10)
    fig.tight_layout()
    figures["joint_imagined"] = str(out / "joint_imagined.png")
    fig.savefig(figures["joint_imagined"], dpi=110)
    plt.close(fig)
    # errors: MMD and mean error per intervention, causal vs non-causal, values on the bars
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(R)
    for ax, key, label in ((axes[0], "mmd", "MMD (imagined vs real)"),
                           (axes[1], "mean_error", "mean error (learned units)")):
        for o, (name, color) in enumerate((("causal", "#0072B2"), ("noncausal", "#E69F00"))):
            values = [row[name][key] for row in rows]
            bars = ax.bar(x + (o - 0.5) * 0.38, values, 0.38, color=color,
                          label=name.replace("noncausal", "non-causal"))
            for bar, v in zip(bars, values, strict=True):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.2f}", ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(x, [lab.replace(", ", ",\n") for lab in labels], fontsize=7)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("error of the imagined distribution under unseen joint interventions (lower is better)",
                 fontsize=10)
    fig.tight_layout()
    figures["joint_errors"] = str(out / "joint_errors.png")
    fig.savefig(figures["joint_errors"], dpi=120)
    plt.close(fig)
    mean = {name: {key: float(np.mean([row[name][key] for row in rows])) for key in ("mmd", "mean_error")}
            for name in ("causal", "noncausal")}
    return {"interventions": rows, "mean": mean, "noncausal_rows": len(idx)}, figures


def _action_counts(counts: list[int], menu: list[Any], top: int = 3) -> dict[str, Any]:
    """The most chosen actions of a planner (label -> count), how many distinct actions it used, and
    whether it used a single one all along."""
    counts = np.asarray(counts)
    order = np.argsort(counts)[::-1][:top]
    labels = {("seeing" if menu[a] is None else menu[a].label()): int(counts[a]) for a in order if counts[a] > 0}
    return {"top": labels, "distinct": int(np.sum(counts > 0)), "constant": bool(np.sum(counts > 0) == 1)}


def _mean_errors(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("mmd", "gaussian_w2", "mean_error", "image_mse")
    return {k: float(np.mean([r[k] for r in rows])) for k in keys if rows and k in rows[0]} | {"count": len(rows)}


def _colour_name(rgb: tuple[int, int, int]) -> str:
    """A plain name for an RGB colour (the hue band), for figure keys."""
    import colorsys

    h, sat, _ = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    if sat < 0.2:
        return "grey"
    bands = ((0.04, "red"), (0.11, "orange"), (0.18, "yellow"), (0.45, "green"), (0.55, "cyan"), (0.72, "blue"),
             (0.80, "purple"), (0.93, "magenta"), (1.01, "red"))
    return next(name for edge, name in bands if h < edge)


def _plot_planning(planning: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(planning["planners"])
    runs = planning["planners"]
    s = planning["settings"]
    values = [runs[n]["success_rate"] for n in names]
    # binomial standard error of a success rate over the planner's steps
    errors = [float(np.sqrt(max(v * (1 - v), 0.0) / max(s["steps"], 1))) for v in values]
    colours = {"learned": "#0072B2", "oracle": "#000000", "random": "#999999"}
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    bars = ax.bar(names, values, yerr=errors, capsize=3, color=[colours.get(n, "#56B4E9") for n in names])
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.03, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(f"success (|goal - {s['goal_value']:g}| < {s['tolerance']:g})")
    ax.set_title(f"planning, {s['steps']} steps (± binomial s.e.)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _train_agent(out: Path, *, world_model_path: Path, steps: int, seed: int, scene_kwargs: dict[str, Any],
                 device: str) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causal_wm.agents.training import TrainConfig, train

    config = TrainConfig(env_id=ENV_ID, env_kwargs={**scene_kwargs, "task": "reach", "persistence": 0.9},
                         obs_type="causal", algo="ppo", total_timesteps=steps, seed=seed,
                         model_path=str(world_model_path), out=str(out / "agent"), device=device)
    result = train(config)
    curve = {"steps": result["steps"], "returns": result["returns"]}
    path = str(out / "agent_curve.png")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps_axis, returns = np.asarray(curve["steps"]), np.asarray(curve["returns"])
    if len(returns):
        window = max(1, len(returns) // 10)
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps_axis, returns, ".", alpha=0.3, color="#1f77b4")
        ax.plot(steps_axis[window - 1:], smooth, color="#1f77b4")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title("PPO on the learned causal features")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    first = float(np.mean(returns[: max(1, len(returns) // 5)])) if len(returns) else None
    last = float(np.mean(returns[-max(1, len(returns) // 5):])) if len(returns) else None
    return {"steps": steps, "episodes": len(returns), "return_first_fifth": first, "return_last_fifth": last,
            "figure": path, "run_dir": result.get("run_dir")}


def _checks(d: dict[str, Any]) -> list[str]:
    """The report's checks that need no ground truth: held-out pair accuracy against the design's Bayes
    accuracy per learned latent (a latent far below it is weak), regime cross-entropy, reconstruction."""
    acc, bayes = d.get("pair_accuracy"), d.get("bayes_accuracy")
    if not acc:
        return []
    lines = ["### Checks without ground truth", "",
             "Held-out accuracy of every learned latent's pair classifier (the two hard interventions on its "
             "node) next to the best any classifier can reach for that design (Bayes accuracy); a latent more "
             "than 0.03 below it is flagged weak.", "",
             "| learned latent | pair accuracy | Bayes accuracy | |", "|---|---|---|---|"]
    weak = set(d.get("weak_latents") or [])
    for k, a in enumerate(acc):
        b = None if not bayes else bayes[k]
        lines.append(f"| {k} | {a:.3f} | {'-' if b is None else f'{b:.3f}'} | {'weak' if k in weak else 'ok'} |")
    extra = [f"held-out regime cross-entropy {d['val_cross_entropy']:.4f} nats" if d.get("val_cross_entropy") else "",
             f"autoencoder reconstruction MSE {d['reconstruction_mse']:.5f}" if d.get("reconstruction_mse") else "",
             f"decode(encode(x)) MSE {d['decoder_mse']:.5f}" if d.get("decoder_mse") else ""]
    lines += ["", "; ".join(e for e in extra if e) + ".", ""]
    return lines


def _planning_note(p: dict[str, Any]) -> list[str]:
    """Whether the learned planner's match with the oracle means anything: a tie of two planners that
    each used one constant action says only that both found the same best fixed intervention."""
    learned, oracle = p.get("learned", {}).get("actions"), p.get("oracle", {}).get("actions")
    if not learned or not oracle:
        return []
    if learned["constant"] and oracle["constant"]:
        same = list(learned["top"]) == list(oracle["top"])
        return [f"Both planners used one constant action{' (the same one)' if same else ''}: in this scene the "
                "best intervention does not depend on the state, so matching the oracle means finding the best "
                "fixed intervention, not reacting to the state.", ""]
    return [f"The learned planner used {learned['distinct']} different actions, the oracle {oracle['distinct']}: "
            "the best action depends on the current state (persistent noise), so matching the oracle means "
            "reading the state from the frames.", ""]


def _joint_report(joint: dict[str, Any] | None, f: dict[str, str]) -> list[str]:
    if not joint or not joint.get("interventions"):
        return []
    lines = ["## Joint interventions never seen: causal vs non-causal", "",
             "Two nodes set at once (`do`), combinations absent from the data; pairs where one node causes the "
             "other come first (adding up their single effects double-counts the path between them). The "
             "non-causal model is an action-conditioned Gaussian network on the same encoded frames that reads "
             "each intervention through its description (targets, kind, values); the causal model composes "
             "its learned mechanisms. MMD: squared maximum mean discrepancy between imagined and encoded real "
             "latents (RBF kernel, median bandwidth; 0 = same distribution). Mean error: distance between the "
             "two means in learned units.", "",
             "| intervention | MMD causal | MMD non-causal | mean error causal | mean error non-causal |",
             "|---|---|---|---|---|"]
    for row in joint["interventions"]:
        c, nc = row["causal"], row["noncausal"]
        lines.append(f"| {row['intervention']} | {c['mmd']:.3f} | {nc['mmd']:.3f} | {c['mean_error']:.2f} | "
                     f"{nc['mean_error']:.2f} |")
    lines += ["", f"![joint errors]({f['joint_errors']})" if "joint_errors" in f else "", "",
              f"![joint imagined]({f['joint_imagined']})" if "joint_imagined" in f else "", ""]
    return lines


def _report(summary: dict[str, Any]) -> str:
    m, f, s = summary["metrics"], summary["figures"], summary["seconds"]
    rows = [("Spearman MCC", "mcc_spearman", "mean rank correlation of each true latent with its matched learned "
             "latent (best one-to-one matching); 1 = recovered up to permutation and monotone maps"),
            ("Pearson MCC", "mcc_pearson", "the same with linear correlation (1 = up to permutation and scaling)"),
            ("R² diag", "r2_diag", "mean R² of each true latent regressed (kernel ridge) on its matched learned "
             "latent alone"),
            ("R² sep", "r2_sep", "mean R² of each true latent on the other learned latents (low = separated, "
             "not entangled)"),
            ("SHD (reversal = 1)", "shd", "edges to add, delete or reverse to turn the learned graph into the true "
             "one, a reversal counting once"),
            ("SHD (reversal = 2)", "shd_rev2", "the same, a reversal counting twice (the published convention)"),
            ("edge precision", "edge_precision", "share of learned edges that are true edges"),
            ("edge recall", "edge_recall", "share of true edges that were learned")]
    table = "\n".join((f"| {label} | {m[key]:.3f} | {what} |" if isinstance(m.get(key), float)
                       else f"| {label} | {m.get(key)} | {what} |") for label, key, what in rows if key in m)
    w, p = summary["world_model"], summary["planning"]
    seen, unseen = w["imagined_interventions"]["seen"], w["imagined_interventions"]["unseen"]
    timing = ", ".join(f"{k} {v:.0f}" for k, v in s.items())
    lines = [
        "# causal_wm demo report",
        "",
        f"Scene `{summary['env_id']}` ({summary['env_kwargs']}), preset `{summary['preset']}`, seed "
        f"{summary['seed']}, device `{summary['device']}`. {summary['dataset']['rows']} frames in "
        f"{summary['dataset']['regimes']} regimes (seeing plus two hard interventions per latent).",
        "",
        "The learner saw frames and regime labels only; the true latents and graph were used for "
        "scoring, on fresh observational frames. SHD is counted after matching learned to true latents "
        "by MCC.",
        "",
        *(["> Preset `debug`: a smoke test of every stage in seconds on a tiny collection; its numbers "
            "mean nothing. Run `--preset cpu` (minutes) for numbers.", ""] if summary["preset"] == "debug" else []),
        "## Causal representation",
        "",
        "| metric | value | what it measures |",
        "|---|---|---|",
        table,
        "",
        *_checks(summary["diagnostics"]),
        "## Data: one row per regime",
        f"![samples]({f['samples']})",
        "",
        "## Correlation between true and learned latents",
        f"![mcc]({f['mcc']})",
        "",
        "## True graph and learned graph",
        f"![graph]({f['graph']})",
        "",
        "## Latent traversals (each learned latent from -2 to +2, decoded)",
        f"![traversals]({f['traversals']})",
        "",
    ]
    if "reconstructions" in f:
        lines += ["## Reconstructions", f"![reconstructions]({f['reconstructions']})", ""]
    lines += [
        "## Causal world model: imagined interventions",
        "",
        f"`{w['repr']}`. Distance between the latents the model imagines under an intervention and the "
        "encoded frames of the true scene under it (MMD, RBF kernel with the median bandwidth; mean error "
        "in learned units), for the interventions of the data and for the do interventions of the "
        "default menu, which the data never showed:",
        "",
        "| interventions | count | MMD | mean error | image MSE |",
        "|---|---|---|---|---|",
        f"| in the data | {seen.get('count')} | {seen.get('mmd', float('nan')):.4f} | "
        f"{seen.get('mean_error', float('nan')):.3f} | {seen.get('image_mse', float('nan')):.5f} |",
        f"| never seen | {unseen.get('count')} | {unseen.get('mmd', float('nan')):.4f} | "
        f"{unseen.get('mean_error', float('nan')):.3f} | {unseen.get('image_mse', float('nan')):.5f} |",
        "",
        f"![imagined]({f['imagined']})" if "imagined" in f else "",
        "",
        *_joint_report(summary.get("joint_interventions"), f),
        "## Planning interventions",
        "",
        f"Reach task: bring node {p['settings']['goal_node']} to {p['settings']['goal_value']:g} by intervening "
        f"on its ancestors ({p['settings']['steps']} steps per planner; success = within "
        f"{p['settings']['tolerance']:g}). The learned planner sees frames only and imagines every action with "
        "the world model; the oracle runs the same planner with the true SCM and latents.",
        "",
        "| planner | success rate | mean reward | actions used | most chosen (count) |",
        "|---|---|---|---|---|",
        *[f"| {name} | {p[name]['success_rate']:.3f} | {p[name]['mean_reward']:.3f} | "
          f"{p[name].get('actions', {}).get('distinct', '-')} | "
          + ", ".join(f"{k} ({v})" for k, v in p[name].get("actions", {}).get("top", {}).items()) + " |"
          for name in ("learned", "oracle", "random") if name in p],
        "",
        *_planning_note(p),
        f"![planning]({f['planning']})" if "planning" in f else "",
        "",
    ]
    a = summary.get("agent")
    if a:
        lines += [
            "## An agent on the learned causal features",
            "",
            f"PPO for {a['steps']} env steps on the reach task with persistence 0.9, observing the learned "
            f"latents: mean episode return {a['return_first_fifth']:.2f} over the first fifth of its episodes, "
            f"{a['return_last_fifth']:.2f} over the last fifth.",
            "",
            f"![agent]({f['agent']})" if "agent" in f else "",
            "",
        ]
    lines += [f"Seconds: {timing}.", "",
              f"## Settings (preset `{summary['preset']}`, resolved)", "",
              "Every value can be changed with `causal-wm demo --set KEY=VALUE` (e.g. "
              "`--set world_model.crl.max_per_regime=2000`).", "",
              "```json", json.dumps(summary["settings"], indent=1), "```", ""]
    return "\n".join(lines)
