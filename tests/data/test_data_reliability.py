"""Damaged collections: checksums turn a corrupted chunk into a clear error, a truncated file can be
repaired (and then continued to the same bytes), and --no-resume never replaces other data."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from collect_envs import TINY_ID, TinyImageEnv, regime_of_action

from causal_wm.cli import main
from causal_wm.data import Dataset, DatasetError, collect, repair
from causal_wm.data.format import CHUNK_INDEX, EPISODE_FIELDS, ROW_FIELDS

STEPS = 400
CHUNK = 32


def _collect(path, steps=STEPS, **kwargs):
    return collect(TinyImageEnv(), steps, path, regime_fn=regime_of_action, seed=5, chunk_size=CHUNK,
                   progress=False, **kwargs)


def _contents(path):
    with h5py.File(path, "r") as f:
        n, e = int(f.attrs["committed_length"]), int(f.attrs["committed_episodes"])
        rows = {name: f[name][:n] for name in ROW_FIELDS if name in f}
        rows.update({name: f[name][:e] for name in EPISODE_FIELDS})
        return rows, {k: v for k, v in f.attrs.items() if k not in ("num_envs", "vectorization")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("reliability") / "reference.h5"
    _collect(path).close()
    return path


def _intact_prefix(path, cut):
    """Rows from row 0 whose storage chunks (every dataset, and their episodes' reset frames) end before
    byte ``cut``: what a repair must at least save."""
    with h5py.File(path, "r") as f:
        n = int(f.attrs["committed_length"])
        prefix = n
        for name in [*ROW_FIELDS, "reset_obs"]:
            if name not in f:
                continue
            ds = f[name]
            rows = ds.chunks[0]
            limit = ds.shape[0] if name == "reset_obs" else n
            for c in range(-(-limit // rows)):
                info = ds.id.get_chunk_info_by_coord((c * rows, *(0,) * (ds.ndim - 1)))
                if info.byte_offset + info.size > cut:
                    if name == "reset_obs":  # episodes from c * rows on lose their reset frame
                        starts = f["episode_start"][:]
                        prefix = min(prefix, int(starts[c * rows]) if c * rows < len(starts) else n)
                    else:
                        prefix = min(prefix, c * rows)
                    break
        return prefix


# --- 1. checksums -------------------------------------------------------------------------------
def test_every_dataset_has_checksums(reference):
    with h5py.File(reference, "r") as f:
        for name in f:
            assert f[name].fletcher32, name
            assert f[name].chunks is not None, name


def test_overwritten_block_is_a_clear_error_and_other_rows_still_read(tmp_path, reference):
    path = tmp_path / "corrupt.h5"
    shutil.copy(reference, path)
    with h5py.File(path, "r") as f:
        ds = f["obs"]
        rows = ds.chunks[0]
        assert ds.shape[0] >= 6 * rows
        info = ds.id.get_chunk_info_by_coord((3 * rows, 0, 0, 0))  # a chunk in the middle of the images
        offset = info.byte_offset + info.size // 2 - 2048
        assert info.byte_offset <= offset and offset + 4096 <= info.byte_offset + info.size
        before = ds[:]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    ds = Dataset(path)  # opening needs only the small columns
    bad = f"{3 * rows}..{4 * rows - 1}"
    with pytest.raises(DatasetError, match="damaged") as caught:
        ds.observations(slice(3 * rows + 1, 3 * rows + 5))
    message = str(caught.value)
    assert str(path) in message and "'obs'" in message and f"rows {bad}" in message
    assert "causal-wm repair" in message
    with pytest.raises(DatasetError, match=f"rows {bad}"):
        ds.observations([0, 3 * rows + 7, len(ds) - 1])  # scattered reads too
    with pytest.raises(DatasetError, match=f"rows {bad}"):
        next(iter(ds.batches(len(ds), shuffle=False)))
    np.testing.assert_array_equal(ds.observations(slice(0, 3 * rows)), before[: 3 * rows])
    np.testing.assert_array_equal(ds.observations(slice(4 * rows, None)), before[4 * rows:])
    np.testing.assert_array_equal(ds.observations([5, 4 * rows + 2]), before[[5, 4 * rows + 2]])
    ds.close()

    fixed = tmp_path / "fixed.h5"
    report = repair(path, fixed)
    assert report.rows_committed == STEPS and 0 < report.rows_saved <= 3 * rows
    assert report.rows_lost == STEPS - report.rows_saved
    repaired = Dataset(fixed)
    np.testing.assert_array_equal(repaired.observations(slice(None)), before[: len(repaired)])


def test_files_without_checksums_still_load_and_continue(tmp_path, reference):
    """A file of an older version: no checksum filter and no chunk index."""
    old = tmp_path / "old.h5"
    with h5py.File(reference, "r") as src, h5py.File(old, "w") as dst:
        n = int(src.attrs["committed_length"]) // 2
        e = int(np.searchsorted(src["episode_start"][:], n))
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["committed_length"], dst.attrs["committed_episodes"] = n, e
        for name in src:
            if name == CHUNK_INDEX:
                continue
            ds = src[name]
            keep = e if name in EPISODE_FIELDS else n
            dst.create_dataset(name, data=ds[:keep], maxshape=(None, *ds.shape[1:]), chunks=ds.chunks)
            assert not dst[name].fletcher32
    ds = Dataset(old)
    assert len(ds) == STEPS // 2
    with h5py.File(reference, "r") as f:
        np.testing.assert_array_equal(ds.observations(slice(None)), f["obs"][: STEPS // 2])
    ds.close()
    _collect(old).close()  # continues in the old layout
    a, b = _contents(old), _contents(reference)
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
    report = repair(old, tmp_path / "old_fixed.h5")
    assert report.rows_saved == STEPS


# --- 2. truncation and repair -------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.9, 0.75, 0.6])
def test_truncated_file_gives_clear_error_and_repair_salvages_the_intact_rows(tmp_path, reference, fraction):
    path = tmp_path / "cut.h5"
    shutil.copy(reference, path)
    cut = int(os.path.getsize(path) * fraction)
    os.truncate(path, cut)
    for attempt in (lambda: Dataset(path), lambda: _collect(path)):
        with pytest.raises(DatasetError) as caught:
            attempt()
        message = str(caught.value)
        assert str(path) in message and "truncated" in message
        assert "resume=False" in message and "--no-resume" in message
        assert f"causal-wm repair {path} --out" in message

    fixed = tmp_path / "fixed.h5"
    report = repair(path, fixed)
    expected = _intact_prefix(reference, cut)
    assert expected > 0
    assert expected <= report.rows_saved < STEPS
    assert report.rows_lost == STEPS - report.rows_saved and f"saved {report.rows_saved}" in str(report)

    ds = Dataset(fixed)
    (ref_rows, ref_attrs) = _contents(reference)
    assert len(ds) == report.rows_saved and ds.num_episodes == report.episodes_saved
    assert ds.menu == Dataset(reference).menu and ds.seed == 5 and ds.env_id == ref_attrs["env_id"]
    np.testing.assert_array_equal(ds.observations(slice(None)), ref_rows["obs"][: len(ds)])
    np.testing.assert_array_equal(ds.regime, ref_rows["regime"][: len(ds)])
    np.testing.assert_array_equal(ds.latents(slice(None)), ref_rows["z"][: len(ds)])
    assert sorted(ds.by_regime()) == ds.regimes
    assert sum(len(v) for v in ds.by_regime().values()) == len(ds)
    np.testing.assert_array_equal(np.unique(ds.episode), np.arange(ds.num_episodes))
    np.testing.assert_array_equal(ds.reset_observations(np.arange(ds.num_episodes)),
                                  ref_rows["reset_obs"][: ds.num_episodes])
    ds.close()

    # the repaired file continues to exactly the data of an uninterrupted run
    _collect(fixed).close()
    rows, attrs = _contents(fixed)
    for name in ref_rows:
        np.testing.assert_array_equal(rows[name], ref_rows[name], err_msg=name)
    assert attrs["repaired_from"] == str(path)


def test_repair_uses_the_chunk_index_where_hdf5s_own_is_cut_off(tmp_path):
    """With more chunks than one B-tree node holds, HDF5's chunk index spreads over the file and a cut
    loses parts of it; the collection's chunk_index still locates every intact chunk."""
    from causal_wm.data.repair import _PaddedFile, stored_eof

    reference = tmp_path / "many_chunks.h5"
    kwargs = {"regime_fn": regime_of_action, "seed": 5, "chunk_size": 16, "progress": False}
    collect(TinyImageEnv(), 2000, reference, **kwargs).close()
    path = tmp_path / "cut.h5"
    shutil.copy(reference, path)
    cut = int(os.path.getsize(path) * 0.6)
    os.truncate(path, cut)
    raw = _PaddedFile(path, stored_eof(path))
    with h5py.File(raw, "r") as f, pytest.raises((OSError, RuntimeError), match="B-tree"):
        f["obs"].id.get_num_chunks()
    raw.close()
    report = repair(path, tmp_path / "fixed.h5")
    assert report.rows_saved >= _intact_prefix(reference, cut) > 1000
    collect(TinyImageEnv(), 2000, tmp_path / "fixed.h5", **kwargs).close()
    a, b = _contents(tmp_path / "fixed.h5")[0], _contents(reference)[0]
    for name in b:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_repair_of_a_file_cut_to_its_header(tmp_path, reference):
    path = tmp_path / "stub.h5"
    shutil.copy(reference, path)
    os.truncate(path, 600)
    try:
        report = repair(path, tmp_path / "stub_fixed.h5")
    except DatasetError as err:
        assert "nothing can be salvaged" in str(err) and "resume=False" in str(err)
    else:
        assert report.rows_saved == 0 and len(Dataset(tmp_path / "stub_fixed.h5")) == 0


def test_repair_refuses_missing_sources_existing_outputs_and_foreign_files(tmp_path, reference):
    with pytest.raises(FileNotFoundError):
        repair(tmp_path / "nothing.h5", tmp_path / "out.h5")
    with pytest.raises(DatasetError, match="already exists"):
        repair(reference, reference)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(DatasetError, match="not a causal_wm collection"):
        repair(foreign, tmp_path / "out.h5")


def test_repair_command(tmp_path, reference, capsys):
    path = tmp_path / "cut.h5"
    shutil.copy(reference, path)
    os.truncate(path, int(os.path.getsize(path) * 0.7))
    fixed = tmp_path / "fixed.h5"
    assert main(["repair", str(path), "--out", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "saved" in out and "lost" in out and len(Dataset(fixed)) > 0
    assert main(["repair", str(path), "--out", str(fixed)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["repair", str(tmp_path / "none.h5"), "--out", str(tmp_path / "x.h5")]) == 2


# --- 3. --no-resume never replaces other data ---------------------------------------------------
def test_no_resume_refuses_to_replace_other_files(tmp_path):
    notes = tmp_path / "notes.h5"
    notes.write_text("my precious notes\n")
    with pytest.raises(ValueError, match="not a causal_wm collection") as caught:
        _collect(notes, steps=20, resume=False)
    assert str(notes) in str(caught.value) and "overwrite=True" in str(caught.value)
    assert notes.read_text() == "my precious notes\n"
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a causal_wm collection"):
        _collect(foreign, steps=20, resume=False)
    with h5py.File(foreign, "r") as f:
        assert "x" in f
    assert len(_collect(notes, steps=20, resume=False, overwrite=True)) == 20

    # an existing collection, or a truncated one (what the error of a broken file advises), is replaced
    coll = tmp_path / "coll.h5"
    _collect(coll, steps=20).close()
    assert len(_collect(coll, steps=30, resume=False)) == 30
    os.truncate(coll, os.path.getsize(coll) // 2)
    assert len(_collect(coll, steps=25, resume=False)) == 25


def _cli_collect(out, *extra):
    return main(["collect", TINY_ID, "--steps", "40", "--out", str(out), "--env-kwargs", '{"label": true}',
                 "--chunk-size", "16", "--no-progress", *extra])


def test_cli_no_resume_needs_overwrite_for_other_files(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    assert _cli_collect(notes, "--no-resume") == 2
    err = capsys.readouterr().err
    assert str(notes) in err and "--overwrite" in err and "overwrite=True" not in err
    assert len(err.strip().splitlines()) == 1 and notes.read_text() == "keep me\n"
    assert _cli_collect(notes, "--overwrite") == 2  # --overwrite alone does not start over
    assert "--no-resume" in capsys.readouterr().err
    assert _cli_collect(notes, "--no-resume", "--overwrite") == 0
    assert len(Dataset(notes)) == 40
    assert _cli_collect(notes, "--no-resume") == 0  # now a collection: replaced as before


# --- 4. the CLI names its flags -----------------------------------------------------------------
def test_cli_messages_name_the_flags(tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert _cli_collect(out) == 0
    capsys.readouterr()
    assert _cli_collect(out, "--seed", "9") == 2  # other settings: cannot resume
    err = capsys.readouterr().err
    assert "seed" in err and "--no-resume" in err and "resume=False" not in err
    os.truncate(out, os.path.getsize(out) // 2)
    assert _cli_collect(out) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "--no-resume" in err and "resume=False" not in err
    assert f"causal-wm repair {out} --out" in err
    assert _cli_collect(out, "--no-resume") == 0
