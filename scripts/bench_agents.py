"""Benchmark PPO on a causal scene's reach task with four observation types: pixels (SB3's NatureCNN),
a learned causal encoder, a plain autoencoder of the same latent size trained on the same frames
(the non-causal baseline) and the true latents (the oracle ceiling).

Every observation type gets the same budget of env steps, the same PPO settings and the same seeds.
Learning curves are smoothed with a moving window over env steps (mean return of the episodes that
ended in the last ``window`` steps, on a grid). Returns are negative (``-|z_goal - goal|`` per
step), so the target is defined on the scale from a uniformly random policy to the oracle:

    threshold = random + 0.9 * (oracle_final - random)

where ``random`` is the mean episode return of uniformly random actions and ``oracle_final`` is the
final smoothed return of the true-latent agent (mean over seeds). For every run the JSON records the
env steps at which its smoothed curve first reaches the threshold, and the same for the seed-mean
curve of every observation type. The goal: the causal-encoder agent reaches it in at most a fifth of
the pixel agent's steps and before the plain autoencoder agent. For reference, the one-step planner
with the true SCM (``agents/planners.py``) is evaluated on the same task.

Results are merged into ``benchmarks/results/agents.json`` after every run (an interrupted benchmark
resumes and skips finished runs of the same settings); the curves go to
``benchmarks/results/agents_curves.png``, TensorBoard logs and monitor files to ``--runs-dir``.

    nice python scripts/bench_agents.py --model-path model.pt --dataset balls.h5
    python scripts/bench_agents.py --quick          # smoke test: tiny budgets, trains its own tiny models,
                                                    # writes under ./bench_out/agents/
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch

import causal_wm
from causal_wm.agents.planners import OneStepPlanner
from causal_wm.agents.training import PlainAutoencoder, TrainConfig, algo_settings, train
from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.device import machine_info

OBS_TYPES = ("pixels", "causal", "autoencoder", "true")
ENCODER_TYPES = ("causal", "autoencoder")
# the SCM's task settings; a data collection for the encoders uses the same scene without them
TASK_KEYS = ("task", "persistence", "goal_node", "goal_value", "allow_goal_interventions")


@dataclass
class BenchConfig:
    """Settings of the agents benchmark."""

    env_id: str = "causal_wm/Balls-v0"
    """the scene with a learned encoder"""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"task": "reach", "persistence": 0.9})
    """gym.make keyword arguments of the task"""
    second_env_id: str = ""
    """a second scene without a trained encoder (e.g. causal_wm/Shadow-v0): pixels and true latents only"""
    second_env_kwargs: dict[str, Any] = field(default_factory=lambda: {"task": "reach", "persistence": 0.9})
    """gym.make keyword arguments of the second scene"""
    second_model_path: str = ""
    """a saved causal model of the second scene: then its causal and autoencoder types run too"""
    second_dataset: str = ""
    """the frames the second scene's causal model was trained on (its plain autoencoder trains on them)"""
    obs_types: str = "pixels,causal,autoencoder,true"
    """comma-separated observation types to run"""
    seeds: int = 3
    """seeds per observation type (0, 1, ...)"""
    total_timesteps: int = 200_000
    """env steps per run (the same for every observation type)"""
    n_envs: int = 8
    """parallel envs per run"""
    model_path: str = ""
    """a saved causal model (ImageCRLResult / CausalWorldModel); empty: collect data and fit one"""
    dataset: str = ""
    """the frames the causal model was trained on (the autoencoder baseline trains on them); empty: collect"""
    crl_preset: str = "cpu"
    """fit_image_crl preset when the script fits its own causal model"""
    crl_per_regime: int = 1500
    """frames per regime of the script's own collection"""
    ae_per_regime: int = 1000
    """frames per regime on which the plain autoencoder trains (a seeded subset)"""
    ae_epochs: int = 10
    """epochs of the plain autoencoder"""
    ae_image_size: int = 32
    """model resolution of the plain autoencoder (that of the causal model is recorded next to it)"""
    window: int = 0
    """smoothing window in env steps (0: total_timesteps / 20)"""
    grid_points: int = 100
    """points of the smoothed curve grid"""
    random_episodes: int = 200
    """episodes of the random policy (the 0 of the return scale)"""
    planner_episodes: int = 20
    """episodes of the oracle one-step planner (reference only)"""
    runs_dir: str = "runs/bench_agents"
    """TensorBoard logs, monitor files, agents and the script's own models"""
    output: str = str(RESULTS_DIR / "agents.json")
    """the results JSON (the PNG is written next to it)"""
    device: str = "auto"
    """torch device"""
    quick: bool = False
    """smoke test: tiny budgets, debug-preset models; writes under ./bench_out/agents/"""


