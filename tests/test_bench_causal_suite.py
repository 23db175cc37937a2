"""The causal suite's definitions (scripts/bench_causal_suite.py): the scenarios' menus, the sample
count to reach 90 % of the oracle after a shift, and the summary keys computed from a hand-made payload."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("bench_causal_suite", ROOT / "scripts" / "bench_causal_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_causal_suite"] = module
    spec.loader.exec_module(module)
    return module


def test_scenario_menus(suite):
    cfg = suite.Config()
    for scene in ("chemistry", "balls"):
        menus = {s: suite.scenario_env(cfg, scene, s) for s in
                 ("in_distribution", "ood_values", "ood_joint", "mechanism_shift", "distractor_shift")}
        env, actions = menus["in_distribution"]
        goal = env.unwrapped.goal_node
        data = [iv for iv in env.unwrapped.interventions[1:]]
        assert all(iv.kind == "hard" and len(iv.targets) == 1 for iv in data) and len(actions) == 1 + 2 * 5
        for name in ("ood_values", "ood_joint", "mechanism_shift", "distractor_shift"):
            e, acts = menus[name]
            chosen = [e.unwrapped.interventions[a] for a in acts]
            assert all(goal not in iv.targets for iv in chosen if iv is not None)
            if name == "ood_values":
                assert all(iv.kind == "do" and len(iv.targets) == 1 for iv in chosen) and len(chosen) == 5 * 6
                assert {float(iv.node_params(iv.targets[0], 1.0)[1]) for iv in chosen} == set(suite.OOD_VALUES)
            if name in ("ood_joint", "distractor_shift"):
                # every pair of the 5 non-goal nodes at the 4 sign combinations, none of them in the data
                assert len(chosen) == 10 * 4 and all(iv.kind == "do" and len(iv.targets) == 2 for iv in chosen)
        assert menus["distractor_shift"][0].unwrapped.distractor_shift
        assert not menus["ood_joint"][0].unwrapped.distractor_shift
        shifted = menus["mechanism_shift"][0].unwrapped
        assert shifted.mechanism_shift == {goal: -1.0}


def test_samples_to_reach(suite):
    ks = [0, 50, 200, 1000]
    assert suite.samples_to_reach({0: 0.1, 50: 0.95, 200: 0.9, 1000: 0.9}, 0.9, ks) == 50
    assert suite.samples_to_reach({0: 0.1, 50: 0.2, 200: 0.3, 1000: 0.4}, 0.9, ks) == 2000  # never: 2 x max K
    assert suite.samples_to_reach({0: 0.95, 50: 0.9, 200: 0.9, 1000: 0.9}, 0.9, ks) == 50  # none needed: min K > 0


def _plan(**rates):
    return {name: {"success_rate": r, "success_rate_se": 0.0} for name, r in rates.items()}


def _scene(joint_true, joint_learned, values_true, values_learned, distractor, need):
    half = lambda r: _plan(causal=r[0], noncausal=r[1], pets=r[2])  # noqa: E731
    return {"results": {
        "ood_joint": {"planning": {**_plan(oracle=0.9, random=0.1), "true_latents": half(joint_true),
                                   "learned": half(joint_learned)}},
        "ood_values": {"planning": {**_plan(oracle=0.5, random=0.1), "true_latents": half(values_true),
                                    "learned": half(values_learned)}},
        "distractor_shift": {"planning": {**_plan(oracle=0.9, random=0.1), "learned": half(distractor)}},
        "mechanism_shift": {"halves": {"true_latents": {"sample_ratio": need[1] / need[0]},
                                       "learned": {"sample_ratio": 1.0}}},
    }}


def test_summary_definitions(suite):
    scenes = {"one": _scene((0.8, 0.2, 0.4), (0.7, 0.3, 0.2), (0.5, 0.4, 0.4), (0.45, 0.4, 0.4), (0.6, 0.1, 0.1),
                            (50, 2000)),
              "two": _scene((0.6, 0.1, 0.2), (0.3, 0.1, 0.1), (0.05, 0.1, 0.1), (0.0, 0.1, 0.1), (0.3, 0.1, 0.1),
                            (200, 1000))}
    s = suite.summarize(scenes)
    # causal / best of (non-causal, PETS), minimum over scenes: one 0.8 / 0.4, two 0.6 / 0.2
    assert s["true_causal_over_noncausal_ood_joint_min"] == pytest.approx(2.0)
    assert s["adaptation_sample_ratio_min"] == pytest.approx(5.0)
    # learned / true causal over the OOD scenarios; scene two's ood_values (true 0.05 < 0.1) is not counted;
    # distractor_shift is compared with the true-latent ood_joint
    ratios = [0.7 / 0.8, 0.45 / 0.5, 0.6 / 0.8, 0.3 / 0.6, 0.3 / 0.6]
    assert s["learned_over_true_causal_ood_min"] == pytest.approx(min(ratios))
    assert not s["per_scene"]["two"]["learned_over_true_causal_ood"]["ood_values"]["counted"]
    assert s["learned_causal_over_noncausal_ood_joint_min"] == pytest.approx(min(0.7 / 0.3, 0.3 / 0.1))
    goals = s["goals"]
    assert goals["true_causal_over_noncausal_ood_joint_min"]["met"]
    assert goals["adaptation_sample_ratio_min"]["met"]
    assert not goals["learned_over_true_causal_ood_min"]["met"]
    assert np.isclose(goals["learned_causal_over_noncausal_ood_joint_min"]["value"], 7 / 3)
