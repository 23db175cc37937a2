"""Compression of the collection's images: lzf by default, lossless, and files written without it (the
old default) still read, continue and repair as they are."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from causal_wm.cli import main
from causal_wm.data import Dataset, collect, repair
from causal_wm.data.format import EPISODE_FIELDS, ROW_FIELDS

ENV_ID = "causal_wm/Balls-v0"
STEPS = 600


def _collect(path, steps=STEPS, **kwargs):
    return collect(ENV_ID, steps, path, seed=4, chunk_size=128, progress=False, **kwargs)


def _contents(path):
    with h5py.File(path, "r") as f:
        n, e = int(f.attrs["committed_length"]), int(f.attrs["committed_episodes"])
        rows = {name: f[name][:n] for name in ROW_FIELDS if name in f}
        rows.update({name: f[name][:e] for name in EPISODE_FIELDS})
        return rows


def _assert_same_rows(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compression")
    _collect(folder / "default.h5").close()
    _collect(folder / "plain.h5", compression=None).close()
    return folder / "default.h5", folder / "plain.h5"


def test_the_default_compresses_the_images_with_checksums(pair):
    default, _ = pair
    with h5py.File(default, "r") as f:
        assert f["obs"].compression == "lzf" and f["obs"].fletcher32
        for name in f:  # the small datasets stay uncompressed (rewritten in place), all keep checksums
            assert name == "obs" or f[name].compression is None, name
            assert f[name].fletcher32, name


def test_the_default_file_is_at_most_a_fifth_of_the_uncompressed_one(pair, tmp_path):
    default, plain = pair
    assert default.stat().st_size * 5 <= plain.stat().st_size
    # the demo's collection (balanced over the seeing regime and the hard pairs), in small
    sizes = {}
    for compression in ("lzf", None):
        path = tmp_path / f"demo_{compression}.h5"
        collect(ENV_ID, None, path, policy="balanced", per_regime=40, seed=0, progress=False,
                env_kwargs={"num_balls": 3, "graph_seed": 0, "do_values": ()},
                **({} if compression == "lzf" else {"compression": None})).close()
        sizes[compression] = path.stat().st_size
    assert sizes["lzf"] * 5 <= sizes[None]


def test_compression_is_lossless(pair):
    default, plain = pair
    _assert_same_rows(_contents(default), _contents(plain))
    with Dataset(default) as a, Dataset(plain) as b:
        rows = np.random.default_rng(0).choice(len(a), 64, replace=False)
        np.testing.assert_array_equal(a.observations(rows), b.observations(rows))
        batch = next(a.batches(32, seed=1))
        np.testing.assert_array_equal(batch["obs"].numpy(), next(b.batches(32, seed=1))["obs"].numpy())


def test_gzip_on_request(tmp_path, pair):
    path = tmp_path / "gzip.h5"
    _collect(path, compression="gzip").close()
    with h5py.File(path, "r") as f:
        assert f["obs"].compression == "gzip"
    _assert_same_rows(_contents(path), _contents(pair[1]))


def test_an_uncompressed_file_continues_uncompressed(tmp_path, pair):
    path = tmp_path / "old_default.h5"
    _collect(path, steps=STEPS // 2, compression=None).close()
    _collect(path).close()  # resumed with today's default: the file keeps its own layout
    with h5py.File(path, "r") as f:
        assert f["obs"].compression is None
    _assert_same_rows(_contents(path), _contents(pair[1]))


def test_a_compressed_file_repairs_to_the_same_rows(tmp_path, pair):
    default, _ = pair
    report = repair(default, tmp_path / "copy.h5")
    assert report.rows_saved == STEPS
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert f["obs"].compression == "lzf"
    _assert_same_rows(_contents(tmp_path / "copy.h5"), _contents(default))


@pytest.mark.parametrize("flag, expected", [([], "lzf"), (["--compression", "none"], None),
                                            (["--compression", "gzip"], "gzip")])
def test_cli_compression(tmp_path, flag, expected):
    out = tmp_path / "cli.h5"
    assert main(["collect", ENV_ID, "--steps", "60", "--out", str(out), "--no-progress", *flag]) == 0
    with h5py.File(out, "r") as f:
        assert f["obs"].compression == expected
