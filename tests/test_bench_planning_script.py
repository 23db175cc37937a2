"""Smoke test of scripts/bench_planning.py with its tiny budget (numbers mean nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from causal_wm.agents.evaluation import RandomPolicy

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_every_planner_and_scenario(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_planning.py"), "--quick", "--out", str(out),
                           "--cache", str(cache), "--steps", "10", "--num-balls", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "planning_quick.json").read_text())["scenes"]["Balls-v0"]
    config = result["config"]
    assert config["quick"] and config["preset"] == "debug" and config["num_balls"] == 2
    assert config["out"] == str(out) and config["cache"] == str(cache)
    # the quick collection: seeing plus the two hard interventions of each of the 4 nodes, 200 rows each
    assert result["models"]["data"]["regimes"] == 1 + 2 * 4 and result["models"]["data"]["rows"] == 9 * 200
    env = gym.make("causal_wm/Balls-v0", num_balls=2, graph_seed=0, task="reach", goal_value=1.0, do_values=())
    scene = env.unwrapped
    assert result["task"]["goal_node"] == scene.goal_node
    assert result["task"]["true_graph"] == np.asarray(scene.graph).tolist()
    # in distribution every action of the menu (seeing, the hard pairs of the 3 non-goal nodes); out of
    # distribution seeing, do at 4 values on the 3 non-goal nodes and the 4 sign pairs of the 3 node pairs
    actions = {s: result["results"][s]["actions"] for s in ("in_distribution", "out_of_distribution")}
    assert actions["in_distribution"] == ["seeing"] + [iv.label() for iv in scene.interventions[1:]]
    assert len(actions["in_distribution"]) == 1 + 2 * 3
    assert len(actions["out_of_distribution"]) == 1 + 4 * 3 + 4 * 3
    steps, seeds = config["steps"], config["seeds"]
    assert seeds == 2
    for scenario in ("in_distribution", "out_of_distribution"):
        planning = result["results"][scenario]["planning"]
        summary, runs = planning["summary"], planning["runs"]
        assert set(summary) == {"oracle", "causal", "noncausal", "random", "causal_true_latents",
                                "noncausal_true_latents"}
        for name, s in summary.items():
            assert len(runs[name]) == seeds
            success = np.array([r["success_rate"] for r in runs[name]])
            for r in runs[name]:
                assert r["steps"] == steps and sum(a["count"] for a in r["top_actions"]) <= steps
                assert r["success_rate"] * steps == pytest.approx(round(r["success_rate"] * steps))
                assert r["mean_reward"] == pytest.approx(-r["mean_distance"])  # the reward is -|z_goal - goal|
            # the summary is the mean (and standard error) over the seeds
            assert s["success_rate"] == pytest.approx(success.mean())
            assert s["success_rate_se"] == pytest.approx(success.std(ddof=1) / np.sqrt(seeds))
            assert s["mean_reward"] == pytest.approx(np.mean([r["mean_reward"] for r in runs[name]]))
        # the true SCM, and the causal model fitted on the true latents, plan far better than chance
        # (in distribution 0.55 and 0.55 vs 0.225; out of distribution 0.825 and 0.8 vs 0.225)
        for name in ("oracle", "causal_true_latents"):
            assert summary[name]["success_rate"] >= summary["random"]["success_rate"] + 0.15
        assert summary["oracle"]["mean_reward"] >= summary["random"]["mean_reward"] + 0.5
        prediction = result["results"][scenario]["prediction"]["per_intervention"]
        assert [r["intervention"] for r in prediction] == actions[scenario]
    # the random runs of the in-distribution scenario replayed here (seed s plays env seed 10_000 + s)
    for seed, run in enumerate(result["results"]["in_distribution"]["planning"]["runs"]["random"]):
        policy = RandomPolicy(env.action_space.n, seed=seed)
        obs, info = env.reset(seed=10_000 + seed)
        distances = []
        for _ in range(steps):
            obs, _, terminated, truncated, info = env.step(policy(obs, info))
            distances.append(abs(info["z"][scene.goal_node] - 1.0))
            if terminated or truncated:
                obs, info = env.reset()
        assert run["success_rate"] == pytest.approx(np.mean(np.asarray(distances) < 0.5))
        assert run["mean_distance"] == pytest.approx(np.mean(distances))
    # out of distribution, the planners may only use interventions the data never showed
    assert all(a == "seeing" or a.startswith("do(") for a in result["results"]["out_of_distribution"]["actions"])
    for path in result["figures"].values():
        assert Path(path).stat().st_size > 1000
