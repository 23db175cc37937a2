"""The causal-wm subcommands around the world model: fit, evaluate, plan, bench (debug sizes)."""

from __future__ import annotations

import itertools
import json

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import spearmanr

from causal_wm.agents.evaluation import RandomPolicy
from causal_wm.agents.planners import OneStepPlanner, OracleSCMModel, goal_reward
from causal_wm.cli import main
from causal_wm.world_model import CausalWorldModel

SCENE = '{"num_balls": 2, "graph_seed": 0}'


def _scene(**extra):
    return gym.make("causal_wm/Balls-v0", **json.loads(SCENE), **extra)


def _replay(env, policy, steps, seed, tolerance):
    """Run ``policy`` on the reach task and score it here, from the true latents of every step."""
    scene = env.unwrapped
    obs, info = env.reset(seed=seed)
    distances, counts = [], np.zeros(env.action_space.n, dtype=int)
    for _ in range(steps):
        action = policy(obs, info)
        counts[action] += 1
        obs, _, terminated, truncated, info = env.step(action)
        distances.append(abs(float(info["z"][scene.goal_node]) - scene.goal_value))
        if terminated or truncated:
            obs, info = env.reset()
    distances = np.asarray(distances)
    return float(np.mean(distances < tolerance)), float(distances.mean()), counts.tolist()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_wm")
    data, model = folder / "balls.h5", folder / "model.pt"
    assert main(["collect", "causal_wm/Balls-v0", "--per-regime", "150", "--out", str(data), "--no-progress",
                 "--env-kwargs", '{"num_balls": 2, "graph_seed": 0, "do_values": []}']) == 0
    assert main(["fit", str(data), "--out", str(model), "--preset", "debug", "--device", "cpu",
                 "--no-progress"]) == 0
    return folder, data, model


def test_fit_writes_a_loadable_model(fitted, capsys):
    _, _, model = fitted
    loaded = CausalWorldModel.load(model)
    assert loaded.n == 4 and sorted(loaded.latent_of_node) == [0, 1, 2, 3]


def test_evaluate_writes_metrics_and_figures(fitted, capsys):
    folder, _, model = fitted
    out = folder / "eval"
    assert main(["evaluate", str(model), "--env-kwargs", SCENE, "--out", str(out), "--frames", "200",
                 "--samples", "100"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the Spearman MCC recomputed here: the same fresh frames (seed 0), encoded by the saved model,
    # rank correlations by scipy and the best of all 4! matchings
    scene = _scene().unwrapped
    z = scene.scm.sample(200, None, seed=0)
    z_hat = CausalWorldModel.load(model, device="cpu").encode(scene.renderer(z))
    C = np.abs(spearmanr(z, z_hat)[0][:4, 4:])
    best = max(np.mean(C[np.arange(4), list(p)]) for p in itertools.permutations(range(4)))
    assert metrics["mcc_spearman"] == pytest.approx(best, abs=1e-6)
    assert np.allclose(metrics["spearman_matrix"], C, atol=1e-6)
    # SHD (reversal 2) after the reported matching, counted here from the two graphs
    p = metrics["permutation"]
    assert sorted(p) == [0, 1, 2, 3]
    aligned = np.asarray(metrics["learned_graph"])[np.ix_(p, p)]
    assert metrics["shd_rev2"] == int(np.abs(np.asarray(scene.graph) - aligned).sum())
    # every menu entry of the scene, seen in the data or not, has an interventional error
    assert len(metrics["interventions"]) == 1 + 4 * 5
    assert [r["action"] for r in metrics["interventions"]] == list(range(21))
    assert [r["intervention"] for r in metrics["interventions"]] == \
        ["seeing"] + [iv.label() for iv in scene.interventions[1:]]
    assert metrics["intervention_mmd"] == pytest.approx(np.mean([r["mmd"] for r in metrics["interventions"][1:]]))
    assert all(r["mmd"] >= -0.05 for r in metrics["interventions"])
    for path in metrics["figures"].values():
        assert (out / path.split("/")[-1]).stat().st_size > 1000
    assert "Spearman MCC" in capsys.readouterr().out


def test_plan_compares_learned_oracle_and_random(fitted, capsys):
    folder, _, model = fitted
    out = folder / "plan.json"
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--steps", "30", "--samples", "32",
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["planners"]) == {"learned", "oracle", "random"}
    env = _scene(task="reach")
    scene = env.unwrapped
    # the settings are what the command was told (and the defaults it was not)
    assert results["settings"] == {"planner": "one-step", "horizon": 3, "steps": 30, "num_samples": 32,
                                   "tolerance": 0.5, "seed": 0, "goal_node": scene.goal_node, "goal_value": 1.0}
    for r in results["planners"].values():
        assert r["steps"] == 30 and sum(r["action_counts"]) == 30
        assert len(r["action_counts"]) == env.action_space.n == 1 + 3 * 5  # the goal node's entries are removed
        assert r["success_rate"] * 30 == pytest.approx(round(r["success_rate"] * 30))  # whole steps succeed
        assert r["mean_reward"] == pytest.approx(-r["mean_distance"])  # the reward is -|z_goal - goal|
    # random and oracle replayed here step by step: the same seeds give the same runs
    planners = results["planners"]
    oracle = OneStepPlanner(OracleSCMModel.from_env(env), goal_reward(scene.goal_node, 1.0), num_samples=32, seed=0)
    policies = {"random": RandomPolicy(env.action_space.n, seed=0),
                "oracle": lambda obs, info: oracle.act(info["z"], info["regime"])}
    for name, policy in policies.items():
        success, distance, counts = _replay(env, policy, 30, 0, 0.5)
        assert planners[name]["success_rate"] == pytest.approx(success)
        assert planners[name]["mean_distance"] == pytest.approx(distance)
        assert planners[name]["action_counts"] == counts
    # the true SCM plans far better than chance (0.5 vs 0.2 success, distance 0.52 vs 1.22)
    assert planners["oracle"]["success_rate"] >= planners["random"]["success_rate"] + 0.15
    assert planners["oracle"]["mean_distance"] <= planners["random"]["mean_distance"] - 0.3
    text = capsys.readouterr().out
    assert "oracle" in text and "learned" in text


def test_plan_with_cem(fitted):
    _, _, model = fitted
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--steps", "5", "--samples", "64",
                 "--planner", "cem", "--horizon", "2"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["fit", "missing.h5", "--out", "m.pt"], "no collection"),
    (["evaluate", "missing.pt", "--out", "x"], "no model file"),
    (["plan", "missing.pt"], "no model file"),
    (["bench", "nonexistent"], "unknown benchmark"),
    (["plan", "--planner", "magic", "m.pt"], "invalid choice"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_evaluate_rejects_a_scene_of_another_size(fitted, capsys):
    folder, _, model = fitted
    assert main(["evaluate", str(model), "--out", str(folder / "e2")]) == 2
    assert "latents" in capsys.readouterr().err


def test_bench_lists_the_scripts(capsys):
    assert main(["bench", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"planning", "linear", "render"} <= set(names)


@pytest.mark.parametrize("command", ["fit", "evaluate", "plan", "bench", "train-agent", "demo"])
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert command in capsys.readouterr().out
