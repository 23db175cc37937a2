"""Behaviour policies of the collector.

A policy chooses the action of every lane (sub-environment) from that lane's observation. Every
episode gets its own random stream, seeded from ``(seed, episode index)`` by the collector, so an
episode's actions do not depend on which lane runs it or on what ran before: that is what makes a
resumed collection equal to an uninterrupted one.

Built-in policies (``policy=`` of ``collect``):

- ``"seeing"``: always the action of regime 0 (no intervention).
- ``"acting"``: uniform over the whole action space, i.e. over the full intervention menu *including*
  regime 0, so with a menu of ``K`` entries a fraction ``1/K`` of the steps is observational.
- ``"mix:p"`` or a float ``p`` in ``[0, 1]``: seeing with probability ``p``, else uniform over the
  interventional actions (regime ``!= 0``).
- ``"balanced"`` (with ``per_regime``): exactly ``per_regime`` steps of every regime; see
  ``BalancedPolicy``.
- a callable ``obs -> action`` or a stable-baselines3 model (anything with ``.predict``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Policy:
    """Base class: ``start`` is called when a lane begins an episode, ``act`` for each of its steps."""

    description = "policy"

    def start(self, lane: int, episode: int, rng: np.random.Generator) -> None:
        """Lane ``lane`` begins episode ``episode``; ``rng`` is that episode's own stream."""

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        raise NotImplementedError


class _RandomPolicy(Policy):
    """Base of the seeded random policies: one generator per lane, reset at every episode start.

    Uniform numbers are drawn ``_DRAWS`` at a time (one Generator call per scalar costs more than the
    rest of a collector step); the sequence is still a pure function of the episode's stream.
    """

    _DRAWS = 64

    def __init__(self, num_lanes: int) -> None:
        self._rngs: list[np.random.Generator | None] = [None] * num_lanes
        self._uniforms: list[list[float]] = [[] for _ in range(num_lanes)]

    def start(self, lane: int, episode: int, rng: np.random.Generator) -> None:
        self._rngs[lane] = rng
        self._uniforms[lane] = []

    def _rng(self, lane: int) -> np.random.Generator:
        rng = self._rngs[lane]
        assert rng is not None, "act before start"
        return rng

    def _uniform(self, lane: int) -> float:
        """The lane's next uniform number in ``[0, 1)``."""
        pool = self._uniforms[lane]
        if not pool:
            pool.extend(self._rng(lane).random(self._DRAWS)[::-1].tolist())
        return pool.pop()

    def _choice(self, lane: int, options: Sequence[Any]) -> Any:
        return options[min(int(self._uniform(lane) * len(options)), len(options) - 1)]


class SeeingPolicy(Policy):
    """Always the action of regime 0."""

    description = "seeing"

    def __init__(self, seeing_action: Any) -> None:
        self.seeing_action = seeing_action

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        return self.seeing_action


class ActingPolicy(_RandomPolicy):
    """Uniform over a finite list of actions, or a seeded sample of any other action space."""

    description = "acting"

    def __init__(self, num_lanes: int, actions: Sequence[Any] | None, action_space: gym.Space) -> None:
        super().__init__(num_lanes)
        self.actions = None if actions is None else list(actions)
        self._spaces = [copy.deepcopy(action_space) for _ in range(num_lanes)] if actions is None else []

    def start(self, lane: int, episode: int, rng: np.random.Generator) -> None:
        super().start(lane, episode, rng)
        if self.actions is None:
            self._spaces[lane].seed(int(rng.integers(2**31)))

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        if self.actions is None:
            return self._spaces[lane].sample()
        return self._choice(lane, self.actions)


class MixPolicy(_RandomPolicy):
    """Seeing with probability ``seeing_fraction``, else uniform over the interventional actions."""

    def __init__(self, num_lanes: int, seeing_fraction: float, seeing_action: Any,
                 acting_actions: Sequence[Any]) -> None:
        super().__init__(num_lanes)
        if not acting_actions and seeing_fraction < 1.0:
            raise ValueError("a mix policy needs at least one interventional action")
        self.seeing_fraction = float(seeing_fraction)
        self.seeing_action = seeing_action
        self.acting_actions = list(acting_actions)
        self.description = f"mix:{self.seeing_fraction:g}"

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        if self._uniform(lane) < self.seeing_fraction:
            return self.seeing_action
        return self._choice(lane, self.acting_actions)


