"""``Dataset``: a read-only, lazy view of a collection file (see ``causal_wm.data.format``).

Nothing but the small per-row columns (regime, episode, step: 8 bytes a row each) is ever read whole;
images and latents are read on demand, so a million frames need no more RAM than one batch.
Images come out as stored (uint8 ``(N, H, W, C)``) or torch-ready (float32 ``(N, C, H, W)`` in
``[0, 1]``, the stable-baselines3 convention).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from causal_wm.data.format import (
    DatasetError,
    menu_from_json,
    open_for_reading,
    read_error,
    read_rows,
    write_npy_member,
)

Index = int | slice | Sequence[int] | np.ndarray
# Read a contiguous range and subselect in memory when the wanted rows fill at least this fraction of
# it (and it is not too large); otherwise read run by run.
_DENSE_FRACTION = 0.125
_DENSE_MAX_BYTES = 64 << 20
_EXPORT_ROWS = 4096


class Dataset:
    """A collection opened read-only and lazily.

    Args:
        path: the HDF5 file written by ``causal_wm.collect``.

    Raises:
        DatasetError: the file is missing, not a collection, of another schema version, truncated or
            corrupt. Reads of rows whose storage chunks fail their checksum raise ``DatasetError`` too,
            naming the dataset and the rows (``causal_wm.data.repair`` salvages the intact ones).

    ``len(ds)`` is the number of committed rows; rows are steps in episode order. Row ``i`` holds the
    observation returned by the step, its action and its regime (0 = observational, ``k`` = menu
    entry ``k``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid = -1
        handle = self._handle()
        self.attrs: dict[str, Any] = {k: _plain(v) for k, v in handle.attrs.items()}
        self._length = int(self.attrs["committed_length"])
        self._episodes = int(self.attrs["committed_episodes"])
        self._columns: dict[str, np.ndarray] = {}

    # --- file handle (re-opened after fork or unpickling: h5py handles do not cross processes) ---
    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            self._file = open_for_reading(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid() and self._file.id.valid:
            self._file.close()
        self._file = None

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, rows={self._length}, episodes={self._episodes}, "
                f"env={self.env_id!r}, regimes={len(self.regimes)})")

    # --- metadata -----------------------------------------------------------------------------
    @property
    def env_id(self) -> str:
        return str(self.attrs.get("env_id", ""))

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return json.loads(self.attrs.get("env_kwargs", "{}"))

    @property
    def seed(self) -> int:
        return int(self.attrs["seed"])

    @property
    def target_length(self) -> int:
        """Rows the collection was asked for; ``len(self)`` is smaller if it was interrupted."""
        return int(self.attrs.get("target_length", self._length))

    @property
    def complete(self) -> bool:
        return self._length >= self.target_length

    @property
    def menu(self) -> list[Any] | None:
        """The env's intervention menu (``menu[0]`` is None = observational), or None if unknown."""
        return menu_from_json(self.attrs.get("menu"))

    @property
    def graph(self) -> np.ndarray | None:
        """True DAG ``(n, n)`` int8, ``A[i, j] = 1`` iff ``i -> j``, or None if the env did not give it."""
        graph = self.attrs.get("graph")
        return None if graph is None else np.asarray(graph, dtype=np.int8)

    @property
    def scm_params(self) -> dict[str, Any] | None:
        """Parameters of the true latent SCM (see ``format.scm_to_dict``), or None."""
        text = self.attrs.get("scm")
        return None if text is None else json.loads(text)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self._handle()["obs"].shape[1:]) if "obs" in self._handle() else ()

    @property
    def has_latents(self) -> bool:
        return "z" in self._handle()

    @property
    def has_targets(self) -> bool:
        return "target_mask" in self._handle()

    @property
    def num_latents(self) -> int | None:
        handle = self._handle()
        for name in ("z", "target_mask"):
            if name in handle:
                return int(handle[name].shape[1])
        graph = self.graph
        return None if graph is None else int(graph.shape[0])

    @property
    def num_episodes(self) -> int:
        return self._episodes

    # --- small columns ------------------------------------------------------------------------
    def _column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            values = (read_rows(self._handle()[name], slice(0, self._length), self.path) if self._length
                      else np.zeros(0, dtype=np.int64))
            values.setflags(write=False)
            self._columns[name] = values
        return self._columns[name]

    @property
    def regime(self) -> np.ndarray:
        """``(N,)`` int64 regime of every row."""
        return self._column("regime")

    @property
    def episode(self) -> np.ndarray:
        """``(N,)`` int64 episode index of every row."""
        return self._column("episode")

    @property
    def step(self) -> np.ndarray:
        """``(N,)`` int64 step index (inside its episode) of every row."""
        return self._column("step")

    @property
    def regimes(self) -> list[int]:
        """The regimes present, ascending."""
        return [int(r) for r in np.unique(self.regime)]

    def by_regime(self) -> dict[int, np.ndarray]:
        """``regime -> (m,)`` int64 row indices (ascending) of that regime."""
        regime = self.regime
        order = np.argsort(regime, kind="stable")
        values, starts = np.unique(regime[order], return_index=True)
        bounds = [*starts[1:], len(order)]
        return {int(v): order[s:e] for v, s, e in zip(values, starts, bounds, strict=True)}

    def regime_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.regime, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    # --- row access ---------------------------------------------------------------------------
    def _indices(self, idx: Index) -> tuple[np.ndarray, bool]:
        """``(indices, scalar)``: validated int64 row indices of ``idx``."""
        if isinstance(idx, slice):
            return np.arange(self._length)[idx], False
        array = np.asarray(idx)
        if array.dtype == np.bool_:
            raise ValueError("use integer row indices (np.flatnonzero of a mask), not a boolean mask")
        if array.size and array.dtype.kind not in "iu":
            raise ValueError(f"row indices must be integers, got dtype {array.dtype}")
        scalar = array.ndim == 0
        array = array.astype(np.int64).reshape(-1)
        if array.size and (array.min() < -self._length or array.max() >= self._length):
            raise IndexError(f"row index out of range for a dataset of {self._length} rows")
        return np.where(array < 0, array + self._length, array), scalar

    def _read(self, name: str, idx: Index) -> np.ndarray:
        handle = self._handle()
        if name not in handle:
            raise DatasetError(f"{self.path} has no {name!r} (the env did not provide it)")
        ds = handle[name]
        rows, scalar = self._indices(idx)
        if rows.size == 0:
            return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)
        unique, inverse = np.unique(rows, return_inverse=True)
        low, high = int(unique[0]), int(unique[-1]) + 1
        row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
        if len(unique) == high - low:
            values = read_rows(ds, slice(low, high), self.path)
        elif len(unique) >= _DENSE_FRACTION * (high - low) and (high - low) * row_bytes <= _DENSE_MAX_BYTES:
            values = read_rows(ds, slice(low, high), self.path)[unique - low]
        else:
            try:
                values = _read_runs(ds, unique)
            except (OSError, RuntimeError) as err:
                raise read_error(ds, unique, self.path, err) from err
        out = values[inverse.reshape(-1)]
        return out[0] if scalar else out

    def observations(self, idx: Index) -> np.ndarray:
        """Images as stored: uint8 ``(m, H, W, C)`` (``(H, W, C)`` for an int index)."""
        return self._read("obs", idx)

    def latents(self, idx: Index) -> np.ndarray:
        """True latents float64 ``(m, n)``; raises ``DatasetError`` if the env did not report them."""
        return self._read("z", idx)

    def targets(self, idx: Index) -> np.ndarray:
        """Intervention target masks bool ``(m, n)`` (row ``i`` marks the nodes regime ``i`` intervenes on)."""
        return self._read("target_mask", idx)

    def actions(self, idx: Index) -> np.ndarray:
        return self._read("action", idx)

    def rewards(self, idx: Index) -> np.ndarray:
        return self._read("reward", idx)

    def reset_observations(self, episodes: Index) -> np.ndarray:
        """Observations returned by ``reset`` of the given episodes: uint8 ``(m, H, W, C)``."""
        handle = self._handle()
        rows = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self._episodes):
            raise IndexError(f"episode index out of range for {self._episodes} episodes")
        unique, inverse = np.unique(rows, return_inverse=True)
        return read_rows(handle["reset_obs"], unique, self.path)[inverse.reshape(-1)]

    def images(self, idx: Index, device: Any = "cpu") -> Any:
        """Torch-ready images: float32 ``(m, C, H, W)`` in ``[0, 1]`` on ``device``."""
        from causal_wm.pixels import to_chw_float

        return to_chw_float(self.observations(idx), device)

    # --- torch --------------------------------------------------------------------------------
    def batches(self, batch_size: int, indices: Index | None = None, *, shuffle: bool = True, seed: int = 0,
                device: Any = "cpu", drop_last: bool = False, latents: bool = False) -> Iterator[dict[str, Any]]:
        """Minibatches over ``indices`` (default: every row), one pass.

        Yields dicts of torch tensors: ``obs`` float32 ``(B, C, H, W)`` in ``[0, 1]``, ``regime`` int64
        ``(B,)``, ``index`` int64 ``(B,)`` (row numbers) and, with ``latents=True``, ``z`` float32
        ``(B, n)``. ``device="auto"`` picks CUDA when available. Shuffling is seeded by ``seed``.
        """
        import torch

        from causal_wm.device import resolve_device
        from causal_wm.pixels import to_chw_float

        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        rows, _ = self._indices(slice(None) if indices is None else indices)
        if shuffle:
            rows = np.random.default_rng(seed).permutation(rows)
        device = resolve_device(device)
        stop = len(rows) - len(rows) % batch_size if drop_last else len(rows)
        for start in range(0, stop, batch_size):
            batch = rows[start: start + batch_size]
            out = {"obs": to_chw_float(self.observations(batch), device),
                   "regime": torch.as_tensor(self.regime[batch], device=device),
                   "index": torch.as_tensor(batch, device=device)}
            if latents:
                out["z"] = torch.as_tensor(self.latents(batch), dtype=torch.float32, device=device)
            yield out

    def torch_dataset(self, indices: Index | None = None, *, latents: bool = False) -> Any:
        """A ``torch.utils.data.Dataset`` over ``indices``: item ``i`` is a dict with ``obs`` float32
        ``(C, H, W)`` in ``[0, 1]``, ``regime`` and ``index`` (and ``z`` with ``latents=True``). Safe with
        ``DataLoader(num_workers > 0)``: every worker opens its own file handle."""
        from causal_wm.data._torch import regime_image_dataset_class

        rows, _ = self._indices(slice(None) if indices is None else indices)
        return regime_image_dataset_class()(self, rows, latents)

    # --- splits -------------------------------------------------------------------------------
    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(train_rows, val_rows)``: whole episodes go to one side; ``round(val_fraction * E)``
        episodes (at least one) are drawn for validation with ``seed``. Rows come back ascending."""
        if not (0.0 < float(val_fraction) < 1.0):
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
        episode_ids = np.unique(self.episode)
        if len(episode_ids) < 2:
            raise ValueError(f"a split by episode needs at least 2 episodes; {self.path} has {len(episode_ids)}")
        num_val = min(len(episode_ids) - 1, max(1, round(float(val_fraction) * len(episode_ids))))
        val_episodes = np.random.default_rng(seed).choice(episode_ids, size=num_val, replace=False)
        is_val = np.isin(self.episode, val_episodes)
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)

    # --- exports ------------------------------------------------------------------------------
    def to_npz(self, path: str | os.PathLike, indices: Index | None = None, *, compressed: bool = False) -> Path:
        """Write every column to one ``.npz``, streamed chunk by chunk (no full copy in RAM). This keeps the
        collection's own alignment (row ``i``'s targets and action belong to the step into frame ``i``); the
        folder that the CITRIS and BISCUIT loaders read is ``export_citris``.

        Keys: ``images`` uint8 ``(N, H, W, C)``, ``latents`` float64 ``(N, n)`` (if known),
        ``targets`` uint8 ``(N, n)`` intervention target masks (if known), ``actions``, ``regimes``
        int64 ``(N,)``, ``episode``, ``step``, and when known ``graph`` int8 ``(n, n)`` and
        ``menu_json`` (a string). Load with ``np.load(path)``.
        """
        rows, _ = self._indices(slice(None) if indices is None else indices)
        path = Path(path)
        members: list[tuple[str, str, Any]] = [("images", "obs", np.uint8)]
        if self.has_latents:
            members.append(("latents", "z", None))
        if self.has_targets:
            members.append(("targets", "target_mask", np.uint8))
        members += [("actions", "action", None), ("regimes", "regime", None), ("episode", "episode", None),
                    ("step", "step", None), ("rewards", "reward", None)]
        mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        handle = self._handle()
        with zipfile.ZipFile(path, "w", compression=mode, allowZip64=True) as archive:
            for key, name, dtype in members:
                ds = handle[name]
                dtype = np.dtype(dtype or ds.dtype)
                blocks = (self._read(name, rows[s: s + _EXPORT_ROWS]).astype(dtype, copy=False)
                          for s in range(0, len(rows), _EXPORT_ROWS))
                write_npy_member(archive, key, (len(rows), *ds.shape[1:]), dtype, blocks)
            graph = self.graph
            if graph is not None:
                write_npy_member(archive, "graph", graph.shape, graph.dtype, iter([graph]))
            menu = self.attrs.get("menu")
            if menu is not None:
                text = np.asarray(menu)
                write_npy_member(archive, "menu_json", (), text.dtype, iter([text]))
        return path

    def export_citris(self, folder: str | os.PathLike, **kwargs: Any) -> Any:
        """Write the folder that the CITRIS and BISCUIT data loaders read: ``train``/``val``/``test``
        sequences, ``*_indep`` and ``*_triplets`` files (rendered by the scene) and ``settings.json``; their
        ``targets[t]`` is the intervention of the step into frame ``t + 1``, ``actions[t]`` the one-hot
        action that produced frame ``t``. Keyword arguments and the files: ``causal_wm.data.citris_export``.
        Returns a ``CitrisExport`` (files written and skipped, the latent scale)."""
        from causal_wm.data.citris_export import export_citris

        return export_citris(self, folder, **kwargs)

    def to_minari(self, dataset_id: str, **kwargs: Any) -> Any:
        """Export to a Minari dataset (needs the optional ``minari`` extra); lossless: observations go
        in as raw uint8 arrays. Extra keyword arguments go to ``minari.create_dataset_from_buffers``."""
        from causal_wm.data.minari_export import to_minari

        return to_minari(self, dataset_id, **kwargs)


def _read_runs(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (ascending, distinct) read as one slab per run of consecutive rows; h5py's point
    selections (``ds[list]``) cost far more per row than these slab reads."""
    out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        first = int(rows[a])
        ds.read_direct(out, np.s_[first: first + (b - a)], np.s_[a:b])
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
