"""Export of a collection to the dataset folder that the CITRIS and BISCUIT data loaders read.

Their loaders (the Voronoi-style ``{split}.npz`` datasets of P. Lippe et al.'s CITRIS, iCITRIS and
BISCUIT code) read one ``.npz`` per split from a folder, plus ``settings.json``. ``export_citris``
writes every split either family reads (CITRIS: ``train``, ``val_indep``, ``val_triplets``,
``test_indep``, ``test_triplets``; BISCUIT: ``train``, ``val``, ``val_indep``, ``test``, ``test_indep``):

==========================  =========================================================================
file                        arrays
==========================  =========================================================================
``train.npz``, ``val.npz``, one continuous sequence of ``N`` frames each: ``images`` uint8
``test.npz``                ``(N, H, W, C)``; ``latents`` float32 ``(N, K)``; ``targets`` float32
                            ``(N - 1, K)``, row ``t`` = the variables intervened on in the step that
                            produced frame ``t + 1``; ``actions`` float32 ``(N, A)``, row ``t`` = the
                            action whose step produced frame ``t``; ``keys`` str ``(K,)`` =
                            ``c0 .. c{K-1}``
``val_indep.npz``,          ``M`` independent samples: every variable drawn on its own from its
``test_indep.npz``          marginal in that split, the frame rendered from them: ``images``
                            ``(M, H, W, C)``, ``latents`` ``(M, K)``, ``targets`` all ones ``(M, K)``
``val_triplets.npz``,       ``images`` ``(M, 3, H, W, C)``, ``latents`` ``(M, 3, K)``, ``targets``
``test_triplets.npz``       float32 ``(M, K)``: frames 1 and 2 are two distinct frames of the split;
                            frame 3 is rendered from latents that take variable ``k`` from frame 2
                            where ``targets[m, k] = 1`` and from frame 1 elsewhere
``settings.json``           ``causal_graph`` ``(K, K)`` (``A[i, j] = 1`` iff ``i -> j``: row parent,
                            column child, their convention and ours), ``graph_idx`` (-1: a graph of
                            its own, not one of their hand-made ones) and what is described below
==========================  =========================================================================

Every ``.npz`` also holds ``node_names`` (``(K,)`` str, this project's names of the variables; their
loaders ignore keys they do not know). The sequence files add ``regimes`` (``(N,)`` int64, the regime
of the step that produced each frame), ``episode`` (``(N,)`` int64) and ``sequence_starts``
(``(S,)`` int64, the first frame of every episode in the file); the independent and triplet files add
``source_frames`` (the frames of the split each sample was drawn from).

Alignment. A collection row ``i`` is the frame returned by a step together with that step's action and
intervention targets; their ``targets[t]`` is the intervention of the step *into* frame ``t + 1``, so it
is our ``target_mask`` of row ``t + 1``, while ``actions[t]`` is our action of row ``t`` (BISCUIT pairs
frames ``t, t + 1`` with ``actions[t + 1]``). A discrete action ``a`` becomes the float one-hot row
``e_a`` of length ``A`` (the menu's size; column 0 is action 0, "no intervention"), which BISCUIT
standardises as it does its own ``[0, 1]`` actions; vector actions are written as they are (float32).

Splits and episode boundaries. Each split is a run of whole episodes in file order (train first, then
val, then test); a collection of fewer than three episodes is cut by rows instead. Their loaders take a
file as one sequence, so the pair of the last frame of one episode and the first of the next also counts
as a transition: the environment was reset in between. In the built-in scenes with ``persistence = 0``
(their default) every frame is a fresh sample of its regime, so such a pair is distributed exactly like
a step of that regime and nothing is wrong. With ``persistence > 0`` the reset breaks the noise's
temporal chain: a loader that knows it skips the windows that cross ``sequence_starts``; or collect long
episodes (``env_kwargs={"max_episode_steps": ...}``) so that boundaries are rare. ``settings.json``
records the persistence and the number of boundaries.

Scale. Their heads model continuous variables within about ``+-2.8`` (``continuous_2.8``); latents
are multiplied by ``latent_scale = min(1, latent_limit / max |z|)`` (one number for every variable and
file, so the SCM's relative scales are kept), recorded in ``settings.json``. The images are rendered
from the unscaled latents.

Rendering. The independent samples and the third triplet frames are rendered exactly by the scene's
batch renderer (``env.unwrapped.renderer(z)``, rebuilt from the collection's ``env_id`` and
``env_kwargs``), after checking that it reproduces the stored frames. For a collection whose env cannot
be rebuilt (or has no renderer) these files are skipped with a warning that says why.

Limits: their Voronoi loaders list the variables ``c0 .. c8`` in ``VAR_INFO``, so collections with more
than 9 latents need that table extended on their side; their loaders drop (from the targets only)
variables that are never intervened on in a split.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causal_wm.data.format import json_default, write_npy_member

LATENT_LIMIT = 2.8
GRAPH_IDX = -1
FORMAT = "causal_wm export_citris, version 1"
SEQUENCE_SPLITS = ("train", "val", "test")
_BLOCK = 4096  # frames read, converted and written at a time
_RENDER_CHECK = 16  # stored frames the renderer must reproduce before it is trusted


@dataclass
class CitrisExport:
    """What ``export_citris`` wrote.

    Attributes:
        folder: the export folder.
        files: ``split -> frames`` (``M`` samples for the independent and triplet files).
        skipped: ``split -> why`` for the files not written.
        latent_scale: the factor applied to every latent.
        settings: the content of ``settings.json``.
    """

    folder: Path
    files: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)
    latent_scale: float = 1.0
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        written = ", ".join(f"{name}.npz ({count} frames)" for name, count in self.files.items())
        text = f"{self.folder}: {written}, settings.json; latent scale {self.latent_scale:.4g}"
        for name, why in self.skipped.items():
            text += f"\nskipped {name}.npz: {why}"
        return text


def export_citris(dataset: Any, folder: str | os.PathLike, *, val_fraction: float = 0.1,
                  test_fraction: float = 0.1, indep_size: int | None = None, triplet_size: int | None = None,
                  render: bool | None = None, latent_limit: float | None = LATENT_LIMIT, seed: int = 0,
                  compressed: bool = True, overwrite: bool = False) -> CitrisExport:
    """Write ``dataset`` (a ``causal_wm.data.Dataset``) as a CITRIS/BISCUIT dataset folder; see the
    module docstring for the files, their arrays and how they line up with the collection.

    Args:
        dataset: the collection; it needs true latents, intervention targets and the true graph (the
            built-in scenes record all three).
        folder: the folder to write (created; written under a temporary name and renamed into place).
        val_fraction, test_fraction: the share of episodes (of rows, with fewer than 3 episodes) in the
            val and test sequences; each split gets at least one episode and two frames.
        indep_size, triplet_size: samples in every ``*_indep`` / ``*_triplets`` file (default: as many
            as the split has frames).
        render: write the ``*_indep`` and ``*_triplets`` files, which need the scene's renderer: None
            (default) writes them when the renderer is available and warns otherwise, True requires
            them (``ValueError`` if they cannot be rendered), False skips them.
        latent_limit: the largest ``|latent|`` after scaling (their heads expect about 2.8); None keeps
            the latents as they are.
        seed: seeds the independent samples and the triplets.
        compressed: deflate the ``.npz`` members (as ``np.savez_compressed``); False stores them.
        overwrite: replace a ``folder`` that an earlier export wrote (any other non-empty folder is
            refused, with or without it).

    Returns:
        a ``CitrisExport`` naming the files written and skipped.

    Raises:
        ValueError: bad arguments, a collection without latents, targets or graph, too few frames for
            three splits, an existing folder without ``overwrite``, or ``render=True`` without a renderer.
    """
    folder = Path(folder)
    _check_arguments(val_fraction, test_fraction, indep_size, triplet_size, render, latent_limit, seed)
    _check_folder(folder, overwrite)
    if not dataset.has_latents:
        raise ValueError(f"export_citris needs the true latents, and {dataset.path} has none (the env must report "
                         f"info['z'] on every step)")
    if not dataset.has_targets:
        raise ValueError(f"export_citris needs the intervention targets, and {dataset.path} has none (the env needs "
                         f"an intervention menu or info['intervention'])")
    graph = dataset.graph
    if graph is None:
        raise ValueError(f"export_citris needs the true causal graph for settings.json, and {dataset.path} has none "
                         f"(the env must expose a `graph` attribute)")
    k = int(dataset.num_latents)
    ranges = split_ranges(dataset.episode, val_fraction, test_fraction)
    keys = np.array([f"c{i}" for i in range(k)])
    names = _node_names(dataset, k)
    scale = _latent_scale(dataset, latent_limit)
    actions = _ActionEncoder(dataset)

    renderer, persistence, why_not = _rebuild_scene(dataset)
    if render is False:
        renderer, why_not = None, "not asked for (render=False)"
    skipped: dict[str, str] = {}
    files: dict[str, int] = {}
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    rng = np.random.default_rng(seed)
    try:
        for name in SEQUENCE_SPLITS:
            lo, hi = ranges[name]
            files[name] = hi - lo
            with zipfile.ZipFile(tmp / f"{name}.npz", "w", compression=mode, allowZip64=True) as archive:
                _write_sequence(archive, dataset, lo, hi, scale, actions, keys, names)
        for name in ("val", "test"):
            lo, hi = ranges[name]
            if renderer is not None:
                why_not = _check_renderer(renderer, dataset, lo, hi)
            if why_not:
                for suffix in ("indep", "triplets"):
                    skipped[f"{name}_{suffix}"] = why_not
                continue
            assert renderer is not None
            z = dataset.latents(slice(lo, hi))
            count = indep_size or hi - lo
            with zipfile.ZipFile(tmp / f"{name}_indep.npz", "w", compression=mode, allowZip64=True) as archive:
                _write_independent(archive, renderer, z, count, scale, keys, names, rng)
            files[f"{name}_indep"] = count
            targets = dataset.targets(slice(lo, hi))
            count = triplet_size or hi - lo
            try:
                sources, masks = triplet_sources(targets, count, rng)
            except ValueError as err:
                skipped[f"{name}_triplets"] = str(err)
                continue
            with zipfile.ZipFile(tmp / f"{name}_triplets.npz", "w", compression=mode, allowZip64=True) as archive:
                _write_triplets(archive, dataset, renderer, lo, z, sources, masks, scale, keys, names)
            files[f"{name}_triplets"] = count
        if render and skipped:
            raise ValueError(f"render=True but {', '.join(sorted(skipped))} cannot be written: "
                             f"{next(iter(skipped.values()))}")
        settings = _settings(dataset, graph, keys, names, scale, latent_limit, actions, ranges, files, skipped,
                             persistence)
        (tmp / "settings.json").write_text(json.dumps(settings, indent=2, default=json_default))
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if skipped and render is None:
        warnings.warn(f"export_citris: skipped {', '.join(sorted(skipped))}: {next(iter(skipped.values()))}",
                      stacklevel=3)
    return CitrisExport(folder, files, skipped, scale, settings)


# --- splits and samples -----------------------------------------------------------------------------
def split_ranges(episode: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """``split -> (first row, end row)`` of the train, val and test sequences: runs of whole episodes in
    file order (rows, when there are fewer than 3 episodes); each gets at least one episode, two rows."""
    n = len(episode)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(episode)) + 1]).astype(np.int64)
    if len(starts) >= 3:
        units, bounds = len(starts), np.append(starts, n)
    else:
        units, bounds = n, np.arange(n + 1)
    num_val = max(1, round(val_fraction * units))
    num_test = max(1, round(test_fraction * units))
    num_train = units - num_val - num_test
    cuts = [0, num_train, num_train + num_val, units]
    ranges = {name: (int(bounds[cuts[i]]), int(bounds[cuts[i + 1]])) for i, name in enumerate(SEQUENCE_SPLITS)}
    too_small = [name for name, (lo, hi) in ranges.items() if hi - lo < 2]
    if num_train < 1 or too_small:
        raise ValueError(f"cannot cut {n} frames in {len(starts)} episodes into train, val and test sequences of at "
                         f"least 2 frames each (val_fraction={val_fraction}, test_fraction={test_fraction}); "
                         f"collect more")
    return ranges


def triplet_sources(targets: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(sources (count, 2) int64, masks (count, K) bool)`` for the triplets of a split whose frames have
    intervention targets ``targets`` ``(N, K)``: two distinct frames per triplet, and a mask choosing, per
    variable, frame 2 (True) or frame 1. Only variables intervened on somewhere in the split are ever
    taken from frame 2 (all variables when none is), and no mask is constant over the variables."""
    n, k = targets.shape
    if n < 2:
        raise ValueError(f"triplets need at least 2 frames in the split, got {n}")
    allowed = targets.any(axis=0) if targets.any() else np.ones(k, dtype=bool)
    if k < 2:
        raise ValueError("triplets need at least 2 latent variables (a mask mixing two frames)")
    first = rng.integers(0, n, size=count)
    second = rng.integers(0, n - 1, size=count)
    second = second + (second >= first)
    masks = np.zeros((count, k), dtype=bool)
    redo = np.ones(count, dtype=bool)
    while redo.any():
        masks[redo] = (rng.integers(0, 2, size=(int(redo.sum()), k)) == 1) & allowed
        redo = masks.all(axis=1) | ~masks.any(axis=1)
    return np.stack([first, second], axis=1).astype(np.int64), masks


