"""``causal_wm/Shadow-v0``: a pendulum, a light and the shadow they cast (a nonlinear SCM).

Side view of a 2-D world, ``x`` in ``[-2, 2]`` (left to right), ``y`` in ``[-0.4, 3.6]`` (bottom to
top), the ground line at ``y = 0``. A pendulum of length ``ROD_LENGTH`` hangs from the pivot
``(0, PIVOT_HEIGHT)``; a point light moves along the line ``y = LIGHT_HEIGHT``. The shadow of the rod
on the ground runs from the shadow of the pivot to the shadow of the bob; a point ``(x, y)`` below the
light ``(l, H)`` projects to ``l + (x - l) * H / (H - y)``.

Latents (standardised, observational mean 0 and variance 1; ``A[i, j] = 1`` iff ``i -> j``):

- 0 ``angle``: pendulum angle ``theta = MAX_ANGLE * tanh(z_0 / 1.5)`` (radians, 0 = hanging down).
- 1 ``light``: light position ``l = LIGHT_RANGE * tanh(z_1 / 1.5)``.
- 2 ``shadow_pos``: centre ``c`` of the rod's shadow, ``z_2 = a (c(theta, l) - m_c) / s_c + sigma eps_2``.
- 3 ``shadow_len``: signed length ``d = x_bob_shadow - x_pivot_shadow`` (positive when the bob's
  shadow lies right of the pivot's), ``z_3 = a (d(theta, l) - m_d) / s_d + sigma eps_3``.

with ``a = sqrt(1 - sigma^2)``, and ``m``, ``s`` the exact observational mean and std of ``c`` and ``d``
(Gauss-Hermite quadrature), so the observational variance of every node is 1. The mechanisms are
``FunctionMechanism``s with analytic gradients, so the SCM's densities and scores are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from causal_wm.scm import SCM, FunctionMechanism

from .base import DEFAULT_DO_VALUES, CausalSceneEnv, MultiNodeSpec
from .rendering import SHIFT, frame_buffer, to_fixed

NODE_NAMES = ("angle", "light", "shadow_pos", "shadow_len")
GRAPH = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [0, 0, 0, 0],
                  [0, 0, 0, 0]], dtype=np.int64)

# World geometry (world units; the 4 x 4 view spans 64 px at the default size).
X_MIN, X_MAX, Y_TOP, Y_BOTTOM = -2.0, 2.0, 3.6, -0.4
PIVOT_HEIGHT = 2.0
ROD_LENGTH = 1.0
LIGHT_HEIGHT = 3.3
MAX_ANGLE = 0.7  # radians
LIGHT_RANGE = 1.2
LATENT_SCALE = 1.5  # z -> tanh(z / LATENT_SCALE): near linear centrally, saturating in the tails
BOB_RADIUS = 0.22
SUN_RADIUS = 0.2
PIVOT_RADIUS = 0.08
SHADOW_HALF_THICKNESS = 0.07
BOB_SHADOW_HALF_WIDTH = 0.2
VIEW_HALF_WIDTH = 1.95  # shadow ends are softly kept inside |x| < this

_K_PIVOT = LIGHT_HEIGHT / (LIGHT_HEIGHT - PIVOT_HEIGHT)


# --- geometry (module-level functions so the mechanisms pickle) -------------------------------
def angle_of(z_angle: np.ndarray) -> np.ndarray:
    """Pendulum angle (radians) of the standardised latent."""
    return MAX_ANGLE * np.tanh(z_angle / LATENT_SCALE)


def light_of(z_light: np.ndarray) -> np.ndarray:
    """Horizontal light position (world units) of the standardised latent."""
    return LIGHT_RANGE * np.tanh(z_light / LATENT_SCALE)


def bob_of(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bob centre ``(x, y)`` for pendulum angle ``theta``."""
    return ROD_LENGTH * np.sin(theta), PIVOT_HEIGHT - ROD_LENGTH * np.cos(theta)


