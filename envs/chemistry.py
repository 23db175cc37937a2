"""``causal_wm/Chemistry-v0``: coloured objects whose colours follow a nonlinear SCM with an
interaction and a mediator chain.

Six objects sit on a fixed 3 x 2 grid; the colour of object ``i`` shows latent ``z_i`` through a
smooth, monotone, colour-blind-safe colour ramp (dark violet for low values through teal to yellow
for high ones). Latents (standardised: observational mean 0 and variance 1; ``A[i, j] = 1`` iff
``i -> j``)::

    a = eps_a                                  (root)
    b = eps_b                                  (root)
    c = k_c * a * b + s_c * eps_c              (interaction: c's response to a depends on b)
    d = eps_d                                  (root)
    e = k_e * tanh(d) + s_e * eps_e            (mediator: d -> e -> goal)
    goal = k_g * c * e + s_g * eps_goal        (interaction of the product c and the mediator e)

with ``k_c = sqrt(1 - s_c^2)``, ``k_g = sqrt(1 - s_g^2)`` (the products of independent, unit-variance,
zero-mean factors have variance 1) and ``k_e`` from the exact variance of ``tanh(d)`` (Gauss-Hermite
quadrature), so every node has observational variance 1. The mechanisms are ``FunctionMechanism``s
with analytic gradients, so densities and scores are exact.

Why this scene: the effect of any single intervention on ``goal`` has mean zero (the goal multiplies
``c`` by ``e``, and ``c`` multiplies ``a`` by ``b``), so a goal ``goal = 2`` is reached by no single
intervention and only by joint ones that fix both factors with the same sign (``do(c, e)``,
``do(c, d)``), and a model that adds up the effects of single actions predicts nothing for them; a
joint ``do(d, e)`` cuts the mediator chain, so the effect of ``d`` disappears. A causal model that knows
the graph and the mechanisms predicts all of these from single-node data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from causal_wm.scm import SCM, FunctionMechanism

from .base import DEFAULT_DO_VALUES, CausalSceneEnv, MultiNodeSpec
from .rendering import SHIFT, _check_color, frame_buffer, to_fixed

NODE_NAMES = ("a", "b", "c", "d", "e", "goal")
GRAPH = np.array([[0, 0, 1, 0, 0, 0],
                  [0, 0, 1, 0, 0, 0],
                  [0, 0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 1, 0],
                  [0, 0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 0, 0]], dtype=np.int64)
INTERACTION_NOISE = 0.3
MEDIATOR_NOISE = 0.6
GOAL_NOISE = 0.3
# latent -> ramp position u = 0.5 + 0.5 tanh(z / COLOR_SCALE)
COLOR_SCALE = 2.0
# anchors of the viridis colour ramp (RGB), evenly spaced in u
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)


def _tanh_variance(order: int = 80) -> float:
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    return float(w @ np.tanh(x) ** 2)


_TANH_STD = math.sqrt(_tanh_variance())


class _Product:
    """``k * z_p0 * z_p1`` and its gradient (picklable, module level)."""

    def __init__(self, gain: float) -> None:
        self.gain = float(gain)

    def value(self, zpa: np.ndarray) -> np.ndarray:
        return self.gain * zpa[:, 0] * zpa[:, 1]

    def grad(self, zpa: np.ndarray) -> np.ndarray:
        return self.gain * zpa[:, ::-1]


class _Saturating:
    """``k * tanh(z_p0)`` and its gradient (picklable, module level)."""

    def __init__(self, gain: float) -> None:
        self.gain = float(gain)

    def value(self, zpa: np.ndarray) -> np.ndarray:
        return self.gain * np.tanh(zpa[:, 0])

    def grad(self, zpa: np.ndarray) -> np.ndarray:
        return self.gain * (1.0 - np.tanh(zpa) ** 2)


def _check_noise(value: float, name: str) -> float:
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def chemistry_scm(interaction_noise: float = INTERACTION_NOISE, mediator_noise: float = MEDIATOR_NOISE,
                  goal_noise: float = GOAL_NOISE) -> SCM:
    """The standardised SCM of the chemistry scene (see the module docstring); the three arguments are
    the noise stds ``s_c``, ``s_e``, ``s_g`` in ``(0, 1)``."""
    s_c = _check_noise(interaction_noise, "interaction_noise")
    s_e = _check_noise(mediator_noise, "mediator_noise")
    s_g = _check_noise(goal_noise, "goal_noise")
    product_c = _Product(math.sqrt(1.0 - s_c**2))
    mediator = _Saturating(math.sqrt(1.0 - s_e**2) / _TANH_STD)
    product_g = _Product(math.sqrt(1.0 - s_g**2))
    mechanisms = [None, None, FunctionMechanism((0, 1), product_c.value, product_c.grad), None,
                  FunctionMechanism((3,), mediator.value, mediator.grad),
                  FunctionMechanism((2, 4), product_g.value, product_g.grad)]
    return SCM(GRAPH, mechanisms, [1.0, 1.0, s_c, 1.0, s_e, s_g], names=NODE_NAMES)


def ramp_color(z: np.ndarray) -> np.ndarray:
    """RGB float ``(..., 3)`` in ``[0, 255]`` of latents ``z`` (any shape) on the colour ramp."""
    u = 0.5 + 0.5 * np.tanh(np.asarray(z, dtype=np.float64) / COLOR_SCALE)
    pos = u * (len(RAMP) - 1)
    i = np.clip(np.floor(pos).astype(np.int64), 0, len(RAMP) - 2)
    t = (pos - i)[..., None]
    return RAMP[i] * (1.0 - t) + RAMP[i + 1] * t


class ChemistryRenderer:
    """Batch renderer of the chemistry scene: latents ``(N, 6)`` -> frames ``(N, size, size, 3)`` uint8.

    Object ``i`` is a disc (anti-aliased, sub-pixel) at a fixed place of a 3 x 2 grid (row-major in the
    node order: a, b, c on the top row, d, e, goal below), filled with ``ramp_color(z_i)`` and ringed
    in light grey so that a dark fill stays visible on the dark background.

    Args:
        image_size: frame height and width in pixels.
        background: RGB of the plain background.
    """

    RING = (150, 150, 150)

    def __init__(self, image_size: int = 64, background: Sequence[int] = (30, 30, 30)) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        self.image_size = int(image_size)
        self.n = 6
        self.background = _check_color(background, "background")
        s = self.image_size
        cols = np.array([1 / 6, 3 / 6, 5 / 6]) * s
        rows = np.array([0.3, 0.7]) * s
        centres = np.array([(c, r) for r in rows for c in cols])
        self._centres = [tuple(p) for p in to_fixed(centres).tolist()]
        one = 1 << SHIFT
        self.radius = 0.1 * s
        self._r = round(self.radius * one)
        self._ring = max(1, round(0.02 * s))
        self._template = np.empty((s, s, 3), dtype=np.uint8)
        self._template[:] = self.background

    def _colors(self, z: np.ndarray) -> list:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"z must have shape (N, {self.n}), got {z.shape}")
        return np.rint(ramp_color(z)).astype(np.int64).tolist()

    def _draw(self, img: np.ndarray, colors: list) -> None:
        r, aa = self._r, cv2.LINE_AA
        for centre, color in zip(self._centres, colors, strict=True):
            cv2.circle(img, centre, r, color, -1, aa, SHIFT)
            cv2.circle(img, centre, r, self.RING, self._ring, aa, SHIFT)

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``(N, size, size, 3)`` uint8 for latents ``z`` ``(N, 6)`` (into ``out`` when given)."""
        colors = self._colors(z)
        out = frame_buffer(out, len(colors), self.image_size)
        for img, c in zip(out, colors, strict=True):
            img[...] = self._template
            self._draw(img, c)
        return out

    def frame(self, z: np.ndarray) -> np.ndarray:
        """One frame ``(size, size, 3)`` for latents ``(6,)``; identical to ``self(z[None])[0]``."""
        (colors,) = self._colors(np.reshape(z, (1, -1)))
        img = self._template.copy()
        self._draw(img, colors)
        return img


