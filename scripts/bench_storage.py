"""Benchmark the collection's storage: disk use, write speed and training-style read speed, with and
without compression, for a ``causal_wm/Balls-v0`` collection.

For every compression of the images (``none``, ``lzf`` = the default, ``gzip``) it collects the same
frames (same seed, so the same bytes) and measures:

- the file's size on disk (bytes, and bytes per frame) and the images' storage chunk (frames);
- write speed: ``causal_wm.collect`` end to end in frames/s (env steps, labelling, compression, HDF5
  writes and commits; the env's own cost is the same for every compression);
- random minibatch reads, as training does: ``Dataset.observations`` of ``batch_size`` rows drawn at
  random without replacement (uint8 frames), in frames/s, from a freshly opened file;
- a sequential scan of every frame in 4,096-frame slabs, in frames/s.

A fourth row reads an lzf copy stored in 64-frame chunks (what the uncompressed layout uses for
64 x 64 x 3 frames): each random row decompresses its whole chunk, which is why compressed images are
stored in smaller chunks. The files are small enough to stay in the OS page cache after writing, so
reads measure HDF5 and decompression, not the disk. Every number is the median over ``--repeats``
runs; the load average before and after is recorded (the machine may be shared). Writes
``benchmarks/results/storage.json`` and prints a table.

    python scripts/bench_storage.py            # full run (about 26k frames per file)
    python scripts/bench_storage.py --quick    # smoke test in seconds, writes ./bench_out/storage/
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

import causal_wm
from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.data import Dataset, collect
from causal_wm.device import machine_info

ENV_ID = "causal_wm/Balls-v0"
COMPRESSIONS = {"none": None, "lzf": "lzf", "gzip": "gzip"}
LARGE_CHUNK_ROWS = 64


@dataclass
class Config:
    """Benchmark settings."""

    frames: int = 26_000
    """frames per collection (one file per compression)."""
    batch_size: int = 256
    """frames per random minibatch."""
    read_batches: int = 50
    """random minibatches per timed read run."""
    repeats: int = 3
    """timed runs per measurement (the median is reported)."""
    chunk_size: int = 1024
    """rows the collector writes per chunk."""
    seed: int = 0
    """collection and minibatch seed."""
    out: str = str(RESULTS_DIR / "storage.json")
    """where the JSON goes."""
    quick: bool = False
    """smoke test in seconds: 2,000 frames, 5 minibatches, one repeat; writes under ./bench_out/storage/."""


QUICK = {"frames": 2_000, "read_batches": 5, "repeats": 1, "out": str(quick_dir("storage") / "storage.json")}


def _write(path: Path, config: Config, compression: str | None) -> float:
    """Frames/s of one collection into ``path`` (replaced)."""
    start = time.perf_counter()
    ds = collect(ENV_ID, config.frames, path, seed=config.seed, chunk_size=config.chunk_size, progress=False,
                 resume=False, compression=compression)
    elapsed = time.perf_counter() - start
    assert len(ds) == config.frames
    ds.close()
    return config.frames / elapsed


def _random_reads(path: Path, config: Config, repeat: int) -> float:
    """Frames/s of random minibatches from a freshly opened file."""
    rng = np.random.default_rng(config.seed + repeat)
    with Dataset(path) as ds:
        batches = [rng.choice(len(ds), size=min(config.batch_size, len(ds)), replace=False)
                   for _ in range(config.read_batches)]
        start = time.perf_counter()
        for rows in batches:
            ds.observations(rows)
        elapsed = time.perf_counter() - start
    return sum(len(rows) for rows in batches) / elapsed


def _sequential_reads(path: Path) -> float:
    with Dataset(path) as ds:
        start = time.perf_counter()
        for first in range(0, len(ds), 4096):
            ds.observations(slice(first, min(first + 4096, len(ds))))
        return len(ds) / (time.perf_counter() - start)


def _rechunked_copy(src: Path, dst: Path, rows: int) -> None:
    """A copy of the collection ``src`` whose images are lzf-compressed in storage chunks of ``rows`` frames."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for key, value in a.attrs.items():
            b.attrs[key] = value
        for name in a:
            if name == "obs":
                obs = a["obs"]
                b.create_dataset("obs", data=obs[:], maxshape=(None, *obs.shape[1:]),
                                 chunks=(rows, *obs.shape[1:]), compression="lzf", fletcher32=True)
            else:
                a.copy(a[name], b, name)


def _chunk_rows(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f["obs"].chunks[0])


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = {name: folder / f"{name}.h5" for name in COMPRESSIONS}
        writes: dict[str, list[float]] = {name: [] for name in COMPRESSIONS}
        # interleave the settings so that a change of machine load hits all of them alike
        for _ in tqdm(range(config.repeats), desc="bench storage: write"):
            for name, compression in COMPRESSIONS.items():
                writes[name].append(_write(paths[name], config, compression))
        large = f"lzf, {LARGE_CHUNK_ROWS}-frame chunks"
        paths[large] = folder / "lzf_large_chunks.h5"
        _rechunked_copy(paths["lzf"], paths[large], LARGE_CHUNK_ROWS)
        randoms: dict[str, list[float]] = {name: [] for name in paths}
        scans: dict[str, list[float]] = {name: [] for name in paths}
        for repeat in tqdm(range(config.repeats), desc="bench storage: read"):
            for name, path in paths.items():
                randoms[name].append(_random_reads(path, config, repeat))
                scans[name].append(_sequential_reads(path))
        for name, path in paths.items():
            size = path.stat().st_size
            results[name] = {
                "file_bytes": size, "bytes_per_frame": size / config.frames, "obs_chunk_frames": _chunk_rows(path),
                "write_frames_per_s": statistics.median(writes[name]) if name in writes else None,
                "write_runs": writes.get(name),
                "random_minibatch_frames_per_s": statistics.median(randoms[name]), "random_runs": randoms[name],
                "sequential_frames_per_s": statistics.median(scans[name]), "sequential_runs": scans[name],
            }
    for row in results.values():
        row["size_vs_uncompressed"] = row["file_bytes"] / results["none"]["file_bytes"]
    report = {
        "benchmark": "storage",
        "machine": machine_info(h5py=h5py.__version__, hdf5=h5py.version.hdf5_version,
                                load_average_before=load_before, load_average_after=os.getloadavg()),
        "settings": {"env_id": ENV_ID, "frame": "64x64x3 uint8", "policy": "acting (uniform over the 31-entry menu)",
                     "package_version": causal_wm.__version__,
                     **{k: v for k, v in asdict(config).items() if k != "out"}},
        "results": results,
    }
    out = write_json(config.out, report, indent=2)
    print(f"{'storage':<24} {'MB':>8} {'bytes/frame':>12} {'x smaller':>10} {'write f/s':>10} {'random f/s':>11} "
          f"{'scan f/s':>9}")
    for name, r in results.items():
        write = f"{r['write_frames_per_s']:>10.0f}" if r["write_frames_per_s"] else f"{'-':>10}"
        print(f"{name:<24} {r['file_bytes'] / 1e6:>8.1f} {r['bytes_per_frame']:>12.0f} "
              f"{1 / r['size_vs_uncompressed']:>10.1f} {write} {r['random_minibatch_frames_per_s']:>11.0f} "
              f"{r['sequential_frames_per_s']:>9.0f}")
    print(f"load average before/after: {load_before[0]:.1f} / {report['machine']['load_average_after'][0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
