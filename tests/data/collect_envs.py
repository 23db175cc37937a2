"""Small image environments written for the collector tests (not part of the package).

``TinyImageEnv`` does not know about regimes: tests label its steps with ``regime_fn``. Its frames
make every step identifiable: pixel (0, 0) holds ``(step + 1, action, 0)`` after a step and
``(0, 0, 255)`` after ``reset``; the rest is noise from ``np_random``, so equal seeds give equal bytes.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

TINY_ID = "collect_tests/TinyImage-v0"
RESET_MARK = 255


def regime_of_action(action: int) -> int:
    """Actions 0, 1, 2 -> regimes 0, 1, 2 (the test env's labelling function)."""
    return int(action)


class TinyImageEnv(gym.Env):
    """8 x 8 RGB frames, three actions, episodes of random length in ``[min_length, max_length]``.

    Args:
        min_length, max_length: episode length range (drawn at reset from ``np_random``).
        label: put ``info["regime"]`` (= action) on every step.
        latents: put ``info["z"]`` (two floats) on every step.
        delay: seconds to sleep per step (makes a collection slow enough to interrupt).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, min_length: int = 3, max_length: int = 9, label: bool = False, latents: bool = True,
                 delay: float = 0.0) -> None:
        self.observation_space = spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(3)
        self.min_length, self.max_length = min_length, max_length
        self.label, self.latents, self.delay = label, latents, delay
        self._t = 0
        self._length = max_length

    def _frame(self, head: tuple[int, int, int]) -> np.ndarray:
        frame = self.np_random.integers(0, 200, size=(8, 8, 3), dtype=np.uint8)
        frame[0, 0] = head
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        return self._frame((0, 0, RESET_MARK)), {}

    def step(self, action: Any):
        if self.delay:
            time.sleep(self.delay)
        action = int(action)
        self._t += 1
        info: dict[str, Any] = {}
        if self.label:
            info["regime"] = action
        if self.latents:
            info["z"] = self.np_random.normal(size=2) + action
        terminated = self._t >= self._length
        return self._frame((self._t, action, 0)), float(action), terminated, False, info


class VectorObsEnv(gym.Env):
    """An env whose observations are vectors, not images (the collector must refuse it)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(4, dtype=np.float32), {}

    def step(self, action: Any):
        return np.zeros(4, dtype=np.float32), 0.0, False, False, {"regime": int(action)}


def register() -> None:
    if TINY_ID not in gym.registry:
        gym.register(TINY_ID, entry_point=TinyImageEnv, max_episode_steps=9)


register()