class ChemistryEnv(CausalSceneEnv):
    """
    ## Description

    Six coloured objects whose colours are the latents of a nonlinear SCM with an interaction and a
    mediator chain (see the module docstring for the equations): ``c = a * b`` (up to scale and noise),
    ``e = tanh(d)``, and the goal object ``goal = c * e``. As in every causal scene, the agent does not
    paint the objects: each step it chooses an intervention on the causal model and the world draws a
    fresh sample under it (``persistence`` sets how much consecutive samples share, see
    ``causal_wm/Balls-v0``). In the spirit of the Chemistry environment of causal model-based RL
    benchmarks, with continuous states.

    ## Action Space

    ``Discrete(K)``: action 0 = no intervention, action ``k`` = ``interventions[k]``; the default menu
    per node is the mean-shift pair ``N(-1, 0.7^2)``, ``N(+1, 0.7^2)`` and ``do(z = v)`` for ``v`` in
    ``do_values``, then the ``multi_node`` entries (``K = 31`` by default).

    ## Observation Space

    ``Box(0, 255, (image_size, image_size, 3), uint8)``, 64 x 64 by default.

    ## Rewards

    ``task=None``: 0. ``task="reach"``: ``-|z_goal - goal_value|`` (goal node ``goal``, default value
    2.0, which no single intervention reaches; the goal node cannot be intervened on).

    ## Starting State, Episode End, info

    As ``causal_wm/Balls-v0``: an observational sample; ``gym.make`` truncates after 50 steps; every
    ``info`` holds ``regime``, ``intervention`` and the true latents ``z``.

    ## Arguments

    ```python
    gym.make("causal_wm/Chemistry-v0", image_size=64, background=(30, 30, 30), interaction_noise=0.3,
             mediator_noise=0.6, goal_noise=0.3, persistence=0.0, hard_interventions="shift",
             do_values=(-1.5, 0.0, 1.5), do_std=0.05, multi_node=(), task=None, goal_node=None,
             goal_value=None, allow_goal_interventions=None, distractors=0, distractor_shift=False,
             mechanism_shift=None, render_mode=None)
    ```

    ``distractors``, ``distractor_shift`` and ``mechanism_shift`` are those of every causal scene
    (``causal_wm.envs.base.CausalSceneEnv``).

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    default_goal_value = 2.0

    def __init__(self, *, image_size: int = 64, background: Sequence[int] = (30, 30, 30),
                 interaction_noise: float = INTERACTION_NOISE, mediator_noise: float = MEDIATOR_NOISE,
                 goal_noise: float = GOAL_NOISE, persistence: float = 0.0, hard_interventions: str = "shift",
                 do_values: Sequence[float] = DEFAULT_DO_VALUES, do_std: float = 0.05,
                 multi_node: Sequence[MultiNodeSpec] = (), task: str | None = None, goal_node: int | None = None,
                 goal_value: float | None = None, allow_goal_interventions: bool | None = None,
                 distractors: int = 0, distractor_shift: bool = False,
                 mechanism_shift: dict[str | int, Any] | None = None, render_mode: str | None = None) -> None:
        scm = chemistry_scm(interaction_noise, mediator_noise, goal_noise)
        renderer = ChemistryRenderer(image_size, background)
        if task == "reach" and goal_value is None:
            goal_value = self.default_goal_value
        super().__init__(scm, renderer, persistence=persistence, hard_interventions=hard_interventions,
                         do_values=do_values, do_std=do_std, multi_node=multi_node, task=task,
                         goal_node=goal_node, goal_value=goal_value,
                         allow_goal_interventions=allow_goal_interventions, distractors=distractors,
                         distractor_shift=distractor_shift, mechanism_shift=mechanism_shift,
                         render_mode=render_mode)