def independent_sources(n: int, count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, K)`` int64 frames of a split of ``n`` frames: variable ``j`` of sample ``m`` is taken from
    frame ``sources[m, j]``, drawn uniformly and independently per variable (the product of the marginals)."""
    return rng.integers(0, n, size=(count, k)).astype(np.int64)


# --- files ------------------------------------------------------------------------------------------
def _write_sequence(archive: zipfile.ZipFile, dataset: Any, lo: int, hi: int, scale: float,
                    actions: _ActionEncoder, keys: np.ndarray, names: np.ndarray) -> None:
    n = hi - lo
    rows = slice(lo, hi)
    shape = (n, *dataset.obs_shape)
    write_npy_member(archive, "images", shape, np.dtype(np.uint8),
               (dataset.observations(slice(s, min(s + _BLOCK, hi))) for s in range(lo, hi, _BLOCK)))
    _put(archive, "latents", (dataset.latents(rows) * scale).astype(np.float32))
    # their row t: the step into frame t + 1, i.e. our target mask of frame t + 1
    _put(archive, "targets", dataset.targets(slice(lo + 1, hi)).astype(np.float32))
    _put(archive, "actions", actions(dataset.actions(rows)))
    _put(archive, "keys", keys)
    _put(archive, "node_names", names)
    _put(archive, "regimes", np.asarray(dataset.regime[rows], dtype=np.int64))
    episode = np.asarray(dataset.episode[rows], dtype=np.int64)
    _put(archive, "episode", episode)
    _put(archive, "sequence_starts", np.concatenate([[0], np.flatnonzero(np.diff(episode)) + 1]).astype(np.int64))


def _write_independent(archive: zipfile.ZipFile, renderer: Callable[[np.ndarray], np.ndarray], z: np.ndarray,
                       count: int, scale: float, keys: np.ndarray, names: np.ndarray,
                       rng: np.random.Generator) -> None:
    sources = independent_sources(len(z), count, z.shape[1], rng)
    latents = z[sources, np.arange(z.shape[1])]
    frame = renderer(latents[:1])
    write_npy_member(archive, "images", (count, *frame.shape[1:]), np.dtype(np.uint8),
               (renderer(latents[s: s + _BLOCK]) for s in range(0, count, _BLOCK)))
    _put(archive, "latents", (latents * scale).astype(np.float32))
    _put(archive, "targets", np.ones((count, z.shape[1]), dtype=np.float32))
    _put(archive, "keys", keys)
    _put(archive, "node_names", names)
    _put(archive, "source_frames", sources)


def _write_triplets(archive: zipfile.ZipFile, dataset: Any, renderer: Callable[[np.ndarray], np.ndarray], lo: int,
                    z: np.ndarray, sources: np.ndarray, masks: np.ndarray, scale: float, keys: np.ndarray,
                    names: np.ndarray) -> None:
    count = len(sources)
    mixed = np.where(masks, z[sources[:, 1]], z[sources[:, 0]])
    latents = np.stack([z[sources[:, 0]], z[sources[:, 1]], mixed], axis=1)

    def blocks() -> Iterator[np.ndarray]:
        for s in range(0, count, _BLOCK):
            part = sources[s: s + _BLOCK]
            yield np.stack([dataset.observations(lo + part[:, 0]), dataset.observations(lo + part[:, 1]),
                            renderer(mixed[s: s + _BLOCK])], axis=1)

    write_npy_member(archive, "images", (count, 3, *dataset.obs_shape), np.dtype(np.uint8), blocks())
    _put(archive, "latents", (latents * scale).astype(np.float32))
    _put(archive, "targets", masks.astype(np.float32))
    _put(archive, "keys", keys)
    _put(archive, "node_names", names)
    _put(archive, "source_frames", sources)


def _put(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    write_npy_member(archive, key, array.shape, array.dtype, iter([array]))


class _ActionEncoder:
    """Collection actions -> float32 ``(N, A)``: one-hot rows for discrete actions (``A`` = the menu's
    size, or the largest action + 1 without a menu), vector actions flattened as they are."""

    def __init__(self, dataset: Any) -> None:
        handle = dataset._handle()
        ds = handle["action"]
        self.discrete = ds.dtype.kind in "iu" and ds.shape[1:] == ()
        self.labels: list[str] | None = None
        if self.discrete:
            menu = dataset.menu
            if menu is not None:
                self.size = len(menu)
                self.labels = ["no intervention" if iv is None else iv.label() for iv in menu]
            else:
                self.size = int(dataset.actions(slice(None)).max(initial=0)) + 1
        else:
            self.size = int(np.prod(ds.shape[1:], dtype=np.int64))

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if not self.discrete:
            return np.asarray(actions, dtype=np.float32).reshape(len(actions), self.size)
        out = np.zeros((len(actions), self.size), dtype=np.float32)
        out[np.arange(len(actions)), np.asarray(actions, dtype=np.int64)] = 1.0
        return out

    def description(self) -> dict[str, Any]:
        if not self.discrete:
            return {"encoding": "the collection's vector actions, float32, flattened", "size": self.size}
        return {"encoding": "one-hot: action a is the row e_a (column 0: action 0, no intervention); "
                            "actions[t] is the action of the step that produced frame t",
                "size": self.size, "labels": self.labels}


# --- the renderer -----------------------------------------------------------------------------------
def _rebuild_scene(dataset: Any) -> tuple[Callable[[np.ndarray], np.ndarray] | None, float | None, str]:
    """``(renderer, persistence, why)`` of the collection's env, rebuilt from its ``env_id`` and
    ``env_kwargs``: its batch renderer ``env.unwrapped.renderer(z (N, K)) -> uint8 (N, H, W, C)`` and
    ``persistence`` (None where unknown), or ``(None, None, why)`` when it cannot be rebuilt."""
    import causal_wm  # noqa: F401  (registers the scenes)
    from causal_wm.envs import make

    env_id = dataset.env_id
    try:
        env = make(env_id, **dataset.env_kwargs)
    except (ValueError, TypeError, ImportError) as err:
        return None, None, f"the collection's env {env_id!r} cannot be rebuilt to render new frames ({err})"
    renderer = getattr(env.unwrapped, "renderer", None)
    persistence = getattr(env.unwrapped, "persistence", None)
    env.close()
    persistence = float(persistence) if isinstance(persistence, int | float) else None
    if not callable(renderer):
        return None, persistence, (f"the env {env_id!r} has no batch renderer (env.unwrapped.renderer(z) -> "
                                   f"frames) to render new frames from latents")
    return renderer, persistence, ""


def _check_renderer(renderer: Callable[[np.ndarray], np.ndarray], dataset: Any, lo: int, hi: int) -> str:
    """"" if the renderer reproduces the split's first stored frames from their latents, else why not."""
    rows = slice(lo, min(hi, lo + _RENDER_CHECK))
    frames = np.asarray(renderer(dataset.latents(rows)))
    if frames.shape[1:] != tuple(dataset.obs_shape) or not np.array_equal(frames, dataset.observations(rows)):
        return (f"the renderer of {dataset.env_id!r} does not reproduce the stored frames from their latents (a "
                f"wrapper changed the observations?), so new frames would not match the data")
    return ""


