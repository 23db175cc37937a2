"""Shared machinery of the causal scenes: a latent SCM, an intervention menu chosen by the action,
stationary AR(1) exogenous noise, an optional goal-reaching task, and image observations.

Every step the world draws a new sample of its SCM in the regime chosen by the action::

    eps_t = rho * eps_{t-1} + sqrt(1 - rho^2) * xi_t,   xi_t ~ N(0, I),   eps_0 ~ N(0, I)
    z_t   = scm.forward(eps_t[None], interventions[a_t])[0]

so the marginal of ``z_t`` is exactly the distribution of the chosen regime whatever ``rho`` (the
``persistence``) is; ``rho = 0`` gives i.i.d. samples. Regime ``k`` is action ``k``; regime 0 is the
observational one (no intervention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from causal_wm.scm import SCM, Intervention, ancestors, parents, scaled_mechanism

HARD_INTERVENTION_MODES = ("shift", "scale", "both")
TASKS = (None, "reach")
DEFAULT_DO_VALUES = (-1.5, 0.0, 1.5)
# Mean-shift pairs in standardised latent units (observational variance 1): two hard interventions on
# a node whose log ratio is linear in the node, see docs/science.md section 8.
SHIFT = 1.0
SHIFT_STD = 0.7
# The published variance pair: noise std x0.5 and x2 (variance x0.25 and x4).
SCALE_PAIR = (0.5, 2.0)

MultiNodeSpec = Sequence[int] | Intervention | Mapping[str, Any]

# Distractors (objects outside the SCM): appearance and motion in training and under distractor_shift.
# Positions live in [0, 1]^2 (fractions of the frame) and follow a reflected Gaussian random walk with
# per-step std `speed`; radius as a fraction of the frame size; colours grey (training) or saturated.
DISTRACTOR_TRAIN = {"speed": 0.04, "radius": 0.07, "gray": (100, 190)}
DISTRACTOR_SHIFTED = {"speed": 0.15, "radius": 0.11, "saturation": (0.8, 1.0), "value": (0.8, 1.0)}


class SceneRenderer(Protocol):
    """What a scene's batch renderer offers the environment."""

    image_size: int

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``(N, H, W, 3)`` uint8 for latents ``(N, n)`` (into ``out`` when given)."""
        ...

    def frame(self, z: np.ndarray) -> np.ndarray:
        """One frame ``(H, W, 3)`` uint8 for latents ``(n,)``; equal to ``self(z[None])[0]``."""
        ...


def _fmt(v: float) -> str:
    return f"{v:+g}"


def intervention_menu(node_names: Sequence[str], *, hard_interventions: str = "shift",
                      do_values: Sequence[float] = DEFAULT_DO_VALUES, do_std: float = 0.05,
                      multi_node: Sequence[MultiNodeSpec] = ()) -> list[Intervention]:
    """The default intervention menu over ``n = len(node_names)`` standardised latents.

    Node by node, for every node ``t``: the hard pair chosen by ``hard_interventions``
    (``"shift"``: ``N(-1, 0.7^2)`` and ``N(+1, 0.7^2)``; ``"scale"``: noise std x0.5 and x2, mean
    unchanged; ``"both"``: the shift pair then the scale pair), then ``do(z_t = v)`` with noise std
    ``do_std`` for every ``v`` in ``do_values``. Then one entry per item of ``multi_node``: a tuple of
    targets gives a hard mean-shift ``N(+1, 0.7^2)`` on all of them; an ``Intervention`` or its dict
    (``Intervention.to_dict``) is taken as is. Every entry has a readable ``name``.

    Returns the interventions without the leading ``None`` of regime 0.
    """
    n = len(node_names)
    if hard_interventions not in HARD_INTERVENTION_MODES:
        raise ValueError(f"hard_interventions must be one of {HARD_INTERVENTION_MODES}, "
                         f"got {hard_interventions!r}")
    try:
        do_values = tuple(float(v) for v in do_values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"do_values must be a sequence of numbers, got {do_values!r}") from err
    if not all(math.isfinite(v) for v in do_values):
        raise ValueError(f"do_values must be finite, got {do_values}")
    if not (isinstance(do_std, int | float) and math.isfinite(do_std) and do_std > 0):
        raise ValueError(f"do_std must be a positive number, got {do_std!r}")
    menu: list[Intervention] = []
    for t, name in enumerate(node_names):
        if hard_interventions in ("shift", "both"):
            for sign in (-1.0, 1.0):
                menu.append(Intervention.hard(t, shift=sign * SHIFT, std=SHIFT_STD,
                                              name=f"hard({name} ~ N({_fmt(sign * SHIFT)}, {SHIFT_STD:g}^2))"))
        if hard_interventions in ("scale", "both"):
            for factor in SCALE_PAIR:
                menu.append(Intervention.hard(t, scale=factor, name=f"hard({name}, noise std x{factor:g})"))
        for v in do_values:
            menu.append(Intervention.do(t, v, std=do_std, name=f"do({name} = {v:g})"))
    if isinstance(multi_node, Intervention | Mapping):
        multi_node = [multi_node]
    for spec in multi_node:
        menu.append(_multi_node_entry(spec, node_names))
    for iv in menu:
        if max(iv.targets) >= n:
            raise ValueError(f"intervention {iv.label()} targets node {max(iv.targets)} but the scene has "
                             f"nodes 0..{n - 1}")
    return menu


def _multi_node_entry(spec: MultiNodeSpec, node_names: Sequence[str]) -> Intervention:
    if isinstance(spec, Intervention):
        return spec
    if isinstance(spec, Mapping):
        return Intervention.from_dict(dict(spec))
    try:
        targets = tuple(int(t) for t in spec)
    except (TypeError, ValueError) as err:
        raise ValueError(f"multi_node entries must be tuples of node indices, Interventions or their "
                         f"dicts, got {spec!r}") from err
    n = len(node_names)
    if not targets or min(targets) < 0 or max(targets) >= n:
        raise ValueError(f"multi_node targets {targets} must be node indices in 0..{n - 1}")
    names = ", ".join(node_names[t] for t in sorted(set(targets)))
    return Intervention.hard(targets, shift=SHIFT, std=SHIFT_STD,
                             name=f"hard({names} ~ N({_fmt(SHIFT)}, {SHIFT_STD:g}^2))")


def _check_mechanism_shift(spec: Mapping[str | int, Any] | None, scm: SCM) -> dict[int, float]:
    """``{node: factor}`` with node indices, from a mapping node (index, digit string or name) ->
    factor (a number, or ``"negate"`` for -1)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"mechanism_shift must be a dict node -> factor, got {spec!r}")
    out: dict[int, float] = {}
    for key, value in spec.items():
        if isinstance(key, str) and key in scm.names:
            j = scm.names.index(key)
        elif isinstance(key, str) and key.isdigit():
            j = int(key)
        elif isinstance(key, int | np.integer) and not isinstance(key, bool):
            j = int(key)
        else:
            raise ValueError(f"mechanism_shift key {key!r} is not a node index or name ({scm.names})")
        if not 0 <= j < scm.n:
            raise ValueError(f"mechanism_shift node {j} is outside 0..{scm.n - 1}")
        if scm.mechanisms[j] is None:
            raise ValueError(f"mechanism_shift node {j} ({scm.names[j]}) is a root: it has no mechanism to change")
        factor = -1.0 if value == "negate" else value
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
            raise ValueError(f"mechanism_shift factor of node {scm.names[j]} must be a finite number or "
                             f"'negate', got {value!r}")
        out[j] = float(factor)
    return out


