"""export_citris: the folder that the CITRIS and BISCUIT data loaders read.

``ContractLoader`` below reads an export the way their loaders do, written from the contract alone
(one ``{split}.npz`` per split, loaded with ``np.load`` without pickles; a sequence file is one
continuous sequence whose window ``(t, t + 1)`` comes with ``targets[t]`` and, for BISCUIT, with
``actions[t + 1]``; ``*_indep`` files of single frames; ``*_triplets`` files of three frames and a
mask; ``settings.json`` with ``causal_graph`` and ``graph_idx``), and checks shapes and dtypes on the
way. The tests then check what the windows, triplets and samples mean against the collection.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from causal_wm.cli import main
from causal_wm.data import Dataset, collect
from causal_wm.data.citris_export import LATENT_LIMIT, split_ranges, triplet_sources
from causal_wm.envs import make

CITRIS_SPLITS = ("train", "val_indep", "val_triplets", "test_indep", "test_triplets")
BISCUIT_SPLITS = ("train", "val", "val_indep", "test", "test_indep")
SCENE = {"num_balls": 2, "image_size": 16, "ball_radius": 2.0, "do_values": (), "persistence": 0.5}
INDEP, TRIPLETS = 40, 30


class ContractLoader:
    """A CITRIS/BISCUIT-style dataset over ``folder/{split}.npz``, written from their contract."""

    def __init__(self, folder: Path, split: str) -> None:
        self.settings = json.loads((folder / "settings.json").read_text())
        graph = np.asarray(self.settings["causal_graph"], dtype=np.float32)
        assert isinstance(self.settings["graph_idx"], int)
        with np.load(folder / f"{split}.npz") as arrays:  # allow_pickle=False: plain arrays only
            self.arrays = {key: arrays[key] for key in arrays.files}
        images, latents, targets = self.arrays["images"], self.arrays["latents"], self.arrays["targets"]
        self.keys = self.arrays["keys"].tolist()
        k = len(self.keys)
        assert self.keys == [f"c{i}" for i in range(k)] and graph.shape == (k, k)
        assert images.dtype == np.uint8 and latents.dtype == np.float32 and targets.dtype == np.float32
        self.kind = split.split("_")[-1] if "_" in split else "sequence"
        if self.kind == "triplets":
            m = len(images)
            assert images.ndim == 5 and images.shape[1] == 3 and images.shape[-1] in (1, 3)
            assert latents.shape == (m, 3, k) and targets.shape == (m, k)
        elif self.kind == "indep":
            m = len(images)
            assert images.ndim == 4 and latents.shape == (m, k) and targets.shape == (m, k)
        else:
            n = len(images)
            assert images.ndim == 4 and latents.shape == (n, k) and targets.shape == (n - 1, k)
            actions = self.arrays["actions"]
            assert actions.dtype.kind == "f" and actions.ndim == 2 and len(actions) == n
        self.images, self.latents, self.targets = images, latents, targets

    def __len__(self) -> int:
        return len(self.images) - 1 if self.kind == "sequence" else len(self.images)

    def window(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(frames (2, H, W, C), targets (K,), BISCUIT's action (A,), latents (2, K))`` of window ``t``."""
        return (self.images[t: t + 2], self.targets[t], self.arrays["actions"][t + 1], self.latents[t: t + 2])


@pytest.fixture(scope="module")
def balls(tmp_path_factory):
    path = tmp_path_factory.mktemp("citris") / "balls.h5"
    ds = collect("causal_wm/Balls-v0", 600, path, env_kwargs=SCENE, seed=3, chunk_size=128, progress=False)
    yield ds
    ds.close()


@pytest.fixture(scope="module")
def export(balls, tmp_path_factory):
    folder = tmp_path_factory.mktemp("citris_out") / "balls_citris"
    result = balls.export_citris(folder, indep_size=INDEP, triplet_size=TRIPLETS, seed=1)
    return folder, result


@pytest.fixture(scope="module")
def renderer(balls):
    env = make(balls.env_id, **balls.env_kwargs)
    yield env.unwrapped.renderer
    env.close()