# --- metadata ---------------------------------------------------------------------------------------
def _node_names(dataset: Any, k: int) -> np.ndarray:
    scm = dataset.scm_params
    names = list(scm.get("names") or []) if scm else []
    return np.array(names if len(names) == k else [f"z{i}" for i in range(k)])


def _latent_scale(dataset: Any, latent_limit: float | None) -> float:
    if latent_limit is None:
        return 1.0
    largest = float(np.abs(dataset.latents(slice(None))).max(initial=0.0))
    return 1.0 if largest <= latent_limit else float(latent_limit) / largest


def _settings(dataset: Any, graph: np.ndarray, keys: np.ndarray, names: np.ndarray, scale: float,
              latent_limit: float | None, actions: _ActionEncoder, ranges: dict[str, tuple[int, int]],
              files: dict[str, int], skipped: dict[str, str], persistence: float | None) -> dict[str, Any]:
    episode = dataset.episode
    boundaries = {name: int(np.count_nonzero(np.diff(episode[lo:hi]))) for name, (lo, hi) in ranges.items()}
    return {
        "causal_graph": np.asarray(graph, dtype=np.float64).tolist(),
        "graph_idx": GRAPH_IDX,
        "num_causal_vars": len(keys),
        "keys": keys.tolist(),
        "node_names": names.tolist(),
        "latent_scale": scale,
        "latent_limit": latent_limit,
        "actions": actions.description(),
        "files": files,
        "skipped": skipped,
        "splits": {name: {"rows": list(ranges[name]), "frames": hi - lo, "episode_boundaries": boundaries[name]}
                   for name, (lo, hi) in ranges.items()},
        "persistence": persistence,
        "episode_boundaries": "each sequence file is whole episodes in file order; the pair (last frame of an "
                              "episode, first frame of the next) spans a reset. With persistence 0 every frame is "
                              "a fresh sample of its regime and such a pair is distributed like any step; with "
                              "persistence > 0 skip the windows that cross sequence_starts",
        "source": {"path": str(dataset.path), "env_id": dataset.env_id, "env_kwargs": dataset.env_kwargs,
                   "seed": dataset.attrs.get("seed"), "rows": len(dataset)},
        "format": FORMAT,
    }