def _shadow_values(zpa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shadow centre ``c`` and signed length ``d`` ``(N,)`` for ``zpa`` ``(N, 2)`` = (z_angle, z_light)."""
    theta = MAX_ANGLE * np.tanh(zpa[:, 0] / LATENT_SCALE)
    light = LIGHT_RANGE * np.tanh(zpa[:, 1] / LATENT_SCALE)
    k_bob = LIGHT_HEIGHT / (LIGHT_HEIGHT - PIVOT_HEIGHT + ROD_LENGTH * np.cos(theta))
    pivot_shadow = light * (1.0 - _K_PIVOT)
    bob_shadow = light + (ROD_LENGTH * np.sin(theta) - light) * k_bob
    return 0.5 * (pivot_shadow + bob_shadow), bob_shadow - pivot_shadow


def _shadow_geometry(zpa: np.ndarray) -> tuple[np.ndarray, ...]:
    """Shadow centre ``c``, signed length ``d`` and their derivatives w.r.t. ``(z_angle, z_light)``.

    ``zpa`` is ``(N, 2)``: the standardised angle and light latents. Returns ``c, d, dc, dd`` with
    ``dc``, ``dd`` of shape ``(N, 2)``.
    """
    ta = np.tanh(zpa[:, 0] / LATENT_SCALE)
    tl = np.tanh(zpa[:, 1] / LATENT_SCALE)
    theta = MAX_ANGLE * ta
    light = LIGHT_RANGE * tl
    dtheta = (MAX_ANGLE / LATENT_SCALE) * (1.0 - ta * ta)
    dlight = (LIGHT_RANGE / LATENT_SCALE) * (1.0 - tl * tl)
    sin, cos = np.sin(theta), np.cos(theta)
    bob_x = ROD_LENGTH * sin
    k_bob = LIGHT_HEIGHT / (LIGHT_HEIGHT - PIVOT_HEIGHT + ROD_LENGTH * cos)
    pivot_shadow = light * (1.0 - _K_PIVOT)
    bob_shadow = light + (bob_x - light) * k_bob
    # d(bob_shadow)/d(theta): R cos k + (x - l) dk/dtheta, dk/dtheta = k^2 R sin / H
    dbob_dtheta = ROD_LENGTH * cos * k_bob + (bob_x - light) * k_bob * k_bob * ROD_LENGTH * sin / LIGHT_HEIGHT
    dbob_dlight = 1.0 - k_bob
    dpivot_dlight = 1.0 - _K_PIVOT
    c = 0.5 * (pivot_shadow + bob_shadow)
    d = bob_shadow - pivot_shadow
    dc = np.stack([0.5 * dbob_dtheta * dtheta, 0.5 * (dbob_dlight + dpivot_dlight) * dlight], axis=1)
    dd = np.stack([dbob_dtheta * dtheta, (dbob_dlight - dpivot_dlight) * dlight], axis=1)
    return c, d, dc, dd


def _observational_moments(order: int = 96) -> tuple[float, float, float, float]:
    # Exact (to quadrature precision) mean and std of c and d under z_angle, z_light ~ N(0, 1).
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    za, zl = np.meshgrid(x, x, indexing="ij")
    ww = np.outer(w, w).ravel()
    c, d = _shadow_values(np.stack([za.ravel(), zl.ravel()], axis=1))
    mc, md = float(ww @ c), float(ww @ d)
    return mc, math.sqrt(float(ww @ (c - mc) ** 2)), md, math.sqrt(float(ww @ (d - md) ** 2))


SHADOW_POS_MEAN, SHADOW_POS_STD, SHADOW_LEN_MEAN, SHADOW_LEN_STD = _observational_moments()
DEFAULT_SHADOW_NOISE = 0.3


class _ShadowMechanism:
    """Picklable mechanism pieces for one shadow latent: value and gradient of
    ``a * (g(z_angle, z_light) - m) / s`` with ``g`` the centre (``which=0``) or length (``which=1``)."""

    def __init__(self, which: int, signal: float) -> None:
        self.which = which
        mean, std = ((SHADOW_POS_MEAN, SHADOW_POS_STD) if which == 0 else (SHADOW_LEN_MEAN, SHADOW_LEN_STD))
        self.mean, self.factor = mean, signal / std

    def value(self, zpa: np.ndarray) -> np.ndarray:
        g = _shadow_values(zpa)[self.which]
        return self.factor * (g - self.mean)

    def grad(self, zpa: np.ndarray) -> np.ndarray:
        return self.factor * _shadow_geometry(zpa)[2 + self.which]


def shadow_scm(shadow_noise: float = DEFAULT_SHADOW_NOISE) -> SCM:
    """The SCM of the shadow scene; ``shadow_noise`` in ``(0, 1)`` is the noise std of the two shadow
    latents (the geometric signal gets variance ``1 - shadow_noise^2``)."""
    if not (isinstance(shadow_noise, int | float) and 0.0 < shadow_noise < 1.0):
        raise ValueError(f"shadow_noise must be a number in (0, 1), got {shadow_noise!r}")
    signal = math.sqrt(1.0 - shadow_noise**2)
    mechanisms = [None, None]
    for which in (0, 1):
        m = _ShadowMechanism(which, signal)
        mechanisms.append(FunctionMechanism((0, 1), m.value, m.grad))
    return SCM(GRAPH, mechanisms, [1.0, 1.0, shadow_noise, shadow_noise], names=NODE_NAMES)


def _soft_limit(x: np.ndarray, limit: float, power: int = 8) -> np.ndarray:
    # Smooth, monotone, invertible; identity for |x| << limit, saturates at +-limit.
    return x / (1.0 + np.abs(x / limit) ** power) ** (1.0 / power)


class ShadowRenderer:
    """Batch renderer of the shadow scene: latents ``(N, 4)`` -> frames ``(N, size, size, 3)`` uint8.

    Draws (anti-aliased, sub-pixel) the sky and ground, the shadow on the ground (a dark bar from the
    pivot's shadow to the bob's shadow with a blob at the bob's end, so the sign of the length shows),
    the rod and bob from the angle latent, the pivot, and the light (a sun disc) from the light
    latent. The shadow's centre and signed length are read from the shadow latents (inverting their
    standardisation), not recomputed from the geometry, so the picture shows the noise of the SCM;
    its two ends are kept in view by a smooth saturation near the image edges.

    Args:
        image_size: frame height and width in pixels.
        shadow_noise: the noise std of the shadow latents used by the SCM (sets the standardisation).
    """

    SKY = (225, 235, 250)
    GROUND = (196, 184, 150)
    SHADOW = (70, 70, 80)
    ROD = (60, 60, 60)
    BOB = (200, 40, 40)
    SUN = (250, 190, 30)

    def __init__(self, image_size: int = 64, shadow_noise: float = DEFAULT_SHADOW_NOISE) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        if not (isinstance(shadow_noise, int | float) and 0.0 < shadow_noise < 1.0):
            raise ValueError(f"shadow_noise must be a number in (0, 1), got {shadow_noise!r}")
        self.image_size = int(image_size)
        self.n = 4
        self.shadow_noise = float(shadow_noise)
        self._signal = math.sqrt(1.0 - self.shadow_noise**2)
        self.scale = self.image_size / (X_MAX - X_MIN)
        one = 1 << SHIFT
        s = self.scale
        self._bob_r = round(BOB_RADIUS * s * one)
        self._sun_r = round(SUN_RADIUS * s * one)
        self._pivot_r = round(PIVOT_RADIUS * s * one)
        self._blob_axes = (round(BOB_SHADOW_HALF_WIDTH * s * one), round(2 * SHADOW_HALF_THICKNESS * s * one))
        self._pivot = tuple(to_fixed(self._pixels(np.array([0.0]), np.array([PIVOT_HEIGHT]))[:, 0]).tolist())
        template = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        template[:] = self.SKY
        ground_row = (Y_TOP - 0.0) * s
        template[math.ceil(ground_row):] = self.GROUND
        # anti-aliased ground edge: blend the partially covered row
        row = math.floor(ground_row)
        frac = math.ceil(ground_row) - ground_row
        if frac > 0:
            template[row] = np.rint(np.add(np.multiply(self.SKY, 1 - frac), np.multiply(self.GROUND, frac)))
        self._template = template
        self._ground_fixed = (to_fixed(np.array(Y_TOP - SHADOW_HALF_THICKNESS) * s).item(),
                              to_fixed(np.array(Y_TOP + SHADOW_HALF_THICKNESS) * s).item())

    def _pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """World ``x``, ``y`` (any shape) -> continuous image coordinates ``(2, ...)`` (column, row)."""
        return np.stack([(x - X_MIN) * self.scale, (Y_TOP - y) * self.scale])

    def shadow_ends(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World x of the pivot's and the bob's shadow ``(N,)`` each, as drawn for latents ``(N, 4)``."""
        c = SHADOW_POS_MEAN + SHADOW_POS_STD * z[:, 2] / self._signal
        d = SHADOW_LEN_MEAN + SHADOW_LEN_STD * z[:, 3] / self._signal
        return _soft_limit(c - 0.5 * d, VIEW_HALF_WIDTH), _soft_limit(c + 0.5 * d, VIEW_HALF_WIDTH)

    def _geometry(self, z: np.ndarray) -> list:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != 4:
            raise ValueError(f"z must have shape (N, 4), got {z.shape}")
        bob_x, bob_y = bob_of(angle_of(z[:, 0]))
        pivot_end, bob_end = self.shadow_ends(z)
        # columns: bob col, bob row, sun col, sun row, pivot-shadow col, bob-shadow col (continuous)
        g = np.empty((len(z), 6))
        g[:, 0] = (bob_x - X_MIN) * self.scale
        g[:, 1] = (Y_TOP - bob_y) * self.scale
        g[:, 2] = (light_of(z[:, 1]) - X_MIN) * self.scale
        g[:, 3] = (Y_TOP - LIGHT_HEIGHT) * self.scale
        g[:, 4] = (pivot_end - X_MIN) * self.scale
        g[:, 5] = (bob_end - X_MIN) * self.scale
        return to_fixed(g).tolist()

    def _draw(self, img: np.ndarray, g: list) -> None:
        bob_c, bob_r, sun_c, sun_r, p_end, b_end = g
        top, bottom = self._ground_fixed
        lo, hi = (p_end, b_end) if p_end <= b_end else (b_end, p_end)
        bar = np.array([[lo, top], [hi, top], [hi, bottom], [lo, bottom]], dtype=np.int32)
        cv2.fillConvexPoly(img, bar, self.SHADOW, cv2.LINE_AA, SHIFT)
        ground = (top + bottom) // 2
        cv2.ellipse(img, (b_end, ground), self._blob_axes, 0.0, 0.0, 360.0, self.SHADOW, -1, cv2.LINE_AA, SHIFT)
        cv2.line(img, self._pivot, (bob_c, bob_r), self.ROD, 1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, self._pivot, self._pivot_r, self.ROD, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, (bob_c, bob_r), self._bob_r, self.BOB, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(img, (sun_c, sun_r), self._sun_r, self.SUN, -1, cv2.LINE_AA, SHIFT)

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``(N, size, size, 3)`` uint8 for latents ``z`` ``(N, 4)``; written into ``out`` when
        given (a C-contiguous uint8 array of that shape)."""
        geometry = self._geometry(z)
        out = frame_buffer(out, len(geometry), self.image_size)
        for img, g in zip(out, geometry, strict=True):
            img[...] = self._template
            self._draw(img, g)
        return out

    def frame(self, z: np.ndarray) -> np.ndarray:
        """One frame ``(size, size, 3)`` for latents ``(4,)``; identical to ``self(z[None])[0]``."""
        (g,) = self._geometry(np.reshape(z, (1, -1)))
        img = self._template.copy()
        self._draw(img, g)
        return img


class ShadowEnv(CausalSceneEnv):
    """
    ## Description

    A pendulum, a light and the shadow they cast, in the spirit of the CausalVAE pendulum data set.
    Four latent variables (standardised: observational mean 0, variance 1): 0 ``angle`` of the
    pendulum, 1 ``light`` (horizontal position of the light), 2 ``shadow_pos`` (centre of the rod's
    shadow on the ground) and 3 ``shadow_len`` (its signed length: positive when the bob's shadow lies
    right of the pivot's). Graph: angle -> shadow_pos, angle -> shadow_len, light -> shadow_pos,
    light -> shadow_len (``A[i, j] = 1`` iff ``i -> j``). The shadow mechanisms are the geometric
    projections of the pivot and the bob from the point light onto the ground line, expressed in
    standardised units (see ``causal_wm.envs.shadow``), plus Gaussian noise of std ``shadow_noise``;
    they are nonlinear, with analytic gradients so the SCM's scores are exact.

    Each step the agent chooses an intervention on the causal model and the world draws a fresh
    sample under it: ``eps_t = rho * eps_{t-1} + sqrt(1 - rho^2) * xi_t`` and
    ``z_t = scm.forward(eps_t[None], interventions[a_t])[0]``, so every step's marginal is exactly
    the chosen regime's distribution (``persistence = rho``; 0 gives i.i.d. samples). Intervening on
    a shadow latent moves the drawn shadow without moving the pendulum or the light, as a shadow
    puppet would.

    The true DAG is ``env.unwrapped.graph``, the SCM ``env.unwrapped.scm``, the menu
    ``env.unwrapped.interventions`` and the batch renderer ``env.unwrapped.renderer``.

    ## Action Space

    ``Discrete(K)``. Action 0 = no intervention (regime 0). Action ``k >= 1`` applies
    ``interventions[k]`` (``interventions[0] is None``; regime = action). Default menu, node by node:
    hard mean-shift interventions ``N(-1, 0.7^2)`` and ``N(+1, 0.7^2)``, then ``do(z_t = v)`` with
    noise std 0.05 for ``v`` in ``(-1.5, 0, 1.5)``; then the ``multi_node`` entries (``K = 21`` by
    default). With ``task="reach"`` the entries that target the goal node are dropped unless
    ``allow_goal_interventions=True`` (``K = 16`` by default).

    ## Observation Space

    ``Box(0, 255, (image_size, image_size, 3), uint8)``: an RGB frame (HWC), 64 x 64 by default:
    sky, ground, the pivot, rod and bob (from the angle), the sun disc (from the light position) and
    the shadow on the ground (a dark bar with a blob at the bob's end, from the two shadow latents).

    ## Rewards

    ``task=None`` (default): 0 every step. ``task="reach"``: ``-abs(z[goal_node] - goal_value)``.

    ## Starting State

    An observational sample (regime 0) with ``eps_0 ~ N(0, I)``.

    ## Episode End

    Never terminates; ``gym.make`` truncates after 50 steps (``max_episode_steps``).

    Every ``info`` (reset and step) holds ``regime`` (int), ``intervention`` (the ``Intervention``
    or None) and ``z`` (float64 ``(4,)`` true latents; for evaluation only).

    ## Arguments

    ```python
    gym.make("causal_wm/Shadow-v0", image_size=64, shadow_noise=0.3, persistence=0.0,
             hard_interventions="shift", do_values=(-1.5, 0.0, 1.5), do_std=0.05, multi_node=(),
             task=None, goal_node=None, goal_value=None, allow_goal_interventions=None,
             render_mode=None)
    ```

    - ``image_size``: frame height and width in pixels.
    - ``shadow_noise``: noise std of the shadow latents in ``(0, 1)``.
    - ``persistence``, ``hard_interventions``, ``do_values``, ``do_std``, ``multi_node``, ``task``,
      ``goal_node``, ``goal_value`` (default 1.0), ``allow_goal_interventions``, ``render_mode``: as in
      ``causal_wm/Balls-v0``. The default goal node is ``shadow_len`` (node 3: the node with the most
      ancestors, ties to the highest index).

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, image_size: int = 64, shadow_noise: float = DEFAULT_SHADOW_NOISE,
                 persistence: float = 0.0, hard_interventions: str = "shift",
                 do_values: Sequence[float] = DEFAULT_DO_VALUES, do_std: float = 0.05,
                 multi_node: Sequence[MultiNodeSpec] = (), task: str | None = None, goal_node: int | None = None,
                 goal_value: float | None = None, allow_goal_interventions: bool | None = None,
                 render_mode: str | None = None) -> None:
        scm = shadow_scm(shadow_noise)
        renderer = ShadowRenderer(image_size, shadow_noise)
        super().__init__(scm, renderer, persistence=persistence, hard_interventions=hard_interventions,
                         do_values=do_values, do_std=do_std, multi_node=multi_node, task=task,
                         goal_node=goal_node, goal_value=goal_value,
                         allow_goal_interventions=allow_goal_interventions, render_mode=render_mode)
        self.shadow_noise = float(shadow_noise)
