"""Nothing lost: killed or interrupted collections leave readable files, and resuming them gives the
same bytes as an uninterrupted run. Broken files give clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from collect_envs import TinyImageEnv, regime_of_action

from causal_wm.data import Dataset, DatasetError, collect
from causal_wm.data.format import CHUNK_INDEX

HERE = Path(__file__).resolve().parent
STEPS = 400
CHUNK = 16
SCRIPT = """
import signal
import sys
# a process started in the background of a non-interactive shell inherits an ignored SIGINT; Ctrl-C in a
# terminal reaches Python's default handler, which is what this test simulates
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
import collect_envs
from causal_wm.data import collect
collect(collect_envs.TinyImageEnv(delay=0.02), {steps}, {path!r}, regime_fn=collect_envs.regime_of_action,
        seed=7, chunk_size={chunk}, progress=False)
"""
WORKERS_SCRIPT = """
import signal
import sys
# a process started in the background of a non-interactive shell inherits an ignored SIGINT; Ctrl-C in a
# terminal reaches Python's default handler, which is what this test simulates
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
import collect_envs
from causal_wm.data import collect
collect(collect_envs.TINY_ID, {steps}, {path!r}, regime_fn=collect_envs.regime_of_action, seed=7,
        chunk_size={chunk}, num_envs=2, vectorization="async", env_kwargs={{"delay": 0.015}}, progress=False)
"""
# attributes that describe how a run went rather than what it holds
RUN_ATTRS = {"num_envs", "vectorization"}
# where the chunks lie in the file (the salvage index): depends on the write history, not on the data
LAYOUT = {CHUNK_INDEX}
# The interrupted collectors step slowly (delay per step) so that on a loaded machine they are still
# running when the signal comes: 400 steps take 8 s, the signal follows the first 32 rows.


def _collect_tiny(path, steps=STEPS, **kwargs):
    return collect(TinyImageEnv(), steps, path, regime_fn=regime_of_action, seed=7, chunk_size=CHUNK,
                   progress=False, **kwargs)


def _assert_same_file(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert set(fa) == set(fb)
        for name in set(fa) - LAYOUT:
            np.testing.assert_array_equal(fa[name][:], fb[name][:], err_msg=name)
        keys = (set(fa.attrs) | set(fb.attrs)) - RUN_ATTRS
        for key in keys:
            np.testing.assert_array_equal(fa.attrs[key], fb.attrs[key], err_msg=key)


def _committed(path):
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["committed_length"])
    except (OSError, KeyError):
        return 0


def _start_and_wait(path, min_rows, script=SCRIPT):
    proc = subprocess.Popen([sys.executable, "-c", script.format(here=str(HERE), steps=STEPS, path=str(path),
                                                                 chunk=CHUNK)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _committed(path) < min_rows:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("collector did not commit rows in time")
        time.sleep(0.02)
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "reference.h5"
    _collect_tiny(path)
    return path


def test_sigkill_mid_run_then_resume(tmp_path, reference):
    path = tmp_path / "killed.h5"
    proc = _start_and_wait(path, 3 * CHUNK)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ds = Dataset(path)
    assert 3 * CHUNK <= len(ds) < STEPS and len(ds) % CHUNK == 0  # every flushed chunk, nothing else
    assert not ds.complete
    rows = len(ds)
    prefix = ds.observations(slice(None))
    ds.close()
    with h5py.File(reference, "r") as f:
        np.testing.assert_array_equal(prefix, f["obs"][:rows])
    _collect_tiny(path)
    _assert_same_file(path, reference)


def test_sigkill_of_worker_processes_then_resume_in_one_process(tmp_path):
    from collect_envs import TINY_ID

    path = tmp_path / "killed_workers.h5"
    proc = _start_and_wait(path, 2 * CHUNK, WORKERS_SCRIPT)
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its daemon workers see their pipe close and exit
    proc.wait(timeout=30)
    assert CHUNK <= len(Dataset(path)) < STEPS
    kwargs = {"regime_fn": regime_of_action, "seed": 7, "chunk_size": CHUNK, "env_kwargs": {"delay": 0.015},
              "progress": False}
    collect(TINY_ID, STEPS, path, **kwargs)
    reference = tmp_path / "reference_workers.h5"
    collect(TINY_ID, STEPS, reference, **kwargs)
    _assert_same_file(path, reference)


def test_ctrl_c_keeps_every_row_then_resume(tmp_path, reference):
    path = tmp_path / "interrupted.h5"
    proc = _start_and_wait(path, 2 * CHUNK)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in stderr
    ds = Dataset(path)
    assert 2 * CHUNK <= len(ds) < STEPS
    ds.close()
    _collect_tiny(path)
    _assert_same_file(path, reference)


def test_resume_to_a_larger_size_replays_the_cut_episode(tmp_path, reference):
    path = tmp_path / "grown.h5"
    small = _collect_tiny(path, steps=37)
    assert len(small) == 37
    small.close()
    _collect_tiny(path, steps=150)
    _collect_tiny(path)
    _assert_same_file(path, reference)


def test_resume_of_a_complete_file_does_nothing(tmp_path, reference):
    path = tmp_path / "done.h5"
    _collect_tiny(path, steps=50).close()
    stamp = os.stat(path).st_mtime_ns
    again = _collect_tiny(path, steps=50)
    assert len(again) == 50 and os.stat(path).st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="more than"):
        _collect_tiny(path, steps=20)


def test_resume_with_other_settings_is_refused_unless_overwriting(tmp_path):
    path = tmp_path / "x.h5"
    _collect_tiny(path, steps=30).close()
    with pytest.raises(DatasetError, match="seed"):
        collect(TinyImageEnv(), 60, path, regime_fn=regime_of_action, seed=8, progress=False)
    with pytest.raises(DatasetError, match="policy"):
        collect(TinyImageEnv(), 60, path, regime_fn=regime_of_action, seed=7, policy="seeing", progress=False)
    ds = collect(TinyImageEnv(), 60, path, regime_fn=regime_of_action, seed=8, resume=False, progress=False)
    assert len(ds) == 60 and ds.seed == 8


def test_uncommitted_rows_are_ignored_and_overwritten(tmp_path, reference):
    path = tmp_path / "torn.h5"
    _collect_tiny(path, steps=64).close()
    with h5py.File(path, "r+") as f:  # a crash after writing rows but before committing them
        for name in ("obs", "regime", "z"):
            f[name].resize(90, axis=0)
            f[name][64:] = 1
    assert len(Dataset(path)) == 64
    _collect_tiny(path)
    _assert_same_file(path, reference)


def test_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / "cut.h5"
    _collect_tiny(path, steps=100).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        Dataset(path)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        _collect_tiny(path, steps=200)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all" * 100)
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        Dataset(garbage)


def test_foreign_and_future_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(DatasetError, match="not a causal_wm collection"):
        Dataset(foreign)
    with pytest.raises(DatasetError, match="not a causal_wm collection"):
        _collect_tiny(foreign, steps=10)
    future = tmp_path / "future.h5"
    _collect_tiny(future, steps=10).close()
    with h5py.File(future, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match="schema version 99"):
        Dataset(future)
    missing_rows = tmp_path / "missing.h5"
    _collect_tiny(missing_rows, steps=20).close()
    with h5py.File(missing_rows, "r+") as f:
        f.attrs["committed_length"] = 500
    with pytest.raises(DatasetError, match="truncated file"):
        Dataset(missing_rows)
