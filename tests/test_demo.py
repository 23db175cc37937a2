import itertools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import spearmanr

from causal_wm.agents.evaluation import RandomPolicy
from causal_wm.agents.planners import OneStepPlanner, OracleSCMModel, goal_reward
from causal_wm.cli import main
from causal_wm.demo import DEMO_PRESETS, ENV_ID, joint_interventions, run_demo
from causal_wm.envs import MAX_EPISODE_STEPS
from causal_wm.world_model import CausalWorldModel


def _replay(env, policy, steps, seed, tolerance):
    """Success rate and mean distance of ``policy`` on the reach task, scored here from the true latents."""
    scene = env.unwrapped
    obs, info = env.reset(seed=seed)
    distances = []
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(policy(obs, info))
        distances.append(abs(float(info["z"][scene.goal_node]) - scene.goal_value))
        if terminated or truncated:
            obs, info = env.reset()
    return float(np.mean(np.asarray(distances) < tolerance)), float(np.mean(distances))


def test_demo_debug_preset_writes_report_and_summary(tmp_path):
    summary = run_demo(tmp_path, preset="debug", progress=False)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["metrics"]["mcc_spearman"] == pytest.approx(summary["metrics"]["mcc_spearman"])
    # the Spearman MCC recomputed here: the demo's test frames (seed 10_000), encoded by the saved model,
    # rank correlations by scipy and the best of all 6! matchings
    settings = DEMO_PRESETS["debug"]
    scene = gym.make(ENV_ID, num_balls=3, graph_seed=0).unwrapped
    z = scene.scm.sample(settings["test_frames"], None, seed=10_000)
    z_hat = CausalWorldModel.load(tmp_path / "world_model.pt", device="cpu").encode(scene.renderer(z))
    C = np.abs(spearmanr(z, z_hat)[0][:6, 6:])
    best = max(np.mean(C[np.arange(6), list(p)]) for p in itertools.permutations(range(6)))
    assert summary["metrics"]["mcc_spearman"] == pytest.approx(best, abs=1e-6)
    # SHD (reversal 2) counted here from the true graph and the aligned learned graph of the summary
    assert summary["true_graph"] == np.asarray(scene.graph).tolist()
    assert summary["metrics"]["shd_rev2"] == int(np.abs(np.asarray(summary["true_graph"])
                                                        - np.asarray(summary["learned_graph_aligned"])).sum())
    assert summary["dataset"]["regimes"] == 13 and summary["dataset"]["rows"] == 13 * 150
    assert sorted(summary["permutation"]) == list(range(6))
    # the world model, the planner and the agent ran and are reported
    assert set(summary["planning"]) >= {"learned", "oracle", "random", "settings"}
    planning = summary["planning"]
    reach = gym.make(ENV_ID, num_balls=3, graph_seed=0, task="reach")
    goal = reach.unwrapped.goal_node
    assert planning["settings"] == {"planner": "one-step", "horizon": 3, "steps": settings["plan_steps"],
                                    "num_samples": 256, "tolerance": 0.5, "seed": 0, "goal_node": goal,
                                    "goal_value": 1.0}
    steps = settings["plan_steps"]
    for name in ("learned", "oracle", "random"):
        actions = planning[name]["actions"]
        assert sum(actions["top"].values()) <= steps and 1 <= actions["distinct"] <= reach.action_space.n
        assert actions["constant"] == (actions["distinct"] == 1)
        assert planning[name]["success_rate"] * steps == pytest.approx(round(planning[name]["success_rate"] * steps))
        assert planning[name]["mean_reward"] == pytest.approx(-planning[name]["mean_distance"])
    # random and oracle replayed here: the same seeds give the same runs
    oracle = OneStepPlanner(OracleSCMModel.from_env(reach), goal_reward(goal, 1.0), num_samples=256, seed=0)
    for name, policy in (("random", RandomPolicy(reach.action_space.n, seed=0)),
                         ("oracle", lambda obs, info: oracle.act(info["z"], info["regime"]))):
        success, distance = _replay(reach, policy, steps, 0, 0.5)
        assert planning[name]["success_rate"] == pytest.approx(success)
        assert planning[name]["mean_distance"] == pytest.approx(distance)
    # the true SCM plans far better than chance (0.325 vs 0.1 success, distance 0.80 vs 1.27)
    assert planning["oracle"]["success_rate"] >= planning["random"]["success_rate"] + 0.1
    assert planning["oracle"]["mean_distance"] <= planning["random"]["mean_distance"] - 0.25
    # 6 nodes: the data hold the two hard interventions of each (12); the default menu adds do at
    # -1.5, 0, 1.5 on each (18), which the model only imagines
    imagined = summary["world_model"]["imagined_interventions"]
    assert imagined["seen"]["count"] == 6 * 2 and imagined["unseen"]["count"] == 6 * 3
    # PPO collects whole rollouts (n_envs x n_steps env steps) until 512 are done; every env's episode
    # ends at the time limit, so each env finishes rollout_steps // MAX_EPISODE_STEPS episodes
    agent = summary["agent"]
    curve = json.loads((Path(agent["run_dir"]) / "curve.json").read_text())
    n_envs, n_steps = curve["config"]["n_envs"], curve["algo_settings"]["n_steps"]
    per_env = n_steps * -(-512 // (n_envs * n_steps))
    assert curve["timesteps"] == n_envs * per_env
    assert agent["steps"] == 512 and agent["episodes"] == n_envs * (per_env // MAX_EPISODE_STEPS) == 16
    assert curve["steps"] == [n_envs * MAX_EPISODE_STEPS * (k + 1) for k in range(per_env // MAX_EPISODE_STEPS)
                              for _ in range(n_envs)]
    fifth = max(1, agent["episodes"] // 5)
    assert agent["return_first_fifth"] == pytest.approx(np.mean(curve["returns"][:fifth]), abs=1e-3)
    assert agent["return_last_fifth"] == pytest.approx(np.mean(curve["returns"][-fifth:]), abs=1e-3)
    assert (tmp_path / "world_model.pt").exists()
    # the joint panel: two-node do interventions absent from the data, both models scored on the same frames
    joint = summary["joint_interventions"]
    expected = [iv.label() for iv in joint_interventions(scene)]
    assert [row["intervention"] for row in joint["interventions"]] == expected and len(expected) == 4
    data_labels = {iv.label() for iv in CausalWorldModel.load(tmp_path / "world_model.pt", device="cpu").menu[1:]}
    assert not data_labels & set(expected)
    for row in joint["interventions"]:
        for name in ("causal", "noncausal"):
            assert np.isfinite(row[name]["mmd"]) and row[name]["mean_error"] >= 0
    assert joint["noncausal_rows"] == 13 * 150
    report = (tmp_path / "report.md").read_text()
    assert "smoke test" in report and "what it measures" in report and "R² sep" in report
    assert "actions used" in report and "most chosen" in report
    for section in ("Causal world model", "Planning interventions", "An agent on the learned causal features",
                    "Joint interventions never seen"):
        assert section in report
    for name in summary["figures"].values():
        assert (tmp_path / name).stat().st_size > 1000
        assert name in report
    # a second run resumes the collection and the checkpoints and gives the same model
    again = run_demo(tmp_path, preset="debug", progress=False)
    assert again["metrics"]["mcc_spearman"] == pytest.approx(summary["metrics"]["mcc_spearman"])


def test_joint_interventions_put_cause_effect_pairs_first():
    from causal_wm.scm import ancestors

    scene = gym.make(ENV_ID, num_balls=3, graph_seed=0).unwrapped
    chosen = joint_interventions(scene, max_count=20)
    pairs = [iv.targets for iv in chosen]
    related = [(i, j) in pairs and (i in ancestors(scene.graph, j) or j in ancestors(scene.graph, i))
               for i, j in pairs]
    assert related == sorted(related, reverse=True) and related[0]
    assert all(iv.kind == "do" and len(iv.targets) == 2 for iv in chosen)
    assert len(set(pairs)) == len(pairs) == 15  # every pair of 6 nodes once


def test_demo_command_rejects_bad_arguments(capsys):
    assert main(["demo", "--preset", "huge"]) == 2
    assert "invalid choice" in capsys.readouterr().err
