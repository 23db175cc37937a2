"""Batch renderers: latents ``(N, n)`` -> uint8 frames ``(N, H, W, 3)`` without stepping an env.

Drawing is anti-aliased with sub-pixel precision through OpenCV: coordinates are passed as fixed
point numbers with ``SHIFT`` fractional bits. Continuous image coordinates put the left/top edge of
the image at 0 and pixel ``i`` over ``[i, i + 1)``; OpenCV puts pixel centres at integers, hence the
half-pixel offset in ``to_fixed``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

# Fractional bits of OpenCV's fixed-point coordinates (1/16 px).
SHIFT = 4
_ONE = 1 << SHIFT
KEEP_IN_VIEW_MODES = ("squash", "truncate")

# Distinct, colour-blind-friendly-ish RGB colours; more balls get evenly spaced hues.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 200, 200), (240, 50, 230), (128, 128, 0),
)

cv2.setNumThreads(1)  # per-frame calls are tiny; threads only add contention on shared machines


def to_fixed(coord: np.ndarray) -> np.ndarray:
    """Continuous image coordinates (any shape) -> OpenCV fixed-point ints (pixel centres at i + 0.5)."""
    return np.rint((coord - 0.5) * _ONE).astype(np.int64)


def default_colors(k: int) -> list[tuple[int, int, int]]:
    """``k`` distinct RGB colours: the palette, then evenly spaced hues."""
    if k <= len(PALETTE):
        return list(PALETTE[:k])
    hues = [i / k for i in range(k)]
    return [tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.8, 0.85)) for h in hues]


def _check_color(c: Sequence[int], what: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in c)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be an (r, g, b) triple of ints in 0..255, got {c!r}") from err
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"{what} must be an (r, g, b) triple of ints in 0..255, got {c!r}")
    return rgb  # type: ignore[return-value]


def squash(z: np.ndarray, low: float, high: float, scale: float) -> np.ndarray:
    """Smooth, monotone, invertible map of the real line onto ``(low, high)``:
    ``low + (high - low) * (0.5 + 0.5 * tanh(z / scale))``; slope ``(high - low) / (2 scale)`` at 0."""
    return low + (high - low) * (0.5 + 0.5 * np.tanh(z / scale))


class BallsRenderer:
    """Renders ``num_balls`` balls: node ``2b`` is the x and node ``2b + 1`` the y of ball ``b``.

    Pixel positions (x to the right, y upwards from the bottom edge) are
    ``margin + (size - 2 * margin) * u`` with ``margin = ball_radius + 1`` and
    ``u = 0.5 + 0.5 * tanh(z / squash_scale)`` (``keep_in_view="squash"``: smooth, monotone,
    every real latent stays in view) or ``u = (z - low) / (high - low)`` for a box
    ``(low, high)`` (``keep_in_view="truncate"``: linear; latents outside the box leave the view).
    Later balls are drawn over earlier ones.

    Args:
        num_balls: number of balls ``k``; latents have ``n = 2k`` columns.
        image_size: frame height and width in pixels.
        ball_radius: radius in pixels (sub-pixel values allowed).
        colors: ``k`` RGB triples (default: ``default_colors(k)``).
        keep_in_view: ``"squash"`` or ``"truncate"``.
        squash_scale: latent scale of the tanh squash (central range near linear).
        box: ``(low, high)``, each a number or ``(n,)``; needed for ``"truncate"``.
        background: RGB of the plain background.
    """

    def __init__(self, num_balls: int = 3, image_size: int = 64, ball_radius: float = 5.0,
                 colors: Sequence[Sequence[int]] | None = None, keep_in_view: str = "squash",
                 squash_scale: float = 2.5, box: tuple[np.ndarray | float, np.ndarray | float] | None = None,
                 background: Sequence[int] = (255, 255, 255)) -> None:
        if isinstance(num_balls, bool) or not isinstance(num_balls, int | np.integer) or num_balls < 1:
            raise ValueError(f"num_balls must be a positive int, got {num_balls!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not (isinstance(ball_radius, int | float) and 0 < ball_radius < image_size / 2 - 1):
            raise ValueError(f"ball_radius must be a number in (0, image_size / 2 - 1), got {ball_radius!r}")
        if keep_in_view not in KEEP_IN_VIEW_MODES:
            raise ValueError(f"keep_in_view must be one of {KEEP_IN_VIEW_MODES}, got {keep_in_view!r}")
        if not (isinstance(squash_scale, int | float) and squash_scale > 0):
            raise ValueError(f"squash_scale must be a positive number, got {squash_scale!r}")
        self.num_balls = int(num_balls)
        self.n = 2 * self.num_balls
        self.image_size = int(image_size)
        self.ball_radius = float(ball_radius)
        self.keep_in_view = keep_in_view
        self.squash_scale = float(squash_scale)
        colors = default_colors(self.num_balls) if colors is None else list(colors)
        if len(colors) != self.num_balls:
            raise ValueError(f"need one colour per ball: {len(colors)} colours for {self.num_balls} balls")
        self.colors = [_check_color(c, "each colour") for c in colors]
        self.background = _check_color(background, "background")
        if keep_in_view == "truncate":
            if box is None:
                raise ValueError("keep_in_view='truncate' needs a box (low, high)")
            low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), (self.n,)).copy() for b in box)
            if np.any(low >= high):
                raise ValueError("box needs low < high for every latent")
            self.box: tuple[np.ndarray, np.ndarray] | None = (low, high)
        else:
            self.box = None
        self.margin = self.ball_radius + 1.0
        self._radius_fixed = round(self.ball_radius * _ONE)
        self._template = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        self._template[:] = self.background

    def positions(self, z: np.ndarray) -> np.ndarray:
        """Continuous pixel positions ``(N, k, 2)``: ``[..., 0]`` = x from the left edge,
        ``[..., 1]`` = y from the bottom edge."""
        z = self._check(z)
        lo, hi = self.margin, self.image_size - self.margin
        if self.box is None:
            p = squash(z, lo, hi, self.squash_scale)
        else:
            low, high = self.box
            p = lo + (hi - lo) * (z - low) / (high - low)
        return p.reshape(len(z), self.num_balls, 2)

    def _fixed_centres(self, z: np.ndarray) -> list:
        p = self.positions(z)
        # image rows grow downwards: row coordinate = size - y
        p[..., 1] = self.image_size - p[..., 1]
        return to_fixed(p).tolist()

    def _check(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"z must have shape (N, {self.n}) for {self.num_balls} balls, got {z.shape}")
        return z

    def _draw(self, img: np.ndarray, centres: list) -> None:
        r = self._radius_fixed
        for centre, color in zip(centres, self.colors, strict=True):
            cv2.circle(img, centre, r, color, -1, cv2.LINE_AA, SHIFT)

    def __call__(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``(N, size, size, 3)`` uint8 for latents ``z`` ``(N, 2k)``; written into ``out`` when
        given (a C-contiguous uint8 array of that shape, e.g. a reused buffer)."""
        centres = self._fixed_centres(z)
        out = frame_buffer(out, len(centres), self.image_size)
        circle, aa, radius = cv2.circle, cv2.LINE_AA, self._radius_fixed
        colors, template = self.colors, self._template
        for img, frame_centres in zip(out, centres, strict=True):
            # fill and draw frame by frame while it sits in cache
            img[...] = template
            for centre, color in zip(frame_centres, colors, strict=True):
                circle(img, centre, radius, color, -1, aa, SHIFT)
        return out

    def frame(self, z: np.ndarray) -> np.ndarray:
        """One frame ``(size, size, 3)`` for latents ``(2k,)``; identical to ``self(z[None])[0]``."""
        (centres,) = self._fixed_centres(np.reshape(z, (1, -1)))
        img = self._template.copy()
        self._draw(img, centres)
        return img


def frame_buffer(out: np.ndarray | None, num: int, size: int) -> np.ndarray:
    """``out`` checked to be a C-contiguous uint8 ``(num, size, size, 3)`` array, or a new one."""
    shape = (num, size, size, 3)
    if out is None:
        return np.empty(shape, dtype=np.uint8)
    if out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {shape}, got {out.dtype} {out.shape}")
    return out


def render_balls(z: np.ndarray, **kwargs) -> np.ndarray:
    """Frames ``(N, size, size, 3)`` of latents ``(N, 2k)`` with a ``BallsRenderer(k, **kwargs)``."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] % 2:
        raise ValueError(f"z must have shape (N, 2k), got {z.shape}")
    return BallsRenderer(z.shape[1] // 2, **kwargs)(z)