class BalancedPolicy(_RandomPolicy):
    """Exactly ``per_regime`` steps of every regime.

    Two phases keep this exact and still independent of the number of lanes:

    1. *Free* episodes ``e < free_episodes`` run in parallel. Their actions cycle through random
       permutations of the regimes, so each regime occurs at most ``cap = ceil(L / R)`` times in an
       episode of at most ``L`` steps; ``free_episodes = per_regime // cap`` of them can never exceed
       the quota, whatever their lengths.
    2. *Quota* episodes run one at a time (the collector keeps the other lanes idle) and choose
       uniformly among the regimes still short of ``per_regime``, counted over everything written
       before; collection stops when every regime is full.

    Args:
        regime_actions: ``regime -> action`` for every regime to balance.
        per_regime: steps wanted per regime.
        max_episode_steps: ``L``, the longest episode the env can produce (None: unknown, then every
            episode is a quota episode).
        counts: live ``regime -> rows written so far`` (the writer's counter).
    """

    def __init__(self, num_lanes: int, regime_actions: Mapping[int, Any], per_regime: int,
                 max_episode_steps: int | None, counts: dict[int, int]) -> None:
        super().__init__(num_lanes)
        self.regimes = sorted(regime_actions)
        self.regime_actions = dict(regime_actions)
        self.per_regime = int(per_regime)
        self.counts = counts
        r = len(self.regimes)
        if max_episode_steps is None:
            self.cap = 0
            self.free_episodes = 0
        else:
            self.cap = math.ceil(int(max_episode_steps) / r)
            self.free_episodes = self.per_regime // self.cap
        self.description = f"balanced:{self.per_regime}"
        self._free = [False] * num_lanes
        self._plan: list[list[int]] = [[] for _ in range(num_lanes)]
        self._used: list[dict[int, int]] = [{} for _ in range(num_lanes)]

    @property
    def total(self) -> int:
        return self.per_regime * len(self.regimes)

    def is_free(self, episode: int) -> bool:
        return episode < self.free_episodes

    def start(self, lane: int, episode: int, rng: np.random.Generator) -> None:
        super().start(lane, episode, rng)
        self._free[lane] = self.is_free(episode)
        self._plan[lane] = []
        self._used[lane] = {}

    def planned_regime(self, lane: int, step: int) -> int:
        rng = self._rng(lane)
        if self._free[lane]:
            if not self._plan[lane]:
                self._plan[lane] = [self.regimes[i] for i in rng.permutation(len(self.regimes))]
            regime = self._plan[lane].pop(0)
            used = self._used[lane].get(regime, 0) + 1
            if used > self.cap:
                raise ValueError(f"an episode ran longer than max_episode_steps; balanced collection "
                                 f"needs episodes of at most {self.cap * len(self.regimes)} steps")
            self._used[lane][regime] = used
            return regime
        open_regimes = [k for k in self.regimes if self.counts.get(k, 0) < self.per_regime]
        if not open_regimes:
            raise RuntimeError("balanced policy asked for an action after every regime was full")
        return open_regimes[int(rng.integers(len(open_regimes)))]

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        return self.regime_actions[self.planned_regime(lane, step)]


class CallablePolicy(Policy):
    """A user function ``obs -> action`` (its randomness is its own)."""

    def __init__(self, fn: Callable[[np.ndarray], Any]) -> None:
        self.fn = fn
        self.description = f"callable:{getattr(fn, '__qualname__', type(fn).__name__)}"

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        return self.fn(obs)


class AgentPolicy(Policy):
    """A stable-baselines3 model (or anything with ``predict(obs, deterministic=...) -> (action, state)``).

    Queried with ``deterministic=False`` so the data explores; the sampling then uses torch's global
    generator, so a resumed collection equals an uninterrupted one only for deterministic models.
    """

    def __init__(self, model: Any, deterministic: bool = False) -> None:
        self.model = model
        self.deterministic = deterministic
        self.description = f"model:{type(model).__name__}"

    def act(self, lane: int, obs: np.ndarray, step: int) -> Any:
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action


def parse_policy(policy: Any) -> tuple[str, float | None]:
    """Normalise ``policy`` to ``(kind, seeing_fraction)``; kind in seeing/acting/mix/balanced/callable/model."""
    if isinstance(policy, bool):
        raise ValueError(f"policy must be a name, a seeing fraction, a callable or a model, got {policy!r}")
    if isinstance(policy, int | float | np.floating | np.integer):
        fraction = float(policy)
        if not (0.0 <= fraction <= 1.0) or math.isnan(fraction):
            raise ValueError(f"a seeing fraction must lie in [0, 1], got {policy!r}")
        return "mix", fraction
    if isinstance(policy, str):
        if policy in ("seeing", "acting", "balanced"):
            return policy, None
        if policy.startswith("mix:"):
            try:
                return parse_policy(float(policy[4:]))
            except ValueError as err:
                raise ValueError(f"policy {policy!r}: 'mix:P' needs a seeing fraction P in [0, 1]") from err
        raise ValueError(f"unknown policy {policy!r}; use 'seeing', 'acting', 'balanced', 'mix:P' "
                         f"(seeing fraction P), a callable obs -> action or a model with .predict")
    if hasattr(policy, "predict") and callable(policy.predict):
        return "model", None
    if callable(policy):
        return "callable", None
    raise ValueError(f"policy must be a name, a seeing fraction, a callable or a model, got {policy!r}")


def finite_actions(action_space: gym.Space) -> list[Any] | None:
    """Every action of a ``Discrete`` space (as Python ints), else None."""
    if isinstance(action_space, spaces.Discrete):
        start = int(action_space.start)
        return list(range(start, start + int(action_space.n)))
    return None
