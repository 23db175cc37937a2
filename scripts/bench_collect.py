"""Benchmark the collector: frames per second written to disk for ``causal_wm/Balls-v0``.

Measures, side by side on this machine:

- ``env``: the bare env (``gym.make``, seeded random actions, resets at episode ends), the ceiling for
  one process;
- ``collect``: ``causal_wm.collect`` end to end (env steps, labelling, HDF5 writes, commit), with
  one process (``num_envs=1``) and with two env processes (``num_envs=2, vectorization="async"``:
  two workers run whole episodes, the main process writes), and with ``num_envs=2`` in one process
  (``sync``) for reference;
- one process without compression (the collector's default is lzf, which every other setting uses), and
  the write path alone (rows already in memory, uncompressed) in MB/s. ``scripts/bench_storage.py``
  compares the compressions (disk use, write and read speed).

Besides wall-clock frames/s, every collection run records the CPU time of all its processes per frame:
on a machine shared with other jobs the wall-clock numbers depend on the load, the CPU cost does not.

Every number is the median over ``--repeats`` timed runs; files go to a temporary folder and are
deleted. The machine may be shared: the load average before and after is recorded. Writes
``benchmarks/results/collect.json`` and ``benchmarks/results/collect.png`` and prints a table.

    python scripts/bench_collect.py            # full run
    python scripts/bench_collect.py --quick    # smoke test in seconds, writes ./bench_out/collect/
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import h5py
import matplotlib
import numpy as np
import torch
from tqdm import tqdm

import causal_wm  # registers the envs
from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.data import collect
from causal_wm.device import machine_info

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ENV_ID = "causal_wm/Balls-v0"
GOAL_FPS = 5_000


@dataclass
class Config:
    """Benchmark settings."""

    steps: int = 30_000
    """frames per timed collection run."""
    env_steps: int = 20_000
    """steps per timed run of the bare env."""
    repeats: int = 3
    """timed runs per measurement (the median is reported)."""
    chunk_size: int = 1024
    """rows written per chunk."""
    seed: int = 0
    """collection seed."""
    out: str = str(RESULTS_DIR / "collect.json")
    """where the JSON goes (the PNG is written next to it)."""
    quick: bool = False
    """smoke test in seconds: 2,000 frames, one repeat; writes under ./bench_out/collect/."""


QUICK = {"steps": 2_000, "env_steps": 1_000, "repeats": 1, "chunk_size": 256,
         "out": str(quick_dir("collect") / "collect.json")}


def _bare_env_fps(steps: int, seed: int) -> float:
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (worker processes are joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _collect_fps(folder: Path, config: Config, **kwargs) -> tuple[float, int, float]:
    """``(frames/s, file bytes, CPU microseconds per frame over all processes)``."""
    path = folder / "bench.h5"
    cpu = _cpu_seconds()
    start = time.perf_counter()
    ds = collect(ENV_ID, config.steps, path, seed=config.seed, progress=False, resume=False,
                 chunk_size=config.chunk_size, **kwargs)
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    rows = len(ds)
    ds.close()
    size = path.stat().st_size
    path.unlink()
    assert rows == config.steps
    return config.steps / elapsed, size, cpu / config.steps * 1e6


def _write_path_mb_s(folder: Path, config: Config) -> float:
    """Only the HDF5 writes: chunks of ready rows, written and flushed as the collector does."""
    rng = np.random.default_rng(config.seed)
    block = rng.integers(0, 256, size=(config.chunk_size, 64, 64, 3), dtype=np.uint8)
    path = folder / "write.h5"
    chunks = max(1, config.steps // config.chunk_size)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("obs", (0, 64, 64, 3), maxshape=(None, 64, 64, 3), dtype=np.uint8,
                              chunks=(85, 64, 64, 3))
        start = time.perf_counter()
        for i in range(chunks):
            ds.resize((i + 1) * config.chunk_size, axis=0)
            ds[i * config.chunk_size:] = block
            f.flush()
        elapsed = time.perf_counter() - start
    path.unlink()
    return chunks * block.nbytes / elapsed / 1e6


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    torch.set_num_threads(1)

    settings = {
        "1 process (num_envs=1)": {},
        "2 processes (num_envs=2, async)": {"num_envs": 2, "vectorization": "async"},
        "1 process, 2 envs (num_envs=2, sync)": {"num_envs": 2, "vectorization": "sync"},
        "1 process, uncompressed": {"compression": None},
    }
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = [(name, kwargs) for name, kwargs in settings.items() for _ in range(config.repeats)]
        bare = [_bare_env_fps(config.env_steps, config.seed) for _ in range(config.repeats)]
        measured: dict[str, list[tuple[float, int, float]]] = {name: [] for name in settings}
        # interleave the settings so that a change of machine load hits all of them alike
        order = [runs[i] for r in range(config.repeats) for i in range(r, len(runs), config.repeats)]
        for name, kwargs in tqdm(order, desc="bench collect"):
            measured[name].append(_collect_fps(folder, config, **kwargs))
        write_mb_s = statistics.median(_write_path_mb_s(folder, config) for _ in range(config.repeats))
    for name, values in measured.items():
        fps = [v[0] for v in values]
        cpu = statistics.median(v[2] for v in values)
        results[name] = {"frames_per_s": statistics.median(fps), "runs": fps,
                         "cpu_us_per_frame": cpu,
                         "frames_per_cpu_s": 1e6 / cpu,
                         "file_bytes_per_frame": values[0][1] / config.steps,
                         "meets_goal": statistics.median(fps) >= GOAL_FPS}
    report = {
        "benchmark": "collect",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(h5py=h5py.__version__, hdf5=h5py.version.hdf5_version, gymnasium=gym.__version__,
                                load_average_before=load_before, load_average_after=os.getloadavg()),
        "settings": {"env_id": ENV_ID, "frame": "64x64x3 uint8", "goal_frames_per_s": GOAL_FPS,
                     "package_version": causal_wm.__version__,
                     **{k: v for k, v in asdict(config).items() if k != "out"},
                     "policy": "acting (uniform over the 31-entry menu)"},
        "bare_env_steps_per_s": {"median": statistics.median(bare), "runs": bare},
        "hdf5_write_path_MB_per_s": write_mb_s,
        "collect": results,
    }
    out = write_json(config.out, report, indent=2)
    _plot(report, out.with_suffix(".png"))
    print(f"{'setting':<40} {'frames/s':>10} {'CPU us/frame':>13}")
    print(f"{'bare env (no writing)':<40} {report['bare_env_steps_per_s']['median']:>10.0f}")
    for name, r in results.items():
        print(f"{name:<40} {r['frames_per_s']:>10.0f} {r['cpu_us_per_frame']:>13.0f}")
    print(f"HDF5 write path: {write_mb_s:.0f} MB/s; load average before/after: "
          f"{load_before[0]:.1f} / {report['machine']['load_average_after'][0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {out}")
    return report


def _plot(report: dict, path: Path) -> None:
    names = ["bare env (no writing)", *report["collect"]]
    values = [report["bare_env_steps_per_s"]["median"], *(r["frames_per_s"] for r in report["collect"].values())]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh(names, values, color=["0.6"] + ["C0"] * (len(values) - 1))
    ax.axvline(GOAL_FPS, color="C3", linestyle="--", label=f"goal {GOAL_FPS} frames/s")
    ax.invert_yaxis()
    ax.set_xlabel("frames per second (median)")
    load = report["machine"]["load_average_before"][0]
    ax.set_title(f"Balls-v0 collection to HDF5, {report['machine']['cpu_count']} CPUs, load {load:.1f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
