"""Intervention planning with a model of the latent causal system.

A model predicts the next latents ``(num, n)`` under every action from standard normal noise
``(num, n)`` (so every action is judged on the same random numbers, which makes the comparison of
actions far less noisy than independent samples), given the current latents and regime when the
world is persistent. ``OracleSCMModel`` is the true SCM of a causal scene: it gives the exact
predictive distribution, including the AR(1) persistence of the exogenous noise, and is the
ceiling every learned model is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from causal_wm.scm import SCM, Intervention


class LatentModel(Protocol):
    """What a planner needs from a model."""

    n: int
    num_actions: int

    def predict(self, action: int, noise: np.ndarray, z_now: np.ndarray | None = None,
                regime_now: int | None = None) -> np.ndarray:
        """Next latents ``(num, n)`` under ``action`` from standard normal ``noise`` ``(num, n)``."""
        ...


class OracleSCMModel:
    """The true SCM of a causal scene (``env.unwrapped.scm``, ``interventions``, ``persistence``).

    With persistence ``rho > 0`` the next exogenous noise is ``rho * eps_now + sqrt(1 - rho^2) * noise``
    where ``eps_now`` is recovered exactly from the current latents and regime (abduction).
    """

    def __init__(self, scm: SCM, interventions: Sequence[Intervention | None], persistence: float = 0.0) -> None:
        if not 0.0 <= persistence < 1.0:
            raise ValueError(f"persistence must lie in [0, 1), got {persistence}")
        self.scm = scm
        self.interventions = list(interventions)
        self.persistence = float(persistence)
        self.n = scm.n
        self.num_actions = len(self.interventions)

    @classmethod
    def from_env(cls, env: Any) -> OracleSCMModel:
        scene = env.unwrapped
        for name in ("scm", "interventions", "persistence"):
            if not hasattr(scene, name):
                raise ValueError(f"env has no {name!r}: the oracle needs a causal scene of causal_wm.envs")
        return cls(scene.scm, scene.interventions, scene.persistence)

    def predict(self, action: int, noise: np.ndarray, z_now: np.ndarray | None = None,
                regime_now: int | None = None) -> np.ndarray:
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action {action} is outside 0..{self.num_actions - 1}")
        eps = np.asarray(noise, dtype=np.float64)
        if self.persistence > 0.0 and z_now is not None:
            if regime_now is None:
                raise ValueError("a persistent world needs the current regime with the current latents")
            eps_now = self.scm.abduct(np.asarray(z_now, dtype=np.float64).reshape(1, self.n),
                                      self.interventions[regime_now])
            eps = self.persistence * eps_now + math.sqrt(1.0 - self.persistence**2) * eps
        return self.scm.forward(eps, self.interventions[action])


def goal_reward(goal_node: int, goal_value: float) -> Callable[[np.ndarray], np.ndarray]:
    """The reach task's reward on latents ``(num, n)``: ``-|z[:, goal_node] - goal_value|`` ``(num,)``."""
    def reward(z: np.ndarray) -> np.ndarray:
        return -np.abs(z[:, goal_node] - goal_value)
    return reward


class OneStepPlanner:
    """Exhaustive one-step search over a discrete intervention menu.

    Every allowed action is scored by the Monte Carlo mean of ``reward_fn`` over ``num_samples``
    imagined next states (common random numbers across actions); ``act`` returns the best one.

    Args:
        model: a ``LatentModel`` (``OracleSCMModel`` or a learned one).
        reward_fn: latents ``(num, n)`` -> rewards ``(num,)``.
        num_samples: imagined samples per action.
        actions: the actions to consider (default: all).
        seed: seeds the imagined noise.
    """

    def __init__(self, model: LatentModel, reward_fn: Callable[[np.ndarray], np.ndarray], *,
                 num_samples: int = 256, actions: Sequence[int] | None = None, seed: int = 0) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.model = model
        self.reward_fn = reward_fn
        self.num_samples = int(num_samples)
        self.actions = list(range(model.num_actions)) if actions is None else [int(a) for a in actions]
        if not self.actions or min(self.actions) < 0 or max(self.actions) >= model.num_actions:
            raise ValueError(f"actions must be a non-empty subset of 0..{model.num_actions - 1}, got {actions}")
        self.rng = np.random.default_rng(seed)

    @classmethod
    def oracle(cls, env: Any, **kwargs: Any) -> OneStepPlanner:
        """The planner with the true SCM and the env's own reach task (the ceiling)."""
        scene = env.unwrapped
        if getattr(scene, "goal_node", None) is None:
            raise ValueError("the env has no task: make it with task='reach' or pass a reward_fn to "
                             "OneStepPlanner(OracleSCMModel.from_env(env), reward_fn)")
        return cls(OracleSCMModel.from_env(env), goal_reward(scene.goal_node, scene.goal_value), **kwargs)

    def action_values(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> np.ndarray:
        """Expected reward ``(len(actions),)`` of every considered action."""
        noise = self.rng.standard_normal((self.num_samples, self.model.n))
        return np.array([float(np.mean(self.reward_fn(self.model.predict(a, noise, z_now, regime_now))))
                         for a in self.actions])

    def act(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> int:
        """The action with the highest expected reward."""
        return self.actions[int(np.argmax(self.action_values(z_now, regime_now)))]
