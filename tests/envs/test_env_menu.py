"""The intervention menu, the info keys, the goal-reaching task and bad-input errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.scm import Intervention, ancestors, parents


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Shadow-v0"])
def test_default_menu_structure(env_id):
    env = gym.make(env_id).unwrapped
    ivs = env.interventions
    assert isinstance(ivs, tuple) and ivs[0] is None
    assert env.action_space.n == len(ivs) == 1 + 5 * env.n
    names = [iv.name for iv in ivs[1:]]
    assert all(names) and len(set(names)) == len(names)
    for t in range(env.n):
        mine = [iv for iv in ivs[1:] if iv.targets == (t,)]
        hard = [iv for iv in mine if iv.kind == "hard"]
        assert len(set(hard)) == 2
        assert sorted(iv.shift[0] for iv in hard) == [-1.0, 1.0]
        assert all(iv.std == (0.7,) for iv in hard)
        do = [iv for iv in mine if iv.kind == "do"]
        assert sorted(iv.value[0] for iv in do) == [-1.5, 0.0, 1.5]
        assert all(iv.std == (0.05,) for iv in do)


def test_menu_options():
    scale = gym.make("causal_wm/Balls-v0", hard_interventions="scale", do_values=()).unwrapped
    assert len(scale.interventions) == 1 + 2 * scale.n
    for iv in scale.interventions[1:]:
        t = iv.targets[0]
        factor, mean, std = scale.scm.node_params(iv)
        assert factor[t] == 0.0 and mean[t] == 0.0
        assert std[t] / scale.scm.noise_std[t] in (0.5, 2.0)
    both = gym.make("causal_wm/Balls-v0", hard_interventions="both", do_values=(0.5,)).unwrapped
    assert len(both.interventions) == 1 + 5 * both.n
    iv_object = Intervention.soft((1, 3), parent_scale=0.2, name="weak links")
    multi = gym.make("causal_wm/Balls-v0", multi_node=[(0, 2), iv_object, {"targets": [4, 5], "kind": "do",
                                                                            "value": [0.0, 1.0]}]).unwrapped
    tail = multi.interventions[-3:]
    assert tail[0].targets == (0, 2) and tail[0].kind == "hard" and tail[0].shift == (1.0, 1.0)
    assert "ball0.x" in tail[0].name and "ball1.x" in tail[0].name
    assert tail[1] is iv_object
    assert tail[2] == Intervention.do((4, 5), (0.0, 1.0))
    multi.reset(seed=0)
    _, _, _, _, info = multi.step(len(multi.interventions) - 3)
    assert info["regime"] == len(multi.interventions) - 3 and info["intervention"].targets == (0, 2)


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Shadow-v0"])
def test_info_keys(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    assert set(info) >= {"regime", "intervention", "z"}
    assert info["regime"] == 0 and info["intervention"] is None
    n = env.unwrapped.n
    assert info["z"].dtype == np.float64 and info["z"].shape == (n,)
    obs, reward, terminated, truncated, info = env.step(2)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert info["regime"] == 2 and info["intervention"] == env.unwrapped.interventions[2]
    assert reward == 0.0 and terminated is False and truncated is False
    A = env.unwrapped.graph
    assert A.shape == (n, n) and env.unwrapped.scm.graph is A


def test_reach_task_reward_and_goal_menu():
    env = gym.make("causal_wm/Balls-v0", task="reach").unwrapped
    A = env.graph
    counts = [len(ancestors(A, j)) for j in range(env.n)]
    goal = env.goal_node
    assert counts[goal] == max(counts) and all(c < max(counts) for c in counts[goal + 1:])
    assert parents(A, goal)
    assert env.goal_value == 1.0
    assert all(goal not in iv.targets for iv in env.interventions[1:])
    assert len(env.interventions) == 1 + 5 * (env.n - 1)
    env.reset(seed=0)
    for a in range(env.action_space.n):
        _, reward, _, _, info = env.step(a)
        assert reward == -abs(info["z"][goal] - 1.0)
    # an agent that acts through the goal's ancestors can move the goal: do(parent) shifts its mean
    allowed = gym.make("causal_wm/Balls-v0", task="reach", goal_value=-0.5, allow_goal_interventions=True)
    assert any(goal in iv.targets for iv in allowed.unwrapped.interventions[1:])
    _, info = allowed.reset(seed=1)
    _, reward, _, _, info = allowed.step(0)
    assert reward == -abs(info["z"][goal] + 0.5)


def test_reach_with_explicit_goal_and_shadow_default():
    shadow = gym.make("causal_wm/Shadow-v0", task="reach").unwrapped
    assert shadow.goal_node == 3  # shadow_len: two ancestors, ties to the highest index
    explicit = gym.make("causal_wm/Shadow-v0", task="reach", goal_node=2, goal_value=0.0).unwrapped
    assert explicit.goal_node == 2 and all(2 not in iv.targets for iv in explicit.interventions[1:])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"graph": np.array([[0, 1], [1, 0]]), "num_balls": 1}, "cycle"),
    ({"graph": np.zeros((3, 3))}, "adjacency"),
    ({"graph": np.zeros((6, 5))}, "square"),
    ({"task": "reach", "goal_node": 6}, "goal_node"),
    ({"task": "reach", "goal_node": -1}, "goal_node"),
    ({"task": "reach", "graph": np.zeros((6, 6))}, "no parents"),
    ({"task": "fly"}, "task"),
    ({"goal_node": 1}, "task='reach'"),
    ({"persistence": 1.0}, "persistence"),
    ({"persistence": -0.1}, "persistence"),
    ({"persistence": "high"}, "persistence"),
    ({"keep_in_view": "truncate", "persistence": 0.5}, "persistence"),
    ({"keep_in_view": "wrap"}, "keep_in_view"),
    ({"hard_interventions": "soft"}, "hard_interventions"),
    ({"do_values": ("a",)}, "do_values"),
    ({"multi_node": [(0, 9)]}, "multi_node"),
    ({"num_balls": 0}, "num_balls"),
    ({"render_mode": "ansi"}, "render_mode"),
])
def test_bad_balls_input_raises_value_error(kwargs, match):
    with warnings.catch_warnings():
        # gym.make itself warns about an unknown render mode before the env rejects it
        warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
        with pytest.raises(ValueError, match=match):
            gym.make("causal_wm/Balls-v0", **kwargs)


def test_unknown_kwarg_is_named():
    for env_id in ("causal_wm/Balls-v0", "causal_wm/Shadow-v0"):
        with pytest.raises((TypeError, ValueError), match="num_ballz"):
            gym.make(env_id, num_ballz=3)
    with pytest.raises(ValueError, match="shadow_noise"):
        gym.make("causal_wm/Shadow-v0", shadow_noise=1.5)


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Shadow-v0"])
def test_bad_actions_raise_value_error(env_id):
    env = gym.make(env_id, disable_env_checker=True)
    env.reset(seed=0)
    K = env.action_space.n
    for action in (K, -1, 1.5, "1", None, np.array([1, 2])):
        with pytest.raises(ValueError, match="action"):
            env.step(action)
    env.step(np.int64(K - 1))
    env.step(np.array(1))