# the defaults of a --quick run (options given explicitly still win)
QUICK = {"seeds": 1, "total_timesteps": 1024, "n_envs": 2, "crl_preset": "debug", "crl_per_regime": 150,
         "ae_per_regime": 60, "ae_epochs": 1, "random_episodes": 4, "planner_episodes": 1, "grid_points": 10,
         "output": str(quick_dir("agents") / "agents.json"), "runs_dir": str(quick_dir("agents") / "runs")}


def scene_name(env_id: str) -> str:
    return env_id.split("/")[-1]


# --- models -----------------------------------------------------------------------------------------
def data_env_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The scene of the task without the task, with the mean-shift menu only (the encoder's data)."""
    return {**{k: v for k, v in env_kwargs.items() if k not in TASK_KEYS}, "do_values": []}


def prepare_encoders(config: BenchConfig, runs_dir: Path) -> dict[str, Any]:
    """The causal model path and the plain autoencoder path (trained here on the causal model's data)."""
    from causal_wm.agents.wrappers import load_encoder_model
    from causal_wm.data import Dataset

    info: dict[str, Any] = {}
    runs_dir.mkdir(parents=True, exist_ok=True)
    dataset_path = config.dataset
    if not dataset_path:
        dataset_path = str(runs_dir / "encoder_data.h5")
        start = time.perf_counter()
        causal_wm.collect(config.env_id, None, dataset_path, policy="balanced", per_regime=config.crl_per_regime,
                          env_kwargs=data_env_kwargs(config.env_kwargs), seed=0, progress=not config.quick)
        info["collect_s"] = time.perf_counter() - start
    dataset = Dataset(dataset_path)
    model_path = config.model_path
    if not model_path:
        from causal_wm.crl.images import fit_image_crl

        model_path = str(runs_dir / f"causal_{config.crl_preset}.pt")
        if not Path(model_path).exists():
            start = time.perf_counter()
            fit_image_crl(dataset, preset=config.crl_preset, device=config.device, seed=0,
                          progress=not config.quick).save(model_path)
            info["causal_fit_s"] = time.perf_counter() - start
    model = load_encoder_model(model_path, device="cpu")
    n = int(model.n)
    info["causal"] = {"path": str(model_path), "kind": type(model).__name__, "n": n,
                      "image_size": getattr(model, "image_size", None),
                      "trained_here": not config.model_path}
    info["dataset"] = {"path": str(dataset_path), "rows": len(dataset), "env_id": dataset.env_id,
                       "env_kwargs": dataset.env_kwargs, "collected_here": not config.dataset}

    ae_path = runs_dir / f"plain_autoencoder_n{n}_{config.ae_per_regime}x{config.ae_epochs}.pt"
    if not ae_path.exists():
        rng = np.random.default_rng(0)
        rows = np.concatenate([np.sort(rng.choice(r, min(config.ae_per_regime, len(r)), replace=False))
                               for r in dataset.by_regime().values()])
        rows = np.sort(rows)
        frames = dataset.observations(rows)
        start = time.perf_counter()
        ae = PlainAutoencoder.fit(frames, n, image_size=config.ae_image_size, epochs=config.ae_epochs, seed=0,
                                  device=config.device, progress=not config.quick)
        ae.save(ae_path)
        info["autoencoder_fit_s"] = time.perf_counter() - start
    ae = PlainAutoencoder.load(ae_path)
    info["autoencoder"] = {"path": str(ae_path), "settings": ae.settings}
    dataset.close()
    return info


# --- references -------------------------------------------------------------------------------------
def reference_returns(env_id: str, env_kwargs: dict[str, Any], random_episodes: int, planner_episodes: int
                      ) -> dict[str, Any]:
    """Mean episode return of uniformly random actions and of the oracle one-step planner."""
    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(12345)
    random_returns = []
    for e in range(random_episodes):
        env.reset(seed=10_000 + e)
        total, done = 0.0, False
        while not done:
            _, r, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + r, terminated or truncated
        random_returns.append(total)
    out: dict[str, Any] = {"random_return": float(np.mean(random_returns)),
                           "random_return_sem": float(np.std(random_returns) / np.sqrt(len(random_returns))),
                           "random_episodes": random_episodes}
    if planner_episodes > 0:
        planner = OneStepPlanner.oracle(env, seed=0)
        planner_returns = []
        for e in range(planner_episodes):
            _, info = env.reset(seed=20_000 + e)
            total, done = 0.0, False
            while not done:
                action = planner.act(info["z"], info["regime"])
                _, r, terminated, truncated, info = env.step(action)
                total, done = total + r, terminated or truncated
            planner_returns.append(total)
        out["planner_oracle_return"] = float(np.mean(planner_returns))
        # without the current state the planner can only pick the best fixed intervention: the gap to the
        # planner above is what an agent gains from reading the state
        blind = OneStepPlanner.oracle(env, seed=0)
        blind_returns = []
        for e in range(planner_episodes):
            env.reset(seed=20_000 + e)
            total, done = 0.0, False
            while not done:
                _, r, terminated, truncated, _ = env.step(blind.act())
                total, done = total + r, terminated or truncated
            blind_returns.append(total)
        out["planner_without_state_return"] = float(np.mean(blind_returns))
        out["planner_episodes"] = planner_episodes
    env.close()
    return out


# --- curves -----------------------------------------------------------------------------------------
def smooth(steps: list[int], returns: list[float], grid: np.ndarray, window: int) -> list[float | None]:
    """Mean return of the episodes that ended in ``(t - window, t]`` for every grid point ``t`` (None: none)."""
    s, r = np.asarray(steps), np.asarray(returns, dtype=np.float64)
    out: list[float | None] = []
    for t in grid:
        mask = (s > t - window) & (s <= t)
        out.append(float(r[mask].mean()) if mask.any() else None)
    return out


def first_crossing(grid: list[int], curve: list[float | None], threshold: float) -> int | None:
    for t, v in zip(grid, curve, strict=True):
        if v is not None and v >= threshold:
            return int(t)
    return None


def mean_curve(curves: list[list[float | None]]) -> list[float | None]:
    out: list[float | None] = []
    for values in zip(*curves, strict=True):
        out.append(None if any(v is None for v in values) else float(np.mean(values)))
    return out


def summarize(report: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    """Thresholds, steps to the threshold per run and per seed-mean curve, and the goal check."""
    summary: dict[str, Any] = {}
    for scene, refs in report["references"].items():
        runs = {k: v for k, v in report["runs"].items() if v["scene"] == scene}
        true_runs = [v for v in runs.values() if v["obs_type"] == "true"]
        scene_summary: dict[str, Any] = {"random_return": refs["random_return"]}
        if not true_runs:
            summary[scene] = scene_summary
            continue
        oracle_final = float(np.mean([v["final_smoothed_return"] for v in true_runs]))
        threshold = refs["random_return"] + 0.9 * (oracle_final - refs["random_return"])
        scene_summary.update(oracle_final_return=oracle_final, threshold=threshold)
        per_type: dict[str, Any] = {}
        for obs_type in OBS_TYPES:
            typed = sorted((v for v in runs.values() if v["obs_type"] == obs_type), key=lambda v: v["seed"])
            if not typed:
                continue
            grid = typed[0]["grid"]
            curve = mean_curve([v["smoothed"] for v in typed])
            crossings = [first_crossing(v["grid"], v["smoothed"], threshold) for v in typed]
            per_type[obs_type] = {
                "seeds": [v["seed"] for v in typed],
                "steps_to_threshold_per_seed": crossings,
                "steps_to_threshold_mean_curve": first_crossing(grid, curve, threshold),
                "final_smoothed_return_per_seed": [v["final_smoothed_return"] for v in typed],
                "final_smoothed_return_mean": float(np.mean([v["final_smoothed_return"] for v in typed])),
                "steps_per_s_mean": float(np.mean([v["steps_per_s"] for v in typed])),
            }
            for v in typed:
                v["steps_to_threshold"] = first_crossing(v["grid"], v["smoothed"], threshold)
        scene_summary["obs_types"] = per_type
        if {"pixels", "causal", "autoencoder"} <= set(per_type):
            budget = config.total_timesteps
            causal = per_type["causal"]["steps_to_threshold_mean_curve"]
            pixels = per_type["pixels"]["steps_to_threshold_mean_curve"]
            autoencoder = per_type["autoencoder"]["steps_to_threshold_mean_curve"]
            # a curve that never reaches the threshold counts as "more than the budget"
            pixel_bound = pixels if pixels is not None else budget
            ae_bound = autoencoder if autoencoder is not None else budget + 1
            within_fifth = causal is not None and causal <= pixel_bound / 5
            before_ae = causal is not None and causal < ae_bound
            scene_summary["goal"] = {
                "causal_steps": causal, "pixels_steps": pixels, "autoencoder_steps": autoencoder,
                "causal_over_pixels": None if causal is None or pixels is None else causal / pixels,
                "causal_within_a_fifth_of_pixels": within_fifth,
                "pixels_lower_bound_used": pixels is None,
                "causal_before_autoencoder": before_ae,
                "met": bool(within_fifth and before_ae),
            }
        summary[scene] = scene_summary
    return summary


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = list(report["references"])
    fig, axes = plt.subplots(1, len(scenes), figsize=(6.5 * len(scenes), 4.2), squeeze=False)
    colors = {"pixels": "tab:gray", "causal": "tab:red", "autoencoder": "tab:blue", "true": "tab:green"}
    for ax, scene in zip(axes[0], scenes, strict=True):
        refs = report["references"][scene]
        for obs_type in OBS_TYPES:
            typed = [v for v in report["runs"].values() if v["scene"] == scene and v["obs_type"] == obs_type]
            if not typed:
                continue
            grid = np.asarray(typed[0]["grid"])
            curves = np.array([[np.nan if x is None else x for x in v["smoothed"]] for v in typed])
            mean = np.nanmean(curves, axis=0)
            ax.plot(grid, mean, color=colors[obs_type], label=f"{obs_type} ({len(typed)} seeds)")
            if len(typed) > 1:
                ax.fill_between(grid, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), color=colors[obs_type],
                                alpha=0.15, linewidth=0)
        ax.axhline(refs["random_return"], color="k", linestyle=":", linewidth=1, label="random policy")
        if "planner_oracle_return" in refs:
            ax.axhline(refs["planner_oracle_return"], color="tab:green", linestyle="--", linewidth=1,
                       label="one-step planner, true SCM")
        if "planner_without_state_return" in refs:
            ax.axhline(refs["planner_without_state_return"], color="tab:purple", linestyle="--", linewidth=1,
                       label="best fixed intervention (planner without state)")
        threshold = report.get("summary", {}).get(scene, {}).get("threshold")
        if threshold is not None:
            ax.axhline(threshold, color="tab:orange", linestyle="-.", linewidth=1, label="90% threshold")
        ax.set_title(f"{scene}: PPO, smoothed episode return")
        ax.set_xlabel("env steps")
        ax.set_ylabel("episode return (50 steps)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the benchmark ----------------------------------------------------------------------------------
def run(config: BenchConfig) -> dict[str, Any]:
    torch.set_num_threads(1)
    obs_types = [t.strip() for t in config.obs_types.split(",") if t.strip()]
    unknown = sorted(set(obs_types) - set(OBS_TYPES))
    if unknown:
        raise ValueError(f"unknown obs_types {unknown}; choose from {OBS_TYPES}")
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(config.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    window = config.window or max(1, config.total_timesteps // 20)
    grid = np.linspace(config.total_timesteps / config.grid_points, config.total_timesteps, config.grid_points)
    grid = np.round(grid).astype(int)
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("output", "runs_dir", "device")}
    settings.update(window=window, ppo=algo_settings("ppo", config.total_timesteps, config.n_envs))
    # runs are keyed by scene, observation type and seed, so adding a scene, a type or seeds keeps the others
    extendable = ("second_env_id", "second_env_kwargs", "second_model_path", "second_dataset", "obs_types", "seeds")

    def fixed(s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k not in extendable}

    report: dict[str, Any] = {}
    if output.exists():
        previous = json.loads(output.read_text())
        if fixed(previous.get("settings", {})) == fixed(settings):
            report = previous  # resume: finished runs are kept and skipped
    report.update(benchmark="agents", settings=settings, machine=machine_info(gymnasium=gym.__version__,
                                                                    stable_baselines3=stable_baselines3.__version__))
    report.setdefault("runs", {})
    report.setdefault("references", {})
    report["definitions"] = {
        "smoothed": f"mean return of the episodes that ended in the last {window} env steps, on a grid of "
                    f"{config.grid_points} points",
        "final_smoothed_return": "the last grid point of the smoothed curve",
        "threshold": "random_return + 0.9 * (oracle_final_return - random_return); random_return: uniformly random "
                     "actions; oracle_final_return: final smoothed return of the true-latent agents (mean over seeds)",
        "steps_to_threshold": "first grid point where the smoothed curve (of one seed, or the mean over seeds) is "
                              ">= threshold; null: not reached within the budget",
        "goal": "causal steps <= pixel steps / 5 and causal steps < autoencoder steps (mean curves)",
    }
    notes = [
        "causal and autoencoder observations go through CausalEncoderVecObservation (frames encoded once per "
        "step, frozen encoder, MlpPolicy); pixels use SB3's CnnPolicy (NatureCNN); true uses TrueLatentObservation",
    ]

    encoder_types = [t for t in obs_types if t in ENCODER_TYPES]
    if encoder_types:
        if "encoders" not in report:
            report["encoders"] = prepare_encoders(config, runs_dir)
            write_json(output, report)
    scenes = [(config.env_id, config.env_kwargs, obs_types)]
    if config.second_env_id:
        if config.second_model_path and config.second_dataset:
            second_types = obs_types
            if encoder_types and "encoders_second" not in report:
                second = dataclasses.replace(config, env_id=config.second_env_id, env_kwargs=config.second_env_kwargs,
                                             model_path=config.second_model_path, dataset=config.second_dataset)
                report["encoders_second"] = prepare_encoders(second, runs_dir / scene_name(config.second_env_id))
                write_json(output, report)
        else:
            second_types = [t for t in obs_types if t not in ENCODER_TYPES]
            notes.append(f"{scene_name(config.second_env_id)} has no trained encoder here: only "
                         f"{', '.join(second_types)} are run on it")
        scenes.append((config.second_env_id, config.second_env_kwargs, second_types))
    report["notes"] = notes

    from tqdm import tqdm

    jobs = [(env_id, kwargs, t, s) for env_id, kwargs, types in scenes for t in types for s in range(config.seeds)]
    for env_id, kwargs, _, _ in jobs:
        scene = scene_name(env_id)
        known = report["references"].get(scene, {})
        wanted = ["random_return"] + (["planner_without_state_return"] if config.planner_episodes > 0 else [])
        if any(key not in known for key in wanted):
            report["references"][scene] = {"env_id": env_id, "env_kwargs": kwargs,
                                           **reference_returns(env_id, kwargs, config.random_episodes,
                                                               config.planner_episodes)}
            write_json(output, report)
    for env_id, kwargs, obs_type, seed in tqdm(jobs, desc="agents"):
        scene = scene_name(env_id)
        key = f"{scene}/{obs_type}/{seed}"
        if key in report["runs"]:
            continue
        model_path = None
        encoders = report["encoders_second"] if env_id == config.second_env_id and env_id != config.env_id \
            else report.get("encoders")
        if obs_type == "causal":
            model_path = encoders["causal"]["path"]
        elif obs_type == "autoencoder":
            model_path = encoders["autoencoder"]["path"]
        result = train(TrainConfig(env_id=env_id, env_kwargs=dict(kwargs), obs_type=obs_type, algo="ppo",
                                   total_timesteps=config.total_timesteps, seed=seed, model_path=model_path,
                                   n_envs=config.n_envs, out=str(runs_dir), device=config.device,
                                   save_agent=not config.quick))
        smoothed = smooth(result["steps"], result["returns"], grid, window)
        final = next((v for v in reversed(smoothed) if v is not None), None)
        report["runs"][key] = {"scene": scene, "obs_type": obs_type, "seed": seed, "grid": grid.tolist(),
                               "smoothed": smoothed, "final_smoothed_return": final,
                               "episodes": result["episodes"], "wall_s": result["wall_s"],
                               "steps_per_s": result["steps_per_s"], "run_dir": result["run_dir"]}
        report["summary"] = summarize(report, config)
        write_json(output, report)
    report["summary"] = summarize(report, config)
    report["machine"]["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(output, report)
    plot(report, output.with_name(output.stem + "_curves.png"))
    return report


def print_table(report: dict[str, Any]) -> None:
    for scene, s in report["summary"].items():
        nan = float("nan")
        print(f"{scene}: random {s['random_return']:.2f}, oracle final {s.get('oracle_final_return', nan):.2f}, "
              f"threshold {s.get('threshold', nan):.2f}")
        for obs_type, v in s.get("obs_types", {}).items():
            print(f"  {obs_type:12s} steps to threshold (mean curve) {v['steps_to_threshold_mean_curve']}, per seed "
                  f"{v['steps_to_threshold_per_seed']}, final {v['final_smoothed_return_mean']:.2f}, "
                  f"{v['steps_per_s_mean']:.0f} steps/s")
        if "goal" in s:
            print(f"  goal: {s['goal']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config = parse_config(BenchConfig, argv, description=__doc__, quick=QUICK, outputs=("output", "runs_dir"))
    report = run(config)
    print_table(report)
    print(f"wrote {config.output}")
    return report


if __name__ == "__main__":
    main()
