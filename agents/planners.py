"""Intervention planning with a model of the latent causal system.

A model predicts the next latents ``(num, n)`` under every action from standard normal noise
``(num, n)`` (so every action is judged on the same random numbers, which makes the comparison of
actions far less noisy than independent samples), given the current latents and regime when the
world is persistent. ``OracleSCMModel`` is the true SCM of a causal scene: it gives the exact
predictive distribution, including the AR(1) persistence of the exogenous noise, and is the
ceiling every learned model is compared with.

Planners: ``OneStepPlanner`` (exhaustive search over the menu, one step ahead), ``CEMPlanner``
(cross-entropy method over action sequences with imagined multi-step rollouts, receding horizon)
and ``RandomPlanner`` (the floor). Rewards are functions of latents ``(num, n) -> (num,)``:
``goal_reward`` for the reach task in true coordinates, ``goal_image_reward`` for a goal given as
an image and read through an encoder.
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
        """Next latents ``(num, n)`` under ``action`` from standard normal ``noise`` ``(num, n)``.

        ``z_now`` is the current latents, either ``(n,)`` (shared by every sample) or ``(num, n)``
        (one per sample: multi-step imagined rollouts chain predictions this way), and
        ``regime_now`` the action that produced them. Models of memoryless worlds ignore both.
        """
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
            if not 0 <= regime_now < self.num_actions:
                raise ValueError(f"regime_now {regime_now} is outside 0..{self.num_actions - 1}")
            eps_now = self.scm.abduct(_rows(z_now, len(eps), self.n), self.interventions[regime_now])
            eps = self.persistence * eps_now + math.sqrt(1.0 - self.persistence**2) * eps
        return self.scm.forward(eps, self.interventions[action])


def _rows(z_now: np.ndarray, num: int, n: int) -> np.ndarray:
    """``z_now`` ``(n,)`` or ``(num, n)`` as float64 ``(1, n)`` or ``(num, n)`` (broadcasts against ``(num, n)``)."""
    z = np.asarray(z_now, dtype=np.float64)
    if z.shape == (n,):
        return z.reshape(1, n)
    if z.shape != (num, n):
        raise ValueError(f"z_now must have shape ({n},) or ({num}, {n}) to match the noise, got {z.shape}")
    return z


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
        return cls(OracleSCMModel.from_env(env), _env_task_reward(env, "OneStepPlanner"), **kwargs)

    def action_values(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> np.ndarray:
        """Expected reward ``(len(actions),)`` of every considered action."""
        noise = self.rng.standard_normal((self.num_samples, self.model.n))
        batched = getattr(self.model, "predict_actions", None)
        if batched is not None:
            # one pass for every action (models that offer it), the same numbers as action by action
            z = batched(self.actions, noise, z_now, regime_now)
            rewards = self.reward_fn(z.reshape(-1, self.model.n)).reshape(len(self.actions), -1)
            return rewards.mean(axis=1)
        return np.array([float(np.mean(self.reward_fn(self.model.predict(a, noise, z_now, regime_now))))
                         for a in self.actions])

    def act(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> int:
        """The action with the highest expected reward."""
        return self.actions[int(np.argmax(self.action_values(z_now, regime_now)))]


class LatentGoalReward:
    """Reward ``-||z[:, nodes] - goal[nodes]||_2`` ``(num,)`` on latents ``(num, n)``.

    Args:
        goal: ``(n,)`` goal latents.
        nodes: the latent coordinates that count (default: all).
    """

    def __init__(self, goal: np.ndarray, nodes: Sequence[int] | None = None) -> None:
        goal = np.asarray(goal, dtype=np.float64)
        if goal.ndim != 1 or not np.all(np.isfinite(goal)):
            raise ValueError(f"goal must be a finite (n,) vector, got shape {goal.shape}")
        self.goal = goal
        n = len(goal)
        self.nodes = list(range(n)) if nodes is None else [int(i) for i in nodes]
        if not self.nodes or min(self.nodes) < 0 or max(self.nodes) >= n or len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes must be distinct latent indices in 0..{n - 1}, got {nodes}")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self.goal):
            raise ValueError(f"latents must have shape (num, {len(self.goal)}), got {z.shape}")
        return -np.linalg.norm(z[:, self.nodes] - self.goal[self.nodes], axis=1)


def goal_image_reward(encoder: Any, goal_image: np.ndarray, nodes: Sequence[int] | None = None) -> LatentGoalReward:
    """A reward on latents from a goal image: ``-||z[:, nodes] - z_goal[nodes]||_2`` ``(num,)``.

    Args:
        encoder: any object with ``encode(images) -> (N, n)`` for uint8 images ``(N, H, W, 3)``
            (a ``CausalWorldModel`` or an ``ImageCRLResult``); the planner's model must predict
            latents in the same coordinates.
        goal_image: uint8 ``(H, W, 3)`` or ``(1, H, W, 3)``.
        nodes: learned latent indices that define the goal (default: all), e.g.
            ``[model.latent_of_node[goal_node]]`` to ask for one true node only.
    """
    image = np.asarray(goal_image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or len(image) != 1 or image.shape[-1] != 3:
        raise ValueError(f"goal_image must be one (H, W, 3) image, got shape {np.shape(goal_image)}")
    z_goal = np.asarray(encoder.encode(image), dtype=np.float64)
    if z_goal.ndim != 2 or len(z_goal) != 1:
        raise ValueError(f"encoder.encode returned shape {z_goal.shape} for one image; expected (1, n)")
    return LatentGoalReward(z_goal[0], nodes)


def _check_actions(actions: Sequence[int] | None, num_actions: int) -> list[int]:
    chosen = list(range(num_actions)) if actions is None else [int(a) for a in actions]
    if not chosen or min(chosen) < 0 or max(chosen) >= num_actions or len(set(chosen)) != len(chosen):
        raise ValueError(f"actions must be a non-empty subset of 0..{num_actions - 1} without repeats, "
                         f"got {actions}")
    return chosen


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _env_task_reward(env: Any, planner: str) -> Callable[[np.ndarray], np.ndarray]:
    scene = env.unwrapped
    if getattr(scene, "goal_node", None) is None:
        raise ValueError(f"the env has no task: make it with task='reach' or pass a reward_fn to "
                         f"{planner}(OracleSCMModel.from_env(env), reward_fn)")
    return goal_reward(scene.goal_node, scene.goal_value)


class CEMPlanner:
    """Model-predictive control over a discrete intervention menu with the cross-entropy method.

    Every ``act`` plans afresh (receding horizon): a categorical distribution per future step
    over the allowed actions starts uniform; each iteration samples ``population`` action
    sequences of length ``horizon``, scores every sequence by the Monte Carlo mean of its
    discounted imagined return, ``sum_h discount^h * reward_fn(z_{h+1})``, and refits the
    categoricals to the ``elites`` best sequences (``p <- smoothing * p + (1 - smoothing) *
    elite frequencies``). A final pass of coordinate ascent polishes the best sequence seen, and
    its first action is returned.

    Imagined rollouts chain ``model.predict``: the imagined latents ``(num_samples, n)`` and the
    imagined action of one step are ``z_now`` / ``regime_now`` of the next, so a persistent world
    carries its state through the plan. All sequences share the same standard normal noise
    ``(horizon, num_samples, n)`` (common random numbers), so a rollout prefix is computed once
    per ``act`` and reused by every sequence that shares it. The noise stream is the one
    ``OneStepPlanner`` draws with the same seed and ``num_samples``: with ``horizon=1`` both
    planners judge actions on identical samples.

    Args:
        model: a ``LatentModel``.
        reward_fn: latents ``(num, n)`` -> rewards ``(num,)``.
        horizon: planned steps.
        population: sequences sampled per iteration.
        elites: best sequences the distribution is refitted to (``<= population``).
        iterations: CEM iterations per ``act``.
        num_samples: imagined rollouts per sequence.
        discount: weight ``discount^h`` of the reward ``h`` steps ahead, in ``(0, 1]``.
        smoothing: weight of the old distribution in the refit, in ``[0, 1)``.
        warm_start: start each ``act`` from the previous plan shifted by one step (its best
            sequence joins the population, its distribution mixed with uniform is the start);
            ``reset()`` forgets it.
        polish: after the CEM iterations, one pass of coordinate ascent over the steps of the best
            sequence (last step first; ``horizon * len(actions)`` more sequences, most of their
            prefixes already computed).
        actions: the actions to consider (default: all).
        seed: seeds the imagined noise and the sequence sampling.
    """

    def __init__(self, model: LatentModel, reward_fn: Callable[[np.ndarray], np.ndarray], *, horizon: int = 3,
                 population: int = 64, elites: int = 8, iterations: int = 4, num_samples: int = 32,
                 discount: float = 1.0, smoothing: float = 0.25, warm_start: bool = True,
                 polish: bool = True, actions: Sequence[int] | None = None, seed: int = 0) -> None:
        self.horizon = _positive_int(horizon, "horizon")
        self.population = _positive_int(population, "population")
        self.elites = _positive_int(elites, "elites")
        self.iterations = _positive_int(iterations, "iterations")
        self.num_samples = _positive_int(num_samples, "num_samples")
        if self.elites > self.population:
            raise ValueError(f"elites ({elites}) cannot exceed population ({population})")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must lie in (0, 1], got {discount}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
        self.model = model
        self.reward_fn = reward_fn
        self.discount = float(discount)
        self.smoothing = float(smoothing)
        self.actions = _check_actions(actions, model.num_actions)
        self.noise_rng = np.random.default_rng(seed)
        # a separate stream for the sequences keeps the noise stream equal to OneStepPlanner's
        self.search_rng = np.random.default_rng([int(seed), 1])
        self.warm_start = bool(warm_start)
        self.polish = bool(polish)
        self._previous: tuple[np.ndarray, tuple[int, ...]] | None = None
        self.last_plan: tuple[list[int], float] | None = None

    @classmethod
    def oracle(cls, env: Any, **kwargs: Any) -> CEMPlanner:
        """The planner with the true SCM and the env's own reach task (the ceiling)."""
        return cls(OracleSCMModel.from_env(env), _env_task_reward(env, "CEMPlanner"), **kwargs)

    def plan(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> tuple[list[int], float]:
        """The best action sequence found (length ``horizon``) and its estimated return."""
        H, S, K = self.horizon, self.num_samples, len(self.actions)
        noise = self.noise_rng.standard_normal((H, S, self.model.n))
        weights = self.discount ** np.arange(H)
        # prefix (positions into self.actions) -> (imagined latents after it, per-sample return so far)
        cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

        def value(sequence: tuple[int, ...]) -> float:
            z, regime, ret = z_now, regime_now, np.zeros(S)
            for h in range(H):
                prefix = sequence[: h + 1]
                hit = cache.get(prefix)
                if hit is None:
                    action = self.actions[sequence[h]]
                    z_next = np.asarray(self.model.predict(action, noise[h], z, regime), dtype=np.float64)
                    reward = np.asarray(self.reward_fn(z_next), dtype=np.float64)
                    if reward.shape != (S,):
                        raise ValueError(f"reward_fn must return shape ({S},), got {reward.shape}")
                    hit = (z_next, ret + weights[h] * reward)
                    cache[prefix] = hit
                z, ret = hit
                regime = self.actions[sequence[h]]
            return float(np.mean(ret))

        probs = np.full((H, K), 1.0 / K)
        best: tuple[float, tuple[int, ...]] | None = None
        if self.warm_start and self._previous is not None:
            # receding horizon: the last plan, shifted by one step, is a strong candidate, and its
            # distribution (mixed with uniform to keep exploring) a better start than uniform
            previous_probs, previous_best = self._previous
            probs[:-1] = 0.5 * previous_probs[1:] + 0.5 / K
            shifted = (*previous_best[1:], previous_best[-1])
            best = (value(shifted), shifted)
        for _ in range(self.iterations):
            cumulative = np.cumsum(probs, axis=1)
            u = self.search_rng.random((self.population, H))
            sequences = np.stack([np.minimum(np.searchsorted(cumulative[h], u[:, h], side="right"), K - 1)
                                  for h in range(H)], axis=1)
            if best is not None:
                sequences[0] = best[1]  # keep the best so far in the population
            values = np.array([value(tuple(int(a) for a in seq)) for seq in sequences])
            for v, seq in zip(values, sequences, strict=True):
                key = tuple(int(a) for a in seq)
                # ties (actions with identical effect on the reward) go to the earliest menu entry,
                # as in OneStepPlanner
                if best is None or v > best[0] or (v == best[0] and key < best[1]):
                    best = (float(v), key)
            elite = sequences[np.argsort(-values, kind="stable")[: self.elites]]
            frequencies = np.stack([np.bincount(elite[:, h], minlength=K) for h in range(H)]) / self.elites
            probs = self.smoothing * probs + (1.0 - self.smoothing) * frequencies
        assert best is not None
        if self.polish:
            # one pass of coordinate ascent, last step first, so the first action is chosen against
            # the final tail: a population of a few dozen rarely finds the best tail for every first
            # action, and that search noise would otherwise leak into the action taken now
            for h in reversed(range(H)):
                for k in range(K):
                    candidate = (*best[1][:h], k, *best[1][h + 1:])
                    v = value(candidate)
                    if v > best[0] or (v == best[0] and candidate < best[1]):
                        best = (v, candidate)
        self._previous = (probs, best[1])
        plan = ([self.actions[i] for i in best[1]], best[0])
        self.last_plan = plan
        return plan

    def reset(self) -> None:
        """Forget the previous plan (call at the start of an episode when ``warm_start`` is on)."""
        self._previous = None

    def act(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> int:
        """The first action of the best sequence (replan every step)."""
        return self.plan(z_now, regime_now)[0][0]


class RandomPlanner:
    """Uniformly random actions from the menu (the floor every planner is compared with).

    Args:
        num_actions: size of the menu.
        seed: seeds the choices.
        actions: the actions to draw from (default: all).
    """

    def __init__(self, num_actions: int, seed: int = 0, *, actions: Sequence[int] | None = None) -> None:
        self.num_actions = _positive_int(num_actions, "num_actions")
        self.actions = _check_actions(actions, self.num_actions)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_env(cls, env: Any, seed: int = 0, **kwargs: Any) -> RandomPlanner:
        """Random actions over the env's ``Discrete`` action space."""
        return cls(int(env.action_space.n), seed, **kwargs)

    def act(self, z_now: np.ndarray | None = None, regime_now: int | None = None) -> int:
        """A uniformly random allowed action (the arguments are ignored)."""
        return self.actions[int(self.rng.integers(len(self.actions)))]
