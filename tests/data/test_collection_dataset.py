"""Dataset: lazy reads, regime grouping, torch batches, episode splits and exports."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
import torch
from collect_envs import TinyImageEnv, regime_of_action

from causal_wm.data import Dataset, DatasetError, collect


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "tiny.h5"
    return collect(TinyImageEnv(), 300, path, regime_fn=regime_of_action, seed=11, chunk_size=64,
                   progress=False)


def test_by_regime_partitions_the_rows(ds):
    groups = ds.by_regime()
    assert sorted(groups) == ds.regimes == [0, 1, 2]
    merged = np.sort(np.concatenate(list(groups.values())))
    np.testing.assert_array_equal(merged, np.arange(len(ds)))
    for regime, rows in groups.items():
        assert np.all(ds.regime[rows] == regime) and np.all(np.diff(rows) > 0)
    assert ds.regime_counts() == {k: len(v) for k, v in groups.items()}


def test_row_access_forms(ds):
    everything = ds.observations(slice(None))
    assert everything.shape == (300, 8, 8, 3) and everything.dtype == np.uint8
    np.testing.assert_array_equal(ds.observations(5), everything[5])
    np.testing.assert_array_equal(ds.observations(-1), everything[-1])
    picks = [250, 3, 3, 120, 0]  # unsorted, repeated
    np.testing.assert_array_equal(ds.observations(picks), everything[picks])
    np.testing.assert_array_equal(ds.observations(np.arange(0, 300, 37)), everything[::37])
    np.testing.assert_array_equal(ds.latents(picks), ds.latents(slice(None))[picks])
    assert ds.observations([]).shape == (0, 8, 8, 3)
    with pytest.raises(IndexError):
        ds.observations([300])
    with pytest.raises(ValueError, match="boolean"):
        ds.observations(np.ones(300, dtype=bool))
    with pytest.raises(DatasetError, match="target_mask"):
        ds.targets([0])


def test_batches_are_torch_ready(ds):
    seen = []
    for batch in ds.batches(64, shuffle=True, seed=3):
        obs, index = batch["obs"], batch["index"].numpy()
        assert obs.dtype == torch.float32 and obs.shape[1:] == (3, 8, 8)
        assert 0.0 <= float(obs.min()) and float(obs.max()) <= 1.0
        expected = ds.observations(index).transpose(0, 3, 1, 2) / 255.0
        np.testing.assert_allclose(obs.numpy(), expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(batch["regime"].numpy(), ds.regime[index])
        seen.append(index)
    order = np.concatenate(seen)
    assert sorted(order) == list(range(300)) and not np.all(np.diff(order) > 0)
    again = np.concatenate([b["index"].numpy() for b in ds.batches(64, shuffle=True, seed=3)])
    np.testing.assert_array_equal(order, again)
    sizes = [len(b["index"]) for b in ds.batches(64, indices=np.arange(100), shuffle=False, drop_last=True)]
    assert sizes == [64]
    batch = next(ds.batches(8, latents=True, device="auto"))
    assert batch["z"].shape == (8, 2) and batch["z"].dtype == torch.float32
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))


def test_torch_dataset_view_with_workers(ds):
    view = ds.torch_dataset(np.arange(40), latents=True)
    assert isinstance(view, torch.utils.data.Dataset) and len(view) == 40
    item = view[3]
    assert item["obs"].shape == (3, 8, 8) and int(item["index"]) == 3
    loader = torch.utils.data.DataLoader(view, batch_size=10, num_workers=2)
    rows = torch.cat([b["index"] for b in loader]).numpy()
    np.testing.assert_array_equal(rows, np.arange(40))
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.observations([7]), ds.observations([7]))


def test_split_by_episode(ds):
    train, val = ds.split(0.25, seed=1)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(ds)))
    assert len(np.intersect1d(ds.episode[train], ds.episode[val])) == 0
    assert round(0.25 * ds.num_episodes) == len(np.unique(ds.episode[val]))
    again_train, _ = ds.split(0.25, seed=1)
    np.testing.assert_array_equal(train, again_train)
    with pytest.raises(ValueError, match="val_fraction"):
        ds.split(1.0)


def test_to_npz_round_trip(ds, tmp_path):
    path = ds.to_npz(tmp_path / "tiny.npz", indices=np.arange(10, 200))
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["images"], ds.observations(np.arange(10, 200)))
        np.testing.assert_array_equal(npz["latents"], ds.latents(np.arange(10, 200)))
        np.testing.assert_array_equal(npz["regimes"], ds.regime[10:200])
        np.testing.assert_array_equal(npz["actions"], ds.actions(np.arange(10, 200)))
        assert "targets" not in npz  # the tiny env has no menu: targets unknown


def test_balls_npz_has_targets_graph_and_menu(tmp_path):
    balls = collect("causal_wm/Balls-v0", 60, tmp_path / "balls.h5", progress=False)
    with np.load(balls.to_npz(tmp_path / "balls.npz", compressed=True)) as npz:
        assert npz["images"].shape == (60, 64, 64, 3)
        np.testing.assert_array_equal(npz["targets"], balls.targets(slice(None)).astype(np.uint8))
        np.testing.assert_array_equal(npz["graph"], balls.graph)
        assert "hard" in str(npz["menu_json"])


@pytest.mark.skipif(importlib.util.find_spec("minari") is None, reason="minari (optional extra) not installed")
def test_to_minari(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    exported = ds.to_minari("collecttests/tiny-v0")
    assert exported.total_steps == len(ds)
    # lossless: every step's image comes back bit for bit, after the episode's reset observation
    first = next(iter(exported.iterate_episodes()))
    rows = np.flatnonzero(ds.episode == ds.episode[0])
    np.testing.assert_array_equal(first.observations[1:], ds.observations(rows))
    np.testing.assert_array_equal(first.actions, ds.actions(rows))


def test_to_minari_without_minari_says_so(ds):
    if importlib.util.find_spec("minari") is not None:
        pytest.skip("minari is installed")
    with pytest.raises(ImportError, match="minari"):
        ds.to_minari("collecttests/tiny-v0")


def test_reopen_by_path(ds):
    with Dataset(ds.path) as again:
        assert len(again) == len(ds) and again.num_episodes == ds.num_episodes
        assert "rows=300" in repr(again)
