"""Benchmark the causal scenes: env steps/s and batch rendering frames/s, with matplotlib as reference.

Measures, in one run and side by side:

- ``causal_wm/Balls-v0`` env steps/s through ``gym.make`` (default wrappers: TimeLimit, order
  enforcing, passive checker), seeded random actions, resetting at episode ends;
- the ``BallsRenderer`` batch renderer (OpenCV, anti-aliased, sub-pixel) in frames/s, allocating its
  output and writing into a reused buffer (``out=``);
- the same ball scene drawn with matplotlib (``Circle`` patches on a 64 x 64 px Agg figure, reused
  between frames, as published data-generation code does) in frames/s, and the speed ratio;
- ``causal_wm/Shadow-v0`` env steps/s and its batch renderer in frames/s.

Each number is the median over ``--repeats`` timed runs, as a wall-clock rate and as a rate per second
of this process's CPU time (on a shared machine the second is closer to the unloaded speed; the load
average is recorded too). Writes ``benchmarks/results/render.json`` and ``benchmarks/results/render_samples.png``
(OpenCV vs matplotlib frames of the same latents, and shadow frames) and prints a table.

    python scripts/bench_render.py            # full run
    python scripts/bench_render.py --quick    # smoke test in seconds, writes ./bench_out/render/
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from tqdm import tqdm

from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.device import machine_info
from causal_wm.envs import BallsRenderer


@dataclass
class Config:
    """Benchmark settings."""

    env_steps: int = 20_000
    """env steps per timed run (Balls-v0)."""
    shadow_steps: int = 5_000
    """env steps per timed run (Shadow-v0)."""
    frames: int = 20_000
    """frames per timed run of the OpenCV batch renderers."""
    mpl_frames: int = 500
    """frames per timed run of the matplotlib renderer."""
    repeats: int = 3
    """timed runs per measurement (the median is reported)."""
    seed: int = 0
    """seed of the actions and latents."""
    output: str = str(RESULTS_DIR / "render.json")
    """where the JSON goes (render_samples.png is written next to it)."""
    quick: bool = False
    """smoke test in seconds: a few hundred steps and frames, one repeat; writes under ./bench_out/render/."""


QUICK = {"env_steps": 500, "shadow_steps": 200, "frames": 500, "mpl_frames": 20, "repeats": 1,
         "output": str(quick_dir("render") / "render.json")}


def _median_rate(fn, count: int, repeats: int, label: str) -> tuple[float, list[float], float]:
    """Median wall-clock rate (items/s) over ``repeats`` runs of ``fn``, the per-run rates, and the
    median rate per second of this process's CPU time (close to the unloaded rate when the machine
    is shared: time spent waiting for a core is not counted)."""
    rates, cpu_rates = [], []
    for _ in tqdm(range(repeats), desc=label, leave=False):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        rates.append(count / (time.perf_counter() - start))
        cpu_rates.append(count / max(time.process_time() - cpu_start, 1e-9))
    return statistics.median(rates), rates, statistics.median(cpu_rates)


def env_steps(env_id: str, steps: int, seed: int):
    """A function that runs ``steps`` seeded random steps of a fresh ``gym.make(env_id)`` (made and
    reset outside the timed function), resetting at episode ends."""
    env = gym.make(env_id)
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)

    def run() -> None:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()

    return run


class MatplotlibBalls:
    """The ball scene drawn with matplotlib: one 64 x 64 px Agg figure, circles moved per frame."""

    def __init__(self, renderer: BallsRenderer) -> None:
        self.renderer = renderer
        size = renderer.image_size
        self.fig = Figure(figsize=(1, 1), dpi=size)
        FigureCanvasAgg(self.fig)  # Agg canvas, no GUI backend
        ax = self.fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, size)
        ax.set_ylim(0, size)
        ax.axis("off")
        self.fig.patch.set_facecolor(np.array(renderer.background) / 255)
        self.circles = [ax.add_patch(Circle((0, 0), renderer.ball_radius, color=np.array(c) / 255))
                        for c in renderer.colors]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        positions = self.renderer.positions(z)
        out = np.empty((len(z), self.renderer.image_size, self.renderer.image_size, 3), dtype=np.uint8)
        for i, p in enumerate(positions):
            for circle, xy in zip(self.circles, p, strict=True):
                circle.center = (float(xy[0]), float(xy[1]))
            self.fig.canvas.draw()
            out[i] = np.asarray(self.fig.canvas.buffer_rgba())[..., :3]
        return out


def library_versions() -> dict:
    """Versions of the rendering libraries, next to ``causal_wm.device.machine_info``."""
    info = {"gymnasium": gym.__version__, "matplotlib": matplotlib.__version__}
    try:
        import cv2
        info["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("output",))
    torch.set_num_threads(1)
    info = machine_info(**library_versions())
    load_before = os.getloadavg()

    balls = gym.make("causal_wm/Balls-v0").unwrapped
    renderer: BallsRenderer = balls.renderer
    z = balls.scm.sample(cfg.frames, seed=cfg.seed)
    z_mpl = z[: cfg.mpl_frames]
    mpl = MatplotlibBalls(renderer)
    shadow = gym.make("causal_wm/Shadow-v0").unwrapped
    z_shadow = shadow.scm.sample(cfg.frames, seed=cfg.seed)

    buffer = np.empty((cfg.frames, renderer.image_size, renderer.image_size, 3), dtype=np.uint8)
    measurements = [
        ("balls_env_steps", "Balls-v0 env (gym.make)", "steps/s",
         env_steps("causal_wm/Balls-v0", cfg.env_steps, cfg.seed), cfg.env_steps),
        ("balls_batch_frames", "Balls batch renderer (OpenCV)", "frames/s", lambda: renderer(z), cfg.frames),
        ("balls_batch_frames_reused_buffer", "Balls batch renderer, out= buffer", "frames/s",
         lambda: renderer(z, out=buffer), cfg.frames),
        ("balls_matplotlib_frames", "Balls matplotlib (Agg)", "frames/s", lambda: mpl(z_mpl), len(z_mpl)),
        ("shadow_env_steps", "Shadow-v0 env (gym.make)", "steps/s",
         env_steps("causal_wm/Shadow-v0", cfg.shadow_steps, cfg.seed), cfg.shadow_steps),
        ("shadow_batch_frames", "Shadow batch renderer (OpenCV)", "frames/s",
         lambda: shadow.renderer(z_shadow), cfg.frames),
    ]
    results: dict = {}
    rows = []
    for key, label, unit, fn, count in measurements:
        rate, runs, cpu_rate = _median_rate(fn, count, cfg.repeats, label)
        results[f"{key}_per_s"] = rate
        results[f"{key}_per_s_runs"] = runs
        results[f"{key}_per_cpu_s"] = cpu_rate
        rows.append((label, unit, rate, cpu_rate))
    results["batch_over_matplotlib"] = results["balls_batch_frames_per_s"] / results["balls_matplotlib_frames_per_s"]
    results["batch_over_matplotlib_cpu"] = (results["balls_batch_frames_per_cpu_s"]
                                            / results["balls_matplotlib_frames_per_cpu_s"])
    rows.insert(4, ("OpenCV / matplotlib", "ratio", results["batch_over_matplotlib"],
                    results["batch_over_matplotlib_cpu"]))
    # both renderers draw the same scene: mean absolute pixel difference (anti-aliasing differs)
    results["opencv_vs_matplotlib_mean_abs_pixel_diff"] = float(
        np.abs(renderer(z_mpl).astype(np.int16) - mpl(z_mpl).astype(np.int16)).mean())

    info["loadavg_before"] = load_before
    info["loadavg_after"] = os.getloadavg()
    report = {"benchmark": "render", "machine": info, "settings": asdict(cfg),
              "scene": {"balls": {"num_balls": renderer.num_balls, "image_size": renderer.image_size,
                                  "ball_radius": renderer.ball_radius, "keep_in_view": renderer.keep_in_view},
                        "shadow": {"image_size": shadow.renderer.image_size}},
              "results": results}
    out = write_json(cfg.output, report, indent=2)

    k = 8
    grid = np.concatenate([np.concatenate(list(renderer(z[:k])), axis=1),
                           np.concatenate(list(mpl(z[:k])), axis=1),
                           np.concatenate(list(shadow.renderer(z_shadow[:k])), axis=1)])
    fig = Figure(figsize=(k * 1.2, 3 * 1.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([32, 96, 160], ["Balls (OpenCV)", "Balls (matplotlib)", "Shadow (OpenCV)"])
    ax.set_xticks([])
    fig.tight_layout()
    fig.savefig(out.with_name("render_samples.png"))

    print(f"{'measurement':36s} {'unit':>9s} {'wall median':>12s} {'per CPU s':>12s}")
    for label, unit, rate, cpu_rate in rows:
        print(f"{label:36s} {unit:>9s} {rate:12,.1f} {cpu_rate:12,.1f}")
    print(f"load average before/after: {load_before[0]:.2f} / {info['loadavg_after'][0]:.2f} "
          f"on {info['cpu_count']} CPUs; wrote {out}")
    return report


if __name__ == "__main__":
    main()
