"""Benchmark of intervention-aware planning with the learned causal world model.

Scenes: ``causal_wm/Balls-v0`` (3 balls, ``n = 6`` latents, graph seed 0; ``--scene balls``) and
``causal_wm/Shadow-v0`` (pendulum, light, shadow position and length; nonlinear mechanisms;
``--scene shadow``), each with its reach task: after
every action (an intervention), the reward is ``-|z_goal - goal_value|`` on the downstream goal node
(the node with the most ancestors; the goal node itself cannot be intervened on, so a planner must act
through its ancestors). A step succeeds when the goal node ends within ``tolerance`` of the goal.

Training data: seeing plus the two mean-shift hard interventions of every node (``do_values=()``),
collected with ``causal_wm.collect`` (balanced). Models, all in the same learned latent space:

- ``causal``: ``CausalWorldModel`` (image CRL encoder, learned graph, mechanisms, calibration);
- ``noncausal``: ``ActionConditionedModel``, an action-conditioned Gaussian predictor with no graph and
  no mechanisms, reading interventions through their features (per true node: targeted, kind, value,
  std), trained on the same latents;
- ``oracle``: the true SCM (the ceiling); ``random``: uniform actions;
- ``causal_true_latents`` / ``noncausal_true_latents``: the same two model classes fitted on the true
  latents of the data (the causal one with the true graph), planning from the true latents: the
  ablation that removes the representation's error.

Every model plans with the same one-step planner (exhaustive search over the allowed actions, common
random numbers) and the reward in the env's units (the learned models map the goal value to the
learned latent with the calibration of the world model). Scenarios:

- ``in_distribution``: the menu of the data (the mean-shift pairs);
- ``out_of_distribution``: only interventions the data never showed: ``do`` at -2, -1, 1, 2 on every
  allowed node and two-node ``do`` combinations at +-1.5.

Metrics per scenario and planner over ``seeds`` x ``steps``: success rate, mean reward per step; per
intervention of the scenario, the distance between imagined and real latent distributions (real:
frames rendered from the true SCM under the intervention, encoded; MMD with the median-heuristic RBF
kernel, Gaussian W2, mean error) and the image error of imagined interventions (MSE between the mean
decoded imagined frame and the mean real frame, at the model resolution).

Goals (issue): in distribution the causal planner reaches >= 90 % of the oracle's success; out of
distribution >= 80 % of the oracle's and at least twice the non-causal model's.

    python scripts/bench_planning.py                      # collect, fit (cpu preset, ~20 min), evaluate
    python scripts/bench_planning.py --data D.h5 --representation R.pt   # reuse a collection and a CRL fit
    python scripts/bench_planning.py --scene shadow       # the second scene
    python scripts/bench_planning.py --quick              # debug preset, a few steps: smoke test

Results of every scene go under ``"scenes"`` of ``benchmarks/results/planning.json`` (other scenes kept);
a ``--quick`` run writes ``planning_quick.json`` and its data and models under ``./bench_out/planning/``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import causal_wm
from causal_wm.agents import OneStepPlanner, OracleSCMModel, goal_reward
from causal_wm.agents.evaluation import ModelPolicy, OraclePolicy, RandomPolicy, latent_goal_reward, run_policy
from causal_wm.benchmarking import CACHE_DIR, RESULTS_DIR, parse_config, quick_dir
from causal_wm.crl.representation import TrueLatents
from causal_wm.device import machine_info
from causal_wm.scm import Intervention
from causal_wm.world_model import CausalWorldModel, encode_dataset
from causal_wm.world_model.baseline import ActionConditionedModel
from causal_wm.world_model.scoring import intervention_errors

PLANNERS = ("oracle", "causal", "noncausal", "random", "causal_true_latents", "noncausal_true_latents")
COLORS = ["#555555", "#1f77b4", "#ff7f0e", "#bbbbbb", "#9ecae1", "#fdd0a2"]


@dataclass
class Config:
    """Settings of the benchmark (every field is a command-line flag)."""

    out: str = str(RESULTS_DIR)
    """folder of planning.json (planning_quick.json for --quick) and the PNGs"""
    cache: str = str(CACHE_DIR)
    """folder of the collection and the fitted models (reused by later runs)"""
    data: str = ""
    """an existing collection (HDF5) to use instead of collecting one"""
    representation: str = ""
    """an existing image CRL model (ImageCRLResult file) fitted on --data, instead of fitting one"""
    preset: str = "cpu"
    """world model preset (debug, cpu, full)"""
    image_size: int = 0
    """model resolution of the image learner (0: the preset's; e.g. 64 keeps the thin shadow of Shadow-v0)"""
    per_regime: int = 5000
    """collected rows per regime"""
    scene: str = "balls"
    """balls (Balls-v0: 3 balls, linear Gaussian SCM on a random DAG) or shadow (Shadow-v0: pendulum,
    light and shadow, nonlinear mechanisms)"""
    num_balls: int = 3
    """balls in the Balls-v0 scene (n = 2 x balls)"""
    graph_seed: int = 0
    """seed of the Balls-v0 latent DAG"""
    goal_value: float = 1.0
    """goal of the reach task"""
    tolerance: float = 0.5
    """a step succeeds when the goal node ends within this distance of the goal"""
    seeds: int = 5
    """evaluation seeds"""
    steps: int = 200
    """env steps per seed, scenario and planner"""
    num_samples: int = 256
    """imagined samples per action and planning step"""
    eval_samples: int = 1000
    """samples per intervention for the prediction errors"""
    device: str = "auto"
    """torch device of the learners"""
    quick: bool = False
    """debug preset, 2 balls, small data, few steps (smoke test; numbers mean nothing); writes under
    ./bench_out/planning/"""


QUICK = {"preset": "debug", "per_regime": 200, "num_balls": 2, "seeds": 2, "steps": 20, "num_samples": 32,
         "eval_samples": 100, "out": str(quick_dir("planning")), "cache": str(quick_dir("planning") / "cache")}


SCENES = {"balls": "causal_wm/Balls-v0", "shadow": "causal_wm/Shadow-v0"}


def env_id(cfg: Config) -> str:
    if cfg.scene not in SCENES:
        raise ValueError(f"unknown scene {cfg.scene!r}; choose one of {sorted(SCENES)}")
    return SCENES[cfg.scene]


def env_kwargs(cfg: Config) -> dict:
    return {"num_balls": cfg.num_balls, "graph_seed": cfg.graph_seed} if cfg.scene == "balls" else {}


def ood_env(cfg: Config) -> gym.Env:
    """The reach task with a menu of interventions the data never showed (plus the rest of the menu,
    which the out-of-distribution planners may not use; see ``ood_actions``)."""
    base = gym.make(env_id(cfg), **env_kwargs(cfg), task="reach", goal_value=cfg.goal_value)
    goal = base.unwrapped.goal_node
    nodes = [j for j in range(base.unwrapped.n) if j != goal]
    names = base.unwrapped.node_names
    combos = [Intervention.do((a, b), (va, vb), std=0.05, name=f"do({names[a]} = {va:g}, {names[b]} = {vb:g})")
              for a, b in itertools.combinations(nodes, 2) for va in (-1.5, 1.5) for vb in (-1.5, 1.5)]
    return gym.make(env_id(cfg), **env_kwargs(cfg), task="reach", goal_value=cfg.goal_value,
                    do_values=(-2.0, -1.0, 1.0, 2.0), multi_node=combos)


def ood_actions(env: gym.Env) -> list[int]:
    return [a for a, iv in enumerate(env.unwrapped.interventions)
            if iv is None or iv.kind == "do" or len(iv.targets) > 1]


class TrueLatentPolicy:
    """A planner whose model reads the true latents (``info["z"]``) instead of encoding frames."""

    def __init__(self, model, planner) -> None:
        self.model, self.planner = model, planner

    def __call__(self, obs, info) -> int:
        return int(self.planner.act(self.model.encode(np.asarray(info["z"])[None])[0], int(info["regime"])))


def fit_true_latent_models(cfg: Config, dataset, world_model_preset: str) -> tuple[CausalWorldModel,
                                                                                  ActionConditionedModel]:
    """The ablation without representation error: both model classes fitted on the true latents of the
    data (identity encoder; the causal model also gets the true graph), planning from the true latents."""
    z = dataset.latents(slice(0, len(dataset)))
    menu = dataset.menu
    representation = TrueLatents.from_menu(dataset.graph, menu)
    world_model = CausalWorldModel.fit_arrays(z, dataset.regime, menu=menu, episode=dataset.episode,
                                              step=dataset.step, preset=world_model_preset, seed=0,
                                              representation=representation)
    interventions = [menu[r] for r in dataset.regime]
    baseline = ActionConditionedModel().fit(world_model.encode(z), interventions, episode=dataset.episode,
                                            step=dataset.step, seed=0, device=cfg.device)
    return world_model, baseline


def fit_models(cfg: Config, cache: Path) -> tuple[CausalWorldModel, ActionConditionedModel, dict]:
    info: dict = {}
    t0 = time.perf_counter()
    kwargs = {**env_kwargs(cfg), "do_values": ()}
    if cfg.data:
        dataset = causal_wm.Dataset(cfg.data)
    else:
        dataset = causal_wm.collect(env_id(cfg), None, cache / f"planning_{cfg.scene}_{cfg.preset}.h5",
                                    policy="balanced", per_regime=cfg.per_regime, seed=0, env_kwargs=kwargs)
    info["data"] = {"path": str(dataset.path), "rows": len(dataset), "regimes": len(dataset.regimes),
                    "env_kwargs": dataset.env_kwargs}
    info["seconds_collect"] = time.perf_counter() - t0
    model_path = cache / f"planning_{cfg.scene}_world_model_{cfg.preset}.pt"
    t0 = time.perf_counter()
    if model_path.exists():
        world_model = CausalWorldModel.load(model_path, device=cfg.device)
        info["world_model"] = f"loaded {model_path}"
    else:
        representation = None
        if cfg.representation:
            from causal_wm.crl.images import ImageCRLResult

            representation = ImageCRLResult.load(cfg.representation, device=cfg.device)
        crl_options = {"image_size": cfg.image_size} if cfg.image_size else {}
        world_model = CausalWorldModel.fit(dataset, preset=cfg.preset, device=cfg.device, seed=0,
                                           representation=representation, crl_options=crl_options,
                                           checkpoint_dir=cache / f"checkpoints_{cfg.scene}")
        world_model.save(model_path)
        info["world_model"] = f"fitted, saved to {model_path}" + (
            f" (representation {cfg.representation})" if cfg.representation else "")
    info["seconds_world_model"] = time.perf_counter() - t0
    baseline_path = cache / f"planning_{cfg.scene}_noncausal_{cfg.preset}.pt"
    t0 = time.perf_counter()
    if baseline_path.exists():
        baseline = ActionConditionedModel.load(baseline_path, device=cfg.device)
    else:
        z = encode_dataset(world_model, dataset)
        menu = dataset.menu
        interventions = [menu[r] for r in dataset.regime]
        baseline = ActionConditionedModel().fit(z, interventions, episode=dataset.episode, step=dataset.step,
                                                seed=0, device=cfg.device, progress=True)
        baseline.save(baseline_path)
    info["seconds_noncausal"] = time.perf_counter() - t0
    info["noncausal_parameters"] = baseline.num_parameters
    info["world_model_diagnostics"] = world_model.diagnostics
    t0 = time.perf_counter()
    info["true_latent_models"] = fit_true_latent_models(cfg, dataset, "debug" if cfg.quick else cfg.preset)
    info["seconds_true_latent_models"] = time.perf_counter() - t0
    return world_model, baseline, info


def prediction_errors(cfg: Config, env: gym.Env, actions: list[int], world_model: CausalWorldModel,
                      baseline: ActionConditionedModel) -> dict:
    """Imagined vs real distributions of every action's intervention, both models on the same real
    samples (``causal_wm.world_model.scoring.intervention_errors``)."""
    rows = intervention_errors(world_model, env, samples=cfg.eval_samples, actions=actions,
                               others={"noncausal": baseline})
    per_intervention = [{"action": r["action"], "intervention": r["intervention"], "noncausal": r["noncausal"],
                         "causal": {k: v for k, v in r.items() if k not in ("action", "intervention", "noncausal")}}
                        for r in rows]
    summary = {name: {k: float(np.mean([r[name][k] for r in per_intervention])) for k in per_intervention[0][name]}
               for name in ("causal", "noncausal")}
    return {"per_intervention": per_intervention, "mean": summary}


def evaluate_planners(cfg: Config, env: gym.Env, actions: list[int], world_model: CausalWorldModel,
                      baseline: ActionConditionedModel, true_models: tuple) -> dict:
    scene = env.unwrapped
    reward_true = goal_reward(scene.goal_node, scene.goal_value)
    reward_learned = latent_goal_reward(world_model, scene.goal_node, scene.goal_value)
    causal_menu = world_model.for_menu(scene.interventions)
    noncausal_menu = baseline.for_menu(scene.interventions)
    results: dict = {name: [] for name in PLANNERS}
    for seed in range(cfg.seeds):
        policies = {
            "oracle": OraclePolicy(OneStepPlanner(OracleSCMModel.from_env(env), reward_true, actions=actions,
                                                  num_samples=cfg.num_samples, seed=seed)),
            "causal": ModelPolicy(world_model, OneStepPlanner(causal_menu, reward_learned, actions=actions,
                                                              num_samples=cfg.num_samples, seed=seed)),
            "noncausal": ModelPolicy(world_model, OneStepPlanner(noncausal_menu, reward_learned, actions=actions,
                                                                 num_samples=cfg.num_samples, seed=seed)),
        }
        true_world_model, true_baseline = true_models
        true_reward = latent_goal_reward(true_world_model, scene.goal_node, scene.goal_value)
        for name, model in (("causal_true_latents", true_world_model), ("noncausal_true_latents", true_baseline)):
            policies[name] = TrueLatentPolicy(true_world_model, OneStepPlanner(
                model.for_menu(scene.interventions), true_reward, actions=actions, num_samples=cfg.num_samples,
                seed=seed))
        policies["random"] = RandomPolicy(env.action_space.n, seed=seed, actions=actions)
        for name, policy in policies.items():
            metrics = run_policy(env, policy, steps=cfg.steps, seed=10_000 + seed, tolerance=cfg.tolerance)
            counts = np.asarray(metrics.pop("action_counts"))
            top = np.argsort(counts)[::-1][:3]
            metrics["top_actions"] = [{"action": int(a), "intervention": _label(scene.interventions[a]),
                                       "count": int(counts[a])} for a in top if counts[a] > 0]
            results[name].append(metrics)
    summary = {}
    for name, runs in results.items():
        success = np.array([r["success_rate"] for r in runs])
        reward = np.array([r["mean_reward"] for r in runs])
        summary[name] = {"success_rate": float(success.mean()),
                         "success_rate_se": float(success.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else 0.0,
                         "mean_reward": float(reward.mean()),
                         "mean_reward_se": float(reward.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1 else 0.0}
    return {"summary": summary, "runs": results}


def _label(iv: Intervention | None) -> str:
    return "seeing" if iv is None else iv.label()


def figures(cfg: Config, out: Path, results: dict, world_model: CausalWorldModel, envs: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causal_wm.viz import image_grid, plot_graphs

    paths = {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for ax, scenario in zip(axes, ("in_distribution", "out_of_distribution"), strict=True):
        summary = results[scenario]["planning"]["summary"]
        values = [summary[p]["success_rate"] for p in PLANNERS]
        errors = [summary[p]["success_rate_se"] for p in PLANNERS]
        ax.bar([p.replace("_true_latents", "\n(true z)") for p in PLANNERS], values, yerr=errors, color=COLORS)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(scenario.replace("_", " "))
        ax.set_ylabel(f"success rate (|z_goal - {cfg.goal_value:g}| < {cfg.tolerance:g})")
    fig.tight_layout()
    stem = f"planning_{cfg.scene}" + (f"_{cfg.image_size}px" if cfg.image_size else "")
    paths["success"] = str(out / f"{stem}_success.png")
    fig.savefig(paths["success"], dpi=120)
    plt.close(fig)
    # imagined interventions: real frames vs the causal and the non-causal imagination
    env = envs["out_of_distribution"]
    scene = env.unwrapped
    candidates = [a for a in ood_actions(env) if scene.interventions[a] is not None]
    chosen = candidates[:: max(1, len(candidates) // 6)][:6]
    rows, labels = [], []
    from causal_wm.pixels import prepare_images, to_hwc_uint8

    for a in chosen:
        iv = scene.interventions[a]
        frames = scene.renderer(scene.scm.sample(6, iv, seed=a))
        real = to_hwc_uint8(prepare_images(frames, world_model.image_size))
        rows.append(np.concatenate([real, world_model.sample_observations(6, iv, seed=a)]))
        labels.append(iv.label())
    grid = np.stack(rows)
    paths["imagined"] = str(out / f"{stem}_imagined_interventions.png")
    image_grid(grid, row_labels=labels, title="left 6: real frames; right 6: imagined by the causal world model",
               path=paths["imagined"])
    perm = [world_model.latent_of_node.get(j, j) for j in range(world_model.n)]
    learned_in_true_order = world_model.graph[np.ix_(perm, perm)]
    paths["graph"] = str(out / f"{stem}_graph.png")
    plot_graphs(np.asarray(env.unwrapped.graph), learned_in_true_order, names=list(env.unwrapped.node_names),
                path=paths["graph"])
    return paths


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out", "cache"))
    torch.set_num_threads(1)
    out, cache = Path(cfg.out), Path(cfg.cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world_model, baseline, info = fit_models(cfg, cache)
    true_models = info.pop("true_latent_models")
    envs = {"in_distribution": gym.make(env_id(cfg), **env_kwargs(cfg), task="reach",
                                        goal_value=cfg.goal_value, do_values=()),
            "out_of_distribution": ood_env(cfg)}
    results: dict = {}
    for scenario, env in envs.items():
        actions = list(range(env.action_space.n)) if scenario == "in_distribution" else ood_actions(env)
        t0 = time.perf_counter()
        results[scenario] = {
            "actions": [_label(env.unwrapped.interventions[a]) for a in actions],
            "planning": evaluate_planners(cfg, env, actions, world_model, baseline, true_models),
            "prediction": prediction_errors(cfg, env, actions, world_model, baseline),
            "seconds": time.perf_counter() - t0,
        }
        s = results[scenario]["planning"]["summary"]
        print(f"{scenario}: " + ", ".join(f"{p} {s[p]['success_rate']:.3f}" for p in PLANNERS))
    ind, ood = (results[s]["planning"]["summary"] for s in ("in_distribution", "out_of_distribution"))
    goals = {
        "in_distribution_causal_over_oracle": ind["causal"]["success_rate"] / max(ind["oracle"]["success_rate"], 1e-9),
        "out_of_distribution_causal_over_oracle": ood["causal"]["success_rate"]
        / max(ood["oracle"]["success_rate"], 1e-9),
        "out_of_distribution_causal_over_noncausal": ood["causal"]["success_rate"]
        / max(ood["noncausal"]["success_rate"], 1e-9),
    }
    goals["met"] = bool(goals["in_distribution_causal_over_oracle"] >= 0.9
                        and goals["out_of_distribution_causal_over_oracle"] >= 0.8
                        and goals["out_of_distribution_causal_over_noncausal"] >= 2.0)
    scene = envs["in_distribution"].unwrapped
    payload = {"config": dataclasses.asdict(cfg), "machine": machine_info(), "models": info,
               "task": {"goal_node": int(scene.goal_node), "goal_name": scene.node_names[scene.goal_node],
                        "goal_value": cfg.goal_value, "tolerance": cfg.tolerance,
                        "true_graph": np.asarray(scene.graph).tolist(),
                        "learned_graph_true_order": world_model.graph[np.ix_(
                            *[[world_model.latent_of_node.get(j, j) for j in range(world_model.n)]] * 2)].tolist()},
               "results": results, "goals": goals, "seconds": time.perf_counter() - started}
    payload["figures"] = figures(cfg, out, results, world_model, envs)
    path = out / ("planning_quick.json" if cfg.quick else "planning.json")
    previous = json.loads(path.read_text()) if path.exists() else {}
    scenes = previous.get("scenes", {}) if isinstance(previous.get("scenes"), dict) else {}
    key = env_id(cfg).split("/")[-1] + (f" ({cfg.image_size} px)" if cfg.image_size else "")
    scenes[key] = payload
    path.write_text(json.dumps({"benchmark": "planning", "scenes": scenes}, indent=1, default=float))
    print(json.dumps(goals, indent=1))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