def test_every_split_both_families_read_loads_by_the_contract(export, balls):
    folder, result = export
    assert not result.skipped
    for split in sorted(set(CITRIS_SPLITS) | set(BISCUIT_SPLITS)):
        data = ContractLoader(folder, split)
        expected = {"indep": INDEP, "triplets": TRIPLETS}.get(data.kind)
        assert expected is None or len(data) == expected
        np.testing.assert_array_equal(data.settings["causal_graph"], balls.graph)
        assert data.arrays["node_names"].tolist() == balls.scm_params["names"]
    splits = result.settings["splits"]
    # 12 episodes of 50 steps: one episode each for val and test (round(0.1 * 12)), whole episodes everywhere
    assert [tuple(splits[s]["rows"]) for s in ("train", "val", "test")] == [(0, 500), (500, 550), (550, 600)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{s}.npz" for s in set(CITRIS_SPLITS) | set(BISCUIT_SPLITS)] + ["settings.json"])
    assert not folder.with_name(folder.name + ".partial").exists()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_windows_pair_frames_with_the_step_between_them(export, balls, split):
    folder, result = export
    data = ContractLoader(folder, split)
    lo, hi = result.settings["splits"][split]["rows"]
    menu = balls.menu
    scale = result.latent_scale
    assert len(data) == hi - lo - 1
    for t in range(len(data)):
        frames, targets, action, latents = data.window(t)
        # the frames and latents are the collection's rows, in order
        np.testing.assert_array_equal(frames, balls.observations([lo + t, lo + t + 1]))
        np.testing.assert_allclose(latents, balls.latents([lo + t, lo + t + 1]) * scale, rtol=1e-6, atol=1e-6)
        # targets[t] and BISCUIT's actions[t + 1] describe the same step: the one into frame t + 1
        step = menu[int(np.argmax(action))]
        assert action.sum() == 1.0 and int(np.argmax(action)) == balls.actions(lo + t + 1)
        intervened = set() if step is None else set(step.targets)
        assert set(np.flatnonzero(targets)) == intervened
        np.testing.assert_array_equal(targets, balls.targets(lo + t + 1))
    assert int(np.argmax(data.arrays["actions"][0])) == balls.actions(lo)  # actions[t] produced frame t


def test_triplets_third_frame_is_rendered_from_mixed_latents(export, balls, renderer):
    folder, result = export
    scale = result.latent_scale
    for split in ("val", "test"):
        data = ContractLoader(folder, f"{split}_triplets")
        lo, hi = result.settings["splits"][split]["rows"]
        intervened = balls.targets(slice(lo, hi)).any(axis=0)
        sources = data.arrays["source_frames"]
        assert np.all(sources[:, 0] != sources[:, 1]) and sources.min() >= 0 and sources.max() < hi - lo
        masks = data.targets.astype(bool)
        assert np.all(masks.any(axis=1) & ~masks.all(axis=1))  # every triplet mixes both frames
        assert not masks[:, ~intervened].any()  # only variables intervened on in the split are swapped
        np.testing.assert_array_equal(data.images[:, 0], balls.observations(lo + sources[:, 0]))
        np.testing.assert_array_equal(data.images[:, 1], balls.observations(lo + sources[:, 1]))
        np.testing.assert_array_equal(data.latents[:, 2], np.where(masks, data.latents[:, 1], data.latents[:, 0]))
        z = balls.latents(slice(lo, hi))
        mixed = np.where(masks, z[sources[:, 1]], z[sources[:, 0]])
        np.testing.assert_allclose(data.latents[:, 2], mixed * scale, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(data.images[:, 2], renderer(mixed))  # rendered exactly
        # and not a copy of either source frame
        assert all(not np.array_equal(data.images[m, 2], data.images[m, i]) for m in range(len(data)) for i in (0, 1))


def test_independent_samples_draw_every_variable_on_its_own(export, balls, renderer):
    folder, result = export
    for split in ("val", "test"):
        data = ContractLoader(folder, f"{split}_indep")
        lo, hi = result.settings["splits"][split]["rows"]
        assert np.all(data.targets == 1.0)
        sources = data.arrays["source_frames"]
        z = balls.latents(slice(lo, hi))
        independent = z[sources, np.arange(z.shape[1])]
        np.testing.assert_allclose(data.latents, independent * result.latent_scale, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(data.images, renderer(independent))
        assert np.mean(sources != sources[:, :1]) > 0.5  # variables of one sample come from different frames


def test_latents_are_scaled_into_their_range(export, balls):
    folder, result = export
    largest = np.abs(balls.latents(slice(None))).max()
    assert largest > LATENT_LIMIT  # the scene's latents do leave the range: the scale matters here
    assert result.latent_scale == pytest.approx(LATENT_LIMIT / largest)
    assert result.settings["latent_scale"] == result.latent_scale
    for split in ("train", "val", "test", "val_indep", "test_triplets"):
        assert np.abs(ContractLoader(folder, split).latents).max() <= LATENT_LIMIT * (1 + 1e-6)


def test_episode_boundaries_are_marked(export, balls):
    folder, result = export
    settings = result.settings
    assert settings["persistence"] == 0.5 and "sequence_starts" in settings["episode_boundaries"]
    for split in ("train", "val", "test"):
        data = ContractLoader(folder, split)
        lo, hi = settings["splits"][split]["rows"]
        episode = balls.episode[lo:hi]
        np.testing.assert_array_equal(data.arrays["episode"], episode)
        starts = data.arrays["sequence_starts"]
        np.testing.assert_array_equal(starts, np.flatnonzero(np.r_[True, np.diff(episode) != 0]))
        assert len(starts) - 1 == settings["splits"][split]["episode_boundaries"]
        assert lo == 0 or balls.episode[lo - 1] != balls.episode[lo]  # splits hold whole episodes
        # a loader that knows the boundaries keeps only windows inside one episode
        inside = [t for t in range(len(data)) if t + 1 not in set(starts.tolist())]
        assert all(data.arrays["episode"][t] == data.arrays["episode"][t + 1] for t in inside)
        np.testing.assert_array_equal(data.arrays["regimes"], balls.regime[lo:hi])


def test_split_ranges_by_episodes_or_by_rows():
    episode = np.repeat(np.arange(10), 5)
    assert split_ranges(episode, 0.1, 0.2) == {"train": (0, 35), "val": (35, 40), "test": (40, 50)}
    one_episode = np.zeros(100, dtype=np.int64)  # long episodes: cut by rows
    assert split_ranges(one_episode, 0.1, 0.1) == {"train": (0, 80), "val": (80, 90), "test": (90, 100)}
    with pytest.raises(ValueError, match="collect more"):
        split_ranges(np.zeros(4, dtype=np.int64), 0.1, 0.1)


def test_triplet_sources_need_two_variables():
    rng = np.random.default_rng(0)
    sources, masks = triplet_sources(np.ones((5, 3), dtype=bool), 50, rng)
    assert sources.shape == (50, 2) and masks.shape == (50, 3) and np.all(sources[:, 0] != sources[:, 1])
    with pytest.raises(ValueError, match="2 latent variables"):
        triplet_sources(np.ones((5, 1), dtype=bool), 5, rng)


def test_an_env_that_cannot_be_rebuilt_skips_the_rendered_files(balls, tmp_path):
    copy = tmp_path / "unknown_env.h5"
    copy.write_bytes(balls.path.read_bytes())
    with h5py.File(copy, "r+") as f:
        f.attrs["env_id"] = "somebody/Unregistered-v0"
    ds = Dataset(copy)
    with pytest.warns(UserWarning, match="cannot be rebuilt"):
        result = ds.export_citris(tmp_path / "out")
    assert set(result.files) == {"train", "val", "test"}
    assert set(result.skipped) == {"val_indep", "val_triplets", "test_indep", "test_triplets"}
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["skipped"] == result.skipped
    ContractLoader(tmp_path / "out", "train")
    with pytest.raises(ValueError, match="render=True"):
        ds.export_citris(tmp_path / "strict", render=True)
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.partial").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(ds.export_citris(tmp_path / "plain", render=False).files) == {"train", "val", "test"}
    ds.close()


def test_a_renderer_that_does_not_reproduce_the_frames_is_not_used(balls, tmp_path):
    copy = tmp_path / "other_look.h5"
    copy.write_bytes(balls.path.read_bytes())
    with h5py.File(copy, "r+") as f:
        f.attrs["env_kwargs"] = json.dumps({**balls.env_kwargs, "ball_radius": 3.0})
    with Dataset(copy) as ds, pytest.warns(UserWarning, match="does not reproduce the stored frames"):
        result = ds.export_citris(tmp_path / "out")
    assert set(result.files) == {"train", "val", "test"}


def test_bad_input_is_refused_with_a_clear_message(balls, tmp_path, tiny_collection):
    for kwargs, message in [({"val_fraction": 0.0}, "val_fraction"), ({"test_fraction": 1.5}, "test_fraction"),
                            ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
                            ({"indep_size": 0}, "indep_size"), ({"latent_limit": -1.0}, "latent_limit"),
                            ({"render": "yes"}, "render"), ({"seed": -2}, "seed")]:
        with pytest.raises(ValueError, match=message):
            balls.export_citris(tmp_path / "bad", **kwargs)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        balls.export_citris(tmp_path / "taken", render=False)
    with pytest.raises(ValueError, match="not a folder written by export_citris"):
        balls.export_citris(tmp_path / "taken", render=False, overwrite=True)  # never someone else's folder
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    balls.export_citris(tmp_path / "earlier", render=False)
    (tmp_path / "earlier" / "stale.txt").write_text("from before")
    balls.export_citris(tmp_path / "earlier", render=False, overwrite=True)  # an earlier export is replaced
    assert not (tmp_path / "earlier" / "stale.txt").exists() and (tmp_path / "earlier" / "train.npz").exists()
    assert not (tmp_path / "earlier.old").exists() and not (tmp_path / "earlier.partial").exists()
    with pytest.raises(ValueError, match="intervention targets"):
        tiny_collection.export_citris(tmp_path / "tiny")


@pytest.fixture
def tiny_collection(tmp_path):
    from collect_envs import TinyImageEnv, regime_of_action

    ds = collect(TinyImageEnv(), 40, tmp_path / "tiny.h5", regime_fn=regime_of_action, progress=False)
    yield ds
    ds.close()


def test_cli_export(balls, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert main(["export", str(balls.path), "--format", "citris", "--out", str(out), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "train.npz" in printed and "val_triplets.npz" in printed
    ContractLoader(out, "val_triplets")
    assert main(["export", str(balls.path), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(balls.path), "--out", str(out), "--overwrite", "--no-render"]) == 0
    assert "skipped val_indep.npz: not asked for (--no-render)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x")]) == 2
    assert "no collection file" in capsys.readouterr().err
    assert main(["export", str(balls.path), "--out", str(tmp_path / "y"), "--val-fraction", "0.7",
                 "--test-fraction", "0.4"]) == 2
    assert "--val-fraction + --test-fraction must be below 1" in capsys.readouterr().err