def shifted_scm(scm: SCM, shift: Mapping[int, float]) -> SCM:
    """``scm`` with the mechanism of every node ``j`` in ``shift`` multiplied by ``shift[j]`` (same
    graph, noise, box and names); ``scm`` itself when ``shift`` is empty."""
    if not shift:
        return scm
    mechanisms = [scaled_mechanism(m, shift[j]) if j in shift and m is not None else m
                  for j, m in enumerate(scm.mechanisms)]
    return SCM(scm.graph, mechanisms, scm.noise_std, scm.noise_mean, box=scm.box, names=scm.names)


def default_goal_node(graph: np.ndarray) -> int:
    """The node with the most ancestors (ties: the highest index)."""
    counts = [len(ancestors(graph, j)) for j in range(graph.shape[0])]
    best = max(counts)
    return max(j for j, c in enumerate(counts) if c == best)


class CausalSceneEnv(gym.Env[np.ndarray, np.int64]):
    """Base class of the causal scenes; see the module docstring and the scene classes for the
    full description. Subclasses build the SCM and the renderer and call ``__init__``.

    Args:
        scm: the latent SCM (standardised, node names set); a box on it means rejection sampling
            into the box every step (only with ``persistence == 0``).
        renderer: the scene's batch renderer (``frame(z)`` gives the observation).
        persistence, hard_interventions, do_values, do_std, multi_node, task, goal_node, goal_value,
        allow_goal_interventions, render_mode: see the scene classes.
        distractors: number of distractor objects: discs outside the SCM, never intervened on, drawn
            behind the scene's objects; each follows a reflected Gaussian random walk in the frame
            (``DISTRACTOR_TRAIN``: grey, slow, small) from its own random stream, so the latents of a
            seeded episode do not depend on them.
        distractor_shift: draw the distractors with appearance and motion outside the training ranges
            (``DISTRACTOR_SHIFTED``: saturated colours, larger, faster).
        mechanism_shift: ``{node: factor}`` (node index, digit string or name; factor a number or
            ``"negate"``): the mechanism of each such node is multiplied by its factor (a changed
            mechanism at test time). ``scm`` is the shifted SCM, ``scm_before_shift`` the original.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    # Rejection rounds per step before a truncated regime is declared empty.
    max_rejection_tries = 10_000

    def __init__(self, scm: SCM, renderer: SceneRenderer, *, persistence: float = 0.0,
                 hard_interventions: str = "shift", do_values: Sequence[float] = DEFAULT_DO_VALUES,
                 do_std: float = 0.05, multi_node: Sequence[MultiNodeSpec] = (), task: str | None = None,
                 goal_node: int | None = None, goal_value: float | None = None,
                 allow_goal_interventions: bool | None = None, distractors: int = 0,
                 distractor_shift: bool = False, mechanism_shift: Mapping[str | int, Any] | None = None,
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        if isinstance(persistence, bool) or not isinstance(persistence, int | float | np.integer | np.floating):
            raise ValueError(f"persistence must be a number in [0, 1), got {persistence!r}")
        rho = float(persistence)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"persistence must lie in [0, 1), got {persistence!r}")
        if scm.box is not None and rho > 0.0:
            raise ValueError("a truncated (boxed) SCM needs persistence == 0: rejection sampling with "
                             "persistent noise would change the per-step marginal")
        self.persistence = rho
        self._innovation_scale = math.sqrt(1.0 - rho * rho)
        self.mechanism_shift = _check_mechanism_shift(mechanism_shift, scm)
        self.scm_before_shift = scm
        scm = shifted_scm(scm, self.mechanism_shift)
        self.scm = scm
        self.graph = scm.graph
        self.n = scm.n
        self.node_names: tuple[str, ...] = tuple(scm.names)
        self.renderer = renderer

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        if task is None:
            if goal_node is not None or goal_value is not None:
                raise ValueError("goal_node and goal_value apply to task='reach' only (task is None)")
            self.goal_node: int | None = None
            self.goal_value: float | None = None
        else:
            if goal_node is None:
                goal_node = default_goal_node(self.graph)
            if isinstance(goal_node, bool) or not isinstance(goal_node, int | np.integer) \
                    or not 0 <= goal_node < self.n:
                raise ValueError(f"goal_node must be a node index in 0..{self.n - 1}, got {goal_node!r}")
            goal_node = int(goal_node)
            if not parents(self.graph, goal_node):
                raise ValueError(f"goal_node {goal_node} ({self.node_names[goal_node]}) has no parents; "
                                 f"the goal must be downstream so the agent can act through its ancestors")
            goal_value = 1.0 if goal_value is None else goal_value
            if not (isinstance(goal_value, int | float | np.floating | np.integer)
                    and math.isfinite(goal_value)):
                raise ValueError(f"goal_value must be a finite number, got {goal_value!r}")
            self.goal_node, self.goal_value = goal_node, float(goal_value)
        if allow_goal_interventions is None:
            allow_goal_interventions = task is None
        self.allow_goal_interventions = bool(allow_goal_interventions)

        menu = intervention_menu(self.node_names, hard_interventions=hard_interventions,
                                 do_values=do_values, do_std=do_std, multi_node=multi_node)
        if self.goal_node is not None and not self.allow_goal_interventions:
            menu = [iv for iv in menu if self.goal_node not in iv.targets]
        for iv in menu:
            scm.check_intervention(iv)
        self.interventions: tuple[Intervention | None, ...] = (None, *menu)

        if isinstance(distractors, bool) or not isinstance(distractors, int | np.integer) or distractors < 0:
            raise ValueError(f"distractors must be a non-negative int, got {distractors!r}")
        if not isinstance(distractor_shift, bool | np.bool_):
            raise ValueError(f"distractor_shift must be True or False, got {distractor_shift!r}")
        if distractors and not hasattr(renderer, "background"):
            raise ValueError(f"{type(renderer).__name__} has no plain background to draw distractors on")
        self.num_distractors = int(distractors)
        self.distractor_shift = bool(distractor_shift)
        self._distractor_pos = np.zeros((self.num_distractors, 2))
        self._distractor_colors: list[tuple[int, int, int]] = []
        self._distractor_rng = np.random.default_rng(0)

        size = renderer.image_size
        self.action_space = spaces.Discrete(len(self.interventions))
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self._num_actions = len(self.interventions)
        self._eps = np.zeros(self.n)
        self._z = np.zeros(self.n)
        self._regime = 0
        self._frame: np.ndarray | None = None

    # --- dynamics -----------------------------------------------------------------------------
    def _sample_latents(self, intervention: Intervention | None, *, fresh: bool) -> np.ndarray:
        """Advance the exogenous noise and return the latents ``(n,)`` of the regime."""
        rng = self.np_random
        scm = self.scm
        if scm.box is None:
            xi = rng.standard_normal(self.n)
            self._eps = xi if fresh else self.persistence * self._eps + self._innovation_scale * xi
            return scm.forward(self._eps[None], intervention)[0]
        low, high = scm.box
        for _ in range(self.max_rejection_tries):
            eps = rng.standard_normal(self.n)
            z = scm.forward(eps[None], intervention)[0]
            if np.all((z >= low) & (z <= high)):
                self._eps = eps
                return z
        name = "observational" if intervention is None else intervention.label()
        raise RuntimeError(f"rejection sampling into the box failed {self.max_rejection_tries} times in "
                           f"regime {name}: it puts almost no mass in the box; widen the box")

    def _reward(self, z: np.ndarray) -> float:
        if self.goal_node is None:
            return 0.0
        return -abs(float(z[self.goal_node]) - self.goal_value)

    def _check_action(self, action: Any) -> int:
        if isinstance(action, int | np.integer) and not isinstance(action, bool):
            a = int(action)
        elif isinstance(action, np.ndarray) and action.ndim == 0 and np.issubdtype(action.dtype, np.integer):
            a = int(action)
        else:
            raise ValueError(f"action must be an integer in 0..{self._num_actions - 1}, got {action!r}")
        if not 0 <= a < self._num_actions:
            raise ValueError(f"action {a} is outside the action space Discrete({self._num_actions})")
        return a

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Observational sample: obs ``(H, W, 3)`` uint8 and info with ``regime`` 0 (``options`` unused)."""
        super().reset(seed=seed)
        if self.num_distractors:
            self._reset_distractors()
        z = self._sample_latents(None, fresh=True)
        return self._observe(z, 0), {"regime": 0, "intervention": None, "z": z.copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply intervention ``interventions[action]`` for one fresh sample of the world."""
        a = self._check_action(action)
        intervention = self.interventions[a]
        z = self._sample_latents(intervention, fresh=False)
        if self.num_distractors:
            self._move_distractors()
        obs = self._observe(z, a)
        return obs, self._reward(z), False, False, {"regime": a, "intervention": intervention, "z": z.copy()}

    def _observe(self, z: np.ndarray, regime: int) -> np.ndarray:
        self._z, self._regime = z, regime
        frame = self.renderer.frame(z)
        if self.num_distractors:
            self._draw_distractors(frame)
        self._frame = frame
        return frame

    # --- distractors ----------------------------------------------------------------------------
    def _reset_distractors(self) -> None:
        # their own stream, spawned from the env's seed: the latents do not depend on the distractors
        seq = getattr(self.np_random.bit_generator, "seed_seq", None)
        child = seq.spawn(1)[0] if seq is not None else int(self.np_random.integers(2**63))
        rng = self._distractor_rng = np.random.default_rng(child)
        k = self.num_distractors
        self._distractor_pos = rng.uniform(0.0, 1.0, size=(k, 2))
        if self.distractor_shift:
            hue = rng.uniform(0.0, 1.0, size=k)
            sat = rng.uniform(*DISTRACTOR_SHIFTED["saturation"], size=k)
            val = rng.uniform(*DISTRACTOR_SHIFTED["value"], size=k)
            import colorsys

            self._distractor_colors = [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s_, v))
                                       for h, s_, v in zip(hue, sat, val, strict=True)]
        else:
            gray = rng.integers(*DISTRACTOR_TRAIN["gray"], size=k, endpoint=True)
            self._distractor_colors = [(int(g), int(g), int(g)) for g in gray]

    def _move_distractors(self) -> None:
        speed = (DISTRACTOR_SHIFTED if self.distractor_shift else DISTRACTOR_TRAIN)["speed"]
        p = self._distractor_pos + speed * self._distractor_rng.standard_normal(self._distractor_pos.shape)
        p = np.abs(p)  # reflect at 0 and at 1
        self._distractor_pos = 1.0 - np.abs(1.0 - p)

    def _draw_distractors(self, frame: np.ndarray) -> None:
        """Draw the distractors behind the scene's objects: only on pixels of the plain background."""
        import cv2

        from .rendering import SHIFT, to_fixed

        size = frame.shape[0]
        radius = (DISTRACTOR_SHIFTED if self.distractor_shift else DISTRACTOR_TRAIN)["radius"] * size
        background = np.asarray(self.renderer.background, dtype=np.uint8)
        layer = np.empty_like(frame)
        layer[...] = background
        centres = to_fixed(self._distractor_pos * size).tolist()
        r = round(radius * (1 << SHIFT))
        for centre, color in zip(centres, self._distractor_colors, strict=True):
            cv2.circle(layer, tuple(centre), r, color, -1, cv2.LINE_AA, SHIFT)
        mask = np.all(frame == background, axis=-1)
        frame[mask] = layer[mask]

    @property
    def distractor_state(self) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Positions ``(k, 2)`` in ``[0, 1]^2`` (column, row fractions) and RGB colours of the distractors."""
        return self._distractor_pos.copy(), list(self._distractor_colors)

    def render(self) -> np.ndarray:
        """The current frame ``(H, W, 3)`` uint8 (a copy)."""
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        return self._frame.copy()

    # --- introspection ------------------------------------------------------------------------
    @property
    def z(self) -> np.ndarray:
        """The current true latents ``(n,)`` (evaluation only)."""
        return self._z.copy()

    @property
    def regime(self) -> int:
        """The regime of the current sample (0 after reset)."""
        return self._regime

    def intervention_targets(self) -> list[tuple[int, ...]]:
        """Targets of every regime; ``()`` for regime 0."""
        return [() if iv is None else iv.targets for iv in self.interventions]