# --- arguments and the folder -----------------------------------------------------------------------
def _check_arguments(val_fraction: float, test_fraction: float, indep_size: int | None, triplet_size: int | None,
                     render: bool | None, latent_limit: float | None, seed: int) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be below 1 (train needs the rest), got "
                         f"{val_fraction} + {test_fraction}")
    for name, value in (("indep_size", indep_size), ("triplet_size", triplet_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if render not in (None, True, False):
        raise ValueError(f"render must be None, True or False, got {render!r}")
    if latent_limit is not None and (isinstance(latent_limit, bool) or not isinstance(latent_limit, int | float)
                                     or not np.isfinite(latent_limit) or latent_limit <= 0):
        raise ValueError(f"latent_limit must be a positive number or None, got {latent_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _check_folder(folder: Path, overwrite: bool) -> None:
    """Raise ``ValueError`` unless ``folder`` can be written: new or empty, or (with ``overwrite``) a
    folder that an earlier export wrote; never any other folder, so that no other data is lost."""
    if not folder.resolve().name or folder.resolve() == Path.home().resolve():
        raise ValueError(f"cannot export to {folder}: give the path of a folder of its own")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot export to {folder}: it is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise ValueError(f"cannot export to {folder}: the folder exists and is not empty; pass overwrite=True "
                             f"(causal-wm export --overwrite) to replace an earlier export, or choose another folder")
        try:
            earlier = json.loads((folder / "settings.json").read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            earlier = False
        if not earlier:
            raise ValueError(f"refusing to replace {folder}: it is not a folder written by export_citris (no "
                             f"settings.json of an export); remove it yourself or choose another folder")
    parent = folder.parent if str(folder.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot export to {folder}: {existing} is not a writable folder")


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Rename the finished temporary folder to ``folder``, replacing what was there only at the end."""
    old = None
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
