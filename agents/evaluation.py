"""Running planners in a causal scene and scoring them.

    from causal_wm.agents.evaluation import ModelPolicy, latent_goal_reward, run_policy
    reward = latent_goal_reward(model, scene.goal_node, scene.goal_value)
    policy = ModelPolicy(model, OneStepPlanner(model.for_menu(scene.interventions), reward))
    metrics = run_policy(env, policy, steps=200, seed=0)

A policy is any callable ``(obs, info) -> action``; ``info`` is the info dict of the last step (or of
``reset``), so an oracle may read the true latents ``info["z"]`` and a learned policy must not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Policy = Callable[[np.ndarray, dict[str, Any]], int]


def latent_goal_reward(model: Any, goal_node: int, goal_value: float) -> Callable[[np.ndarray], np.ndarray]:
    """The reach task's reward in a learned latent space: ``-|z_hat_k - g| / |b_k|`` ``(num,)`` where
    ``k`` is the learned latent of the true ``goal_node`` and ``z_hat_k = a_k + b_k * z`` its calibration
    (``CausalWorldModel.calibration``), so the reward is in the env's units."""
    node = int(goal_node)
    if node not in model.latent_of_node:
        raise ValueError(f"goal node {node} has no learned latent: the training data must intervene on it")
    k = model.latent_of_node[node]
    if k not in model.calibration:
        raise ValueError(f"the learned latent of goal node {node} has no calibration")
    _, b = model.calibration[k]
    target = model.node_value(node, goal_value)

    def reward(z: np.ndarray) -> np.ndarray:
        return -np.abs(z[:, k] - target) / abs(b)
    return reward


class ModelPolicy:
    """A planner driven by a learned model: encodes the observation, then asks the planner.

    Args:
        model: anything with ``encode(observations) -> (N, n)``.
        planner: anything with ``act(z_now, regime_now) -> int``.
    """

    def __init__(self, model: Any, planner: Any) -> None:
        self.model, self.planner = model, planner

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        z_now = self.model.encode(np.asarray(obs)[None])[0]
        return int(self.planner.act(z_now, int(info.get("regime", 0))))


class OraclePolicy:
    """A planner on the true latents (``info["z"]``): the ceiling."""

    def __init__(self, planner: Any) -> None:
        self.planner = planner

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        return int(self.planner.act(info["z"], int(info.get("regime", 0))))


class RandomPolicy:
    """Uniform over the env's actions (or over ``actions``): ``RandomPlanner`` as a policy."""

    def __init__(self, num_actions: int, seed: int = 0, actions: list[int] | None = None) -> None:
        from causal_wm.agents.planners import RandomPlanner

        self.planner = RandomPlanner(num_actions, seed, actions=actions)

    def __call__(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        return self.planner.act()


def run_policy(env: Any, policy: Policy, *, steps: int = 200, seed: int = 0, tolerance: float = 0.5,
               progress: bool = False) -> dict[str, Any]:
    """Run ``policy`` for ``steps`` env steps (resetting at episode ends) on a reach task.

    Returns:
        ``mean_reward`` (per step), ``success_rate`` (fraction of steps that end with the goal node
        within ``tolerance`` of the goal value, in the env's units), ``mean_distance`` and the
        ``actions`` chosen (counts per action).
    """
    from tqdm.auto import tqdm

    scene = env.unwrapped
    # the scene's info carries "regime" and the true latents "z" (used for scoring only)
    goal_node, goal_value = getattr(scene, "goal_node", None), getattr(scene, "goal_value", None)
    if goal_node is None:
        raise ValueError("the env has no reach task: make it with task='reach'")
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    obs, info = env.reset(seed=seed)
    rewards, distances = np.zeros(steps), np.zeros(steps)
    counts = np.zeros(env.action_space.n, dtype=np.int64)
    for t in tqdm(range(steps), disable=not progress, leave=False, desc="plan"):
        action = policy(obs, info)
        counts[action] += 1
        obs, reward, terminated, truncated, info = env.step(action)
        rewards[t] = reward
        distances[t] = abs(float(info["z"][goal_node]) - goal_value)
        if terminated or truncated:
            obs, info = env.reset()
    return {"mean_reward": float(rewards.mean()), "success_rate": float(np.mean(distances < tolerance)),
            "mean_distance": float(distances.mean()), "steps": int(steps), "tolerance": float(tolerance),
            "action_counts": counts.tolist()}


def compare_planners(model: Any, env: Any, *, planner: str = "one-step", horizon: int = 3, steps: int = 200,
                     num_samples: int = 256, tolerance: float = 0.5, seed: int = 0,
                     actions: list[int] | None = None, progress: bool = False) -> dict[str, Any]:
    """The same planner with the learned ``model`` (from frames) and with the true SCM (oracle, from
    the true latents), and random actions, on the reach task of ``env`` (a causal scene).

    Args:
        model: a ``CausalWorldModel`` whose calibration covers the goal node.
        env: a causal scene made with ``task="reach"``.
        planner: ``"one-step"`` (``OneStepPlanner``) or ``"cem"`` (``CEMPlanner`` with ``horizon``).
        actions: allowed actions (default: the whole menu).

    Returns:
        ``{"planners": {"learned" | "oracle" | "random": run_policy metrics}, "settings": ...}``.
    """
    from causal_wm.agents.planners import CEMPlanner, OneStepPlanner, OracleSCMModel, goal_reward

    scene = env.unwrapped
    if getattr(scene, "goal_node", None) is None:
        raise ValueError("the env has no reach task: make it with task='reach'")
    if planner not in ("one-step", "cem"):
        raise ValueError(f"planner must be 'one-step' or 'cem', got {planner!r}")
    allowed = list(range(env.action_space.n)) if actions is None else list(actions)

    def make(latent_model: Any, reward: Callable[[np.ndarray], np.ndarray]) -> Any:
        if planner == "cem":
            return CEMPlanner(latent_model, reward, horizon=horizon, num_samples=max(8, num_samples // 8),
                              actions=allowed, seed=seed)
        return OneStepPlanner(latent_model, reward, num_samples=num_samples, actions=allowed, seed=seed)

    learned = make(model.for_menu(scene.interventions), latent_goal_reward(model, scene.goal_node, scene.goal_value))
    oracle = make(OracleSCMModel.from_env(env), goal_reward(scene.goal_node, scene.goal_value))
    policies: dict[str, Policy] = {
        "learned": ModelPolicy(model, learned),
        "oracle": OraclePolicy(oracle),
        "random": RandomPolicy(env.action_space.n, seed=seed, actions=allowed),
    }
    results = {name: run_policy(env, policy, steps=steps, seed=seed, tolerance=tolerance, progress=progress)
               for name, policy in policies.items()}
    return {"planners": results, "settings": {"planner": planner, "horizon": horizon, "steps": steps,
                                              "num_samples": num_samples, "tolerance": tolerance, "seed": seed,
                                              "goal_node": int(scene.goal_node), "goal_value": scene.goal_value}}
