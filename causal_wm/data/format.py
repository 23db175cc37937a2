"""The on-disk format of a collection (HDF5) and its crash-safe writer.

One file holds one collection. Rows are environment steps in episode order (all of episode 0, then
episode 1, ...); a row is the result of one ``env.step(action)``: the observation the step returned,
the action that produced it and the regime it belongs to.

Per-row datasets (``N`` rows; present in every file unless marked):

=================  =======================  ==========================================================
name               shape, dtype             meaning
=================  =======================  ==========================================================
``obs``            ``(N, H, W, C)`` uint8   observation returned by the step (HWC, as from the env)
``action``         ``(N, *A)``              the action (int64 for discrete spaces)
``reward``         ``(N,)`` float64         reward
``terminated``     ``(N,)`` bool            the episode ended in a terminal state at this step
``truncated``      ``(N,)`` bool            the episode was cut at this step (e.g. a time limit)
``regime``         ``(N,)`` int64           0 = observational, ``k >= 1`` = menu entry ``k``
``episode``        ``(N,)`` int64           episode index (0, 1, ...; consecutive in the file)
``step``           ``(N,)`` int64           step index inside the episode (0 = first step)
``target_mask``    ``(N, n)`` bool          intervened latent nodes (when the menu is known)
``z``              ``(N, n)`` float64       true latents (when the env reports ``info["z"]``)
=================  =======================  ==========================================================

Per-episode datasets (``E`` episodes): ``reset_obs`` ``(E, H, W, C)`` uint8, the observation returned
by ``reset`` (so episodes can be replayed as transitions), and ``episode_start`` ``(E,)`` int64, the
row of each episode's first step. ``chunk_index`` ``(slots, 3)`` int64: where the storage chunks lie
(see ``CHUNK_INDEX``; absent in files of older versions).

Root attributes: ``schema_version``, ``package_version``, ``env_id``, ``env_kwargs`` (JSON),
``menu`` (JSON list, ``null`` for regime 0, ``Intervention.to_dict`` otherwise; absent when the env
has no menu), ``graph`` (``(n, n)`` int8, ``A[i, j] = 1`` iff ``i -> j``; when known), ``scm`` (JSON
parameters of the true SCM; when known), ``seed``, ``seeding`` (how episode seeds derive from it),
``policy``, ``per_regime``, ``regime_source``, ``target_length`` (rows requested) and the two commit
counters ``committed_length`` and ``committed_episodes``.

Crash safety: rows are buffered in numpy and written one chunk at a time; the commit counters are
updated only after the chunk's data is written and flushed, and readers trust the counters, never the
dataset shapes. A file is created under a temporary name and renamed into place, so the path never
holds a half-initialised file.

Compression: ``obs`` is compressed with a lossless HDF5 filter (``lzf`` by default, ``gzip`` or none on
request; see ``Writer``); every other dataset is small and stored uncompressed. Files written without
compression (the default of older versions) read and continue as they are.

Integrity: every dataset is written with HDF5's fletcher32 checksum filter, so a damaged storage chunk
is an error on read (``DatasetError`` naming the file, the dataset and the rows), never silently wrong
data. Files written before the checksums (no filter) still read. The dataset ``chunk_index`` is a small
index of where every storage chunk lies in the file (see ``CHUNK_INDEX``), updated before each commit;
``causal_wm.data.repair`` uses it to salvage a truncated file whose HDF5 chunk index (B-tree nodes
spread over the file) is partly lost. A fully zeroed storage chunk (checksum bytes included) passes the
checksum; a truncated file is checked against its length instead.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
ROW_FIELDS = ("obs", "action", "reward", "terminated", "truncated", "regime", "episode", "step",
              "target_mask", "z")
OPTIONAL_ROW_FIELDS = ("target_mask", "z")
EPISODE_FIELDS = ("reset_obs", "episode_start")
COMPRESSIONS = (None, "gzip", "lzf")
# HDF5 storage chunks of about this many bytes: small enough for random minibatch reads, large enough
# that chunk-index overhead stays negligible.
_STORAGE_CHUNK_BYTES = 1 << 20
# Compressed images get smaller chunks: a read decompresses whole chunks, so a random minibatch row costs
# its chunk's decompression. 128 KiB (8 frames of 64 x 64 x 3) keeps random reads as fast as uncompressed
# ones at the same file size (scripts/bench_storage.py measures both).
_COMPRESSED_CHUNK_BYTES = 1 << 17
# The salvage index: an int64 dataset of shape (slots, 3) holding (byte offset, stored size, filter
# mask) of every storage chunk, -1 where unknown; storage chunk ``c`` of dataset ``INDEXED_FIELDS[f]``
# sits in slot ``c * len(INDEXED_FIELDS) + f``. Its own storage chunks are large and uncompressed, so
# they are allocated early (the first one with the first chunk of data) and rewritten in place.
CHUNK_INDEX = "chunk_index"
INDEXED_FIELDS = ROW_FIELDS + EPISODE_FIELDS
_INDEX_CHUNK_SLOTS = 1 << 16  # 1.5 MiB
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class DatasetError(ValueError):
    """A collection file that cannot be used: missing, truncated, corrupt or of another schema."""


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars/arrays and other objects (stored by ``repr``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=json_default, sort_keys=True)


def menu_to_json(menu: Sequence[Any] | None) -> str | None:
    """The intervention menu as JSON: ``null`` for the observational entry, ``to_dict`` otherwise."""
    if menu is None:
        return None
    return to_json([None if iv is None else iv.to_dict() for iv in menu])


def menu_from_json(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    from causal_wm.scm import Intervention

    return [None if d is None else Intervention.from_dict(d) for d in json.loads(text)]


def scm_to_dict(scm: Any) -> dict[str, Any]:
    """JSON-ready parameters of an ``SCM``: graph, noise, box, names and every mechanism's numeric
    parameters (functions given as Python callables are recorded by name only)."""
    mechanisms = []
    for mech in scm.mechanisms:
        if mech is None:
            mechanisms.append(None)
            continue
        entry: dict[str, Any] = {"type": type(mech).__name__}
        for key, value in vars(mech).items():
            if callable(value):
                entry[key] = getattr(value, "__qualname__", repr(value))
            elif isinstance(value, np.ndarray | np.generic | int | float | tuple | list | str):
                entry[key] = value
        mechanisms.append(entry)
    box = None if scm.box is None else [np.asarray(b).tolist() for b in scm.box]
    return {"n": int(scm.n), "graph": np.asarray(scm.graph).astype(int).tolist(),
            "noise_std": np.asarray(scm.noise_std).tolist(), "noise_mean": np.asarray(scm.noise_mean).tolist(),
            "box": box, "names": list(scm.names), "mechanisms": mechanisms}


def storage_chunk_rows(row_shape: tuple[int, ...], itemsize: int, flush_rows: int,
                       budget: int = _STORAGE_CHUNK_BYTES) -> int:
    """Rows per HDF5 storage chunk: the largest power of two within the byte ``budget`` and ``flush_rows``
    (a power of two divides the usual power-of-two flush sizes, so whole chunks can be written raw)."""
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
    limit = max(1, min(flush_rows, budget // row_bytes))
    return 1 << (limit.bit_length() - 1)


def write_rows(ds: h5py.Dataset, start: int, data: np.ndarray) -> None:
    """``ds[start: start + len(data)] = data``, writing whole storage chunks of datasets without any
    filter (files of older versions) with ``write_direct_chunk`` (no pass through HDF5's chunk cache and
    filter pipeline); datasets with filters (checksums, compression) go through the pipeline."""
    m = len(data)
    rows = ds.chunks[0] if ds.chunks is not None else 0
    if _has_filters(ds) or rows < 2 or m < rows:
        ds[start: start + m] = data
        return
    head = min(m, (-start) % rows)
    full = (m - head) // rows * rows
    if head:
        ds[start: start + head] = data[:head]
    zeros = (0,) * (data.ndim - 1)
    for k in range(head, head + full, rows):
        ds.id.write_direct_chunk((start + k, *zeros), np.ascontiguousarray(data[k: k + rows], dtype=ds.dtype))
    if head + full < m:
        ds[start + head + full: start + m] = data[head + full:]


def write_npy_member(archive: zipfile.ZipFile, key: str, shape: tuple[int, ...], dtype: np.dtype,
                     blocks: Iterator[np.ndarray]) -> None:
    """Stream the array ``key`` of ``shape`` and ``dtype`` into an ``.npz`` archive as ``key.npy``, block by
    block (C order along the first axis), so that no full copy is ever held in memory."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    with archive.open(key + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_2_0(member, header)
        for block in blocks:
            member.write(np.ascontiguousarray(block, dtype=dtype).tobytes())


def index_slot(name: str, chunk: int) -> int:
    """The ``chunk_index`` slot of storage chunk ``chunk`` of dataset ``name``."""
    return chunk * len(INDEXED_FIELDS) + INDEXED_FIELDS.index(name)


def _has_filters(ds: h5py.Dataset) -> bool:
    return ds.id.get_create_plist().get_nfilters() > 0


def repair_hint(path: Path | str) -> str:
    return (f"salvage its intact rows with `causal-wm repair {path} --out FIXED.h5` "
            f"(causal_wm.data.repair(path, out))")


def read_rows(ds: h5py.Dataset, selection: Any, path: Path | str) -> np.ndarray:
    """``ds[selection]``, turning HDF5's read errors (a checksum mismatch of a damaged chunk, an
    unreadable chunk index) into a ``DatasetError`` naming the file, the dataset and the damaged rows."""
    try:
        return ds[selection]
    except (OSError, RuntimeError) as err:  # RuntimeError: HDF5's chunk index itself is damaged
        raise read_error(ds, selection, path, err) from err


def read_error(ds: h5py.Dataset, selection: Any, path: Path | str, err: Exception) -> DatasetError:
    """The ``DatasetError`` of a failed read of ``ds[selection]``: probes its storage chunks one by one to
    name the rows that cannot be read."""
    low, high = _selection_bounds(selection, ds.shape[0])
    rows = ds.chunks[0] if ds.chunks is not None else max(1, high - low)
    bad: list[tuple[int, int]] = []
    for first in range(low - low % rows, high, rows):
        last = min(first + rows, ds.shape[0])
        try:
            ds[first:last]
        except (OSError, RuntimeError):
            if bad and bad[-1][1] == first:
                bad[-1] = (bad[-1][0], last)
            else:
                bad.append((first, last))
    where = ", ".join(f"{a}..{b - 1}" for a, b in bad) if bad else f"{low}..{high - 1}"
    return DatasetError(f"{path} is damaged: rows {where} of dataset {ds.name.lstrip('/')!r} cannot be read "
                        f"({err}; a checksum mismatch means the stored bytes changed); the other rows still "
                        f"read; {repair_hint(path)}")


def _selection_bounds(selection: Any, length: int) -> tuple[int, int]:
    if isinstance(selection, tuple):
        selection = selection[0] if selection else slice(None)
    if isinstance(selection, slice):
        start, stop, _ = selection.indices(length)
        return start, max(start + 1, stop)
    array = np.asarray(selection).reshape(-1)
    if array.size == 0:
        return 0, length
    return int(array.min()), int(array.max()) + 1


def check_writable(path: Path) -> None:
    """Raise ``ValueError`` naming the problem if a collection file cannot be written at ``path``."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"cannot write the collection to {path}: it is a directory")
    if not parent.is_dir():
        raise ValueError(f"cannot write the collection to {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the collection to {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot write the collection to {path}: the file is not writable")


def open_for_reading(path: str | os.PathLike) -> h5py.File:
    """Open a collection file read-only, turning HDF5's errors into ``DatasetError``."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no collection file at {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise _open_error(path, err) from err
    try:
        check_schema(handle, path)
    except Exception:
        handle.close()
        raise
    return handle


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) until the block is done, so that a chunk and its commit counters are
    never half updated in memory; the interrupt is delivered right after. A no-op off the main thread
    and where signal masks do not exist."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def has_hdf5_signature(path: Path) -> bool:
    """Whether ``path`` starts like an HDF5 file (the superblock signature at offset 0)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _open_error(path: Path, err: OSError) -> DatasetError:
    if "unable to lock file" in str(err):
        return DatasetError(f"{path} is open for writing in another process (a collection still running?): "
                            f"{err}")
    if not has_hdf5_signature(path):
        return DatasetError(f"{path} is not a readable HDF5 collection (not an HDF5 file at all; truncated or "
                            f"corrupt file?): {err}")
    kind = "truncated" if "truncated file" in str(err) else "damaged"
    return DatasetError(f"{path} is not a readable HDF5 collection (truncated or corrupt file: it looks {kind}, "
                        f"e.g. a full disk or an interrupted copy): {err}. Start over with resume=False "
                        f"(causal-wm collect --no-resume), or {repair_hint(path)}")


def check_overwritable(path: Path) -> None:
    """Raise ``ValueError`` unless the existing file ``path`` may be replaced by a fresh collection: it must
    be a causal_wm collection (or an HDF5 file too damaged to open, such as a truncated collection)."""
    if not path.exists():
        return
    refuse = (f"refusing to overwrite {path}: it is not a causal_wm collection (%s); pass overwrite=True "
              f"(causal-wm collect --overwrite) to replace it, or choose another path")
    if not has_hdf5_signature(path):
        raise ValueError(refuse % "not an HDF5 file")
    try:
        with h5py.File(path, "r") as handle:
            is_collection = "schema_version" in handle.attrs and "committed_length" in handle.attrs
    except OSError:
        return  # an HDF5 file too damaged to open: what starting over after a crash replaces
    if not is_collection:
        raise ValueError(refuse % "an HDF5 file without schema_version / committed_length attributes")


def check_schema(handle: h5py.File, path: Path | str) -> None:
    """Raise ``DatasetError`` unless ``handle`` is a collection of this schema version whose committed
    rows are all present."""
    attrs = handle.attrs
    if "schema_version" not in attrs or "committed_length" not in attrs:
        raise DatasetError(f"{path} is an HDF5 file but not a causal_wm collection (no schema_version / "
                           f"committed_length attributes)")
    version = int(attrs["schema_version"])
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {version}; this causal_wm reads version "
                           f"{SCHEMA_VERSION}")
    length = int(attrs["committed_length"])
    episodes = int(attrs["committed_episodes"])
    if length < 0 or episodes < 0:
        raise DatasetError(f"{path} has negative commit counters ({length} rows, {episodes} episodes)")
    if length == 0:
        return
    for name in ("obs", "action", "reward", "terminated", "truncated", "regime", "episode", "step"):
        if name not in handle:
            raise DatasetError(f"{path} commits {length} rows but has no {name!r} dataset (corrupt file)")
        if handle[name].shape[0] < length:
            raise DatasetError(f"{path} commits {length} rows but {name!r} holds {handle[name].shape[0]} "
                               f"(truncated file)")
    for name in EPISODE_FIELDS:
        if name not in handle or handle[name].shape[0] < episodes:
            raise DatasetError(f"{path} commits {episodes} episodes but {name!r} is missing or shorter "
                               f"(truncated file)")


class Writer:
    """Appends rows to a collection file in chunks; see the module docstring for the layout.

    Rows arrive one at a time (``append_row``) into numpy buffers of ``flush_rows`` rows; a full buffer
    is written with one h5py call per dataset, flushed, and then committed by advancing
    ``committed_length``. ``close`` writes the partly filled buffer too.

    Args:
        path: the file (must already exist, see ``create``).
        flush_rows: rows per written chunk.
        compression: ``None``, ``"gzip"`` or ``"lzf"`` (lossless either way), for ``obs`` only.
    """

    def __init__(self, path: Path, flush_rows: int, compression: str | None) -> None:
        self.path = path
        self.flush_rows = int(flush_rows)
        self.compression = compression
        try:
            self.file = h5py.File(path, "r+")
        except OSError as err:
            raise _open_error(path, err) from err
        check_schema(self.file, path)
        self.length = int(self.file.attrs["committed_length"])
        self.episodes = int(self.file.attrs["committed_episodes"])
        self._buffers: dict[str, np.ndarray] = {}
        self._filled = 0
        self._episode_obs: list[np.ndarray] = []
        self._episode_start: list[int] = []
        self.regime_counts: dict[int, int] = {}
        if self.length:
            try:
                regime = read_rows(self.file["regime"], slice(0, self.length), path)
            except Exception:
                self.file.close()
                raise
            regimes, counts = np.unique(regime, return_counts=True)
            self.regime_counts = {int(r): int(c) for r, c in zip(regimes, counts, strict=True)}

    @staticmethod
    def create(path: Path, attrs: Mapping[str, Any]) -> None:
        """Write a fresh file holding only ``attrs`` and zero commit counters, atomically."""
        tmp = path.with_name(path.name + ".partial")
        try:
            with h5py.File(tmp, "w") as handle:
                for key, value in attrs.items():
                    if value is not None:
                        handle.attrs[key] = value
                handle.attrs["committed_length"] = 0
                handle.attrs["committed_episodes"] = 0
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"cannot write the collection to {path}: {err}") from err

    # --- rows ---------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Rows committed plus rows waiting in the buffer."""
        return self.length + self._filled

    @property
    def total_episodes(self) -> int:
        return self.episodes + len(self._episode_start)

    def begin_episode(self, reset_obs: np.ndarray) -> None:
        """Record the reset observation of the next episode; its rows follow."""
        self._episode_obs.append(np.array(reset_obs, dtype=np.uint8, copy=True))
        self._episode_start.append(self.total)

    def append_row(self, row: Mapping[str, Any]) -> None:
        if not self._buffers:
            self._allocate(row)
        i = self._filled
        for name, buffer in self._buffers.items():
            buffer[i] = row[name]
        self._filled += 1
        regime = int(row["regime"])
        self.regime_counts[regime] = self.regime_counts.get(regime, 0) + 1
        if self._filled == self.flush_rows:
            self.flush()

    def append_rows(self, block: Mapping[str, Any]) -> None:
        """Append ``m`` rows given as arrays with a leading axis of ``m`` (``None`` for absent fields)."""
        count = len(block["regime"])
        if count == 0:
            return
        if not self._buffers:
            self._allocate({name: None if value is None else value[0] for name, value in block.items()})
        present = {name for name, value in block.items() if value is not None}
        if present != set(self._buffers):
            raise DatasetError(f"rows carry {sorted(present)} but {self.path} stores {sorted(self._buffers)}")
        done = 0
        while done < count:
            take = min(count - done, self.flush_rows - self._filled)
            for name, buffer in self._buffers.items():
                buffer[self._filled: self._filled + take] = block[name][done: done + take]
            self._filled += take
            done += take
            if self._filled == self.flush_rows:
                self.flush()
        values, counts = np.unique(np.asarray(block["regime"]), return_counts=True)
        for regime, c in zip(values.tolist(), counts.tolist(), strict=True):
            self.regime_counts[regime] = self.regime_counts.get(regime, 0) + c

    def _allocate(self, row: Mapping[str, Any]) -> None:
        """Create the buffers (and, in a fresh file, the datasets) from the first row's shapes."""
        names = [n for n in ROW_FIELDS if n not in OPTIONAL_ROW_FIELDS or row.get(n) is not None]
        for name in names:
            value = np.asarray(row[name])
            if name in self.file:
                ds = self.file[name]
                if ds.shape[1:] != value.shape:
                    raise DatasetError(f"cannot continue {self.path}: {name!r} rows have shape {ds.shape[1:]} "
                                       f"in the file but {value.shape} now")
                dtype = ds.dtype
            else:
                dtype = _row_dtype(name, value)
            self._buffers[name] = np.empty((self.flush_rows, *value.shape), dtype=dtype)
        missing = [n for n in self.file if n in ROW_FIELDS and n not in self._buffers]
        if missing:
            raise DatasetError(f"cannot continue {self.path}: the file has {missing} but the env no longer "
                               f"provides them")
        for name, buffer in self._buffers.items():
            if name not in self.file:
                self._create_dataset(name, buffer.shape[1:], buffer.dtype)
        obs_shape = self._buffers["obs"].shape[1:]
        if "reset_obs" not in self.file:
            self._create_dataset("reset_obs", obs_shape, np.dtype(np.uint8))
            self._create_dataset("episode_start", (), np.dtype(np.int64))

    def _create_dataset(self, name: str, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        # Only the images are compressed: they are nearly all of the bytes, and their storage chunks line up
        # with the flushes, so each is written once. Chunks that fill over several flushes (the per-episode
        # datasets) are rewritten in place; compressed, every rewrite would move them to the end of the file.
        compression = self.compression if name == "obs" else None
        budget = _COMPRESSED_CHUNK_BYTES if compression else _STORAGE_CHUNK_BYTES
        rows = storage_chunk_rows(row_shape, dtype.itemsize, self.flush_rows, budget)
        self.file.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype,
                                 chunks=(rows, *row_shape), compression=compression, fletcher32=True)

    # --- the salvage index ----------------------------------------------------------------------
    def _record_chunks(self, name: str, start: int, stop: int) -> None:
        """Write the file locations of the storage chunks holding rows ``start..stop - 1`` of ``name``
        into ``chunk_index`` (created, or grown, as needed)."""
        ds = self.file[name]
        if ds.chunks is None or stop <= start:
            return
        rows = ds.chunks[0]
        zeros = (0,) * (ds.ndim - 1)
        first, last = start // rows, (stop - 1) // rows
        entries = np.full((last - first + 1, 3), -1, dtype=np.int64)
        for k, chunk in enumerate(range(first, last + 1)):
            info = ds.id.get_chunk_info_by_coord((chunk * rows, *zeros))
            if info.byte_offset is not None:
                entries[k] = (info.byte_offset, info.size, info.filter_mask)
        index = self._chunk_index(index_slot(name, last) + 1)
        first_slot = index_slot(name, first)
        index[first_slot: first_slot + len(INDEXED_FIELDS) * len(entries): len(INDEXED_FIELDS)] = entries

    def _chunk_index(self, slots: int) -> h5py.Dataset:
        if CHUNK_INDEX not in self.file:
            # storage chunks of the index sized so that the requested rows fill at most 16 of them: few
            # enough that HDF5's chunk index of the index never splits (its root node stays where it was
            # created, near the start of the file), large enough to hold a collection grown a few times
            rows = min(self.file[n].chunks[0] for n in self._buffers)
            planned = -(-max(int(self.file.attrs.get("target_length", 0)), self.total) // rows)
            wanted = max(slots, planned * len(INDEXED_FIELDS)) // 16
            chunk = min(_INDEX_CHUNK_SLOTS, max(256, 1 << max(0, wanted - 1).bit_length()))
            self.file.create_dataset(CHUNK_INDEX, shape=(0, 3), maxshape=(None, 3), dtype=np.int64,
                                     chunks=(chunk, 3), fillvalue=-1, fletcher32=True)
        index = self.file[CHUNK_INDEX]
        if index.shape[0] < slots:
            chunk = index.chunks[0]
            index.resize(-(-slots // chunk) * chunk, axis=0)
        return index

    def flush(self) -> None:
        """Write and commit the buffered rows and episode records (one h5py write per dataset)."""
        if self._filled == 0 and not self._episode_start:
            return
        with deferred_interrupts():
            self._flush()

    def _flush(self) -> None:
        m = self._filled
        e = len(self._episode_start)
        start = self.length
        for name, buffer in self._buffers.items():
            ds = self.file[name]
            ds.resize(start + m, axis=0)
            write_rows(ds, start, buffer[:m])
        if e:
            for name, values in (("reset_obs", np.stack(self._episode_obs)),
                                 ("episode_start", np.asarray(self._episode_start, dtype=np.int64))):
                ds = self.file[name]
                ds.resize(self.episodes + e, axis=0)
                ds[self.episodes:] = values
        # data first, then where it lies (the salvage index), counters last: a crash in between leaves
        # extra rows that nobody trusts
        self.file.flush()
        for name in self._buffers:
            self._record_chunks(name, start, start + m)
        if e:
            for name in EPISODE_FIELDS:
                self._record_chunks(name, self.episodes, self.episodes + e)
        self.file.flush()
        self.length += m
        self.episodes += e
        self.file.attrs["committed_length"] = self.length
        self.file.attrs["committed_episodes"] = self.episodes
        self.file.flush()
        self._filled = 0
        self._episode_obs.clear()
        self._episode_start.clear()

    def truncate(self, length: int, episodes: int) -> None:
        """Drop committed rows from ``length`` and episodes from ``episodes`` on (nothing buffered)."""
        if self._filled or self._episode_start:
            raise RuntimeError("truncate needs an empty buffer")
        self.file.attrs["committed_length"] = length
        self.file.attrs["committed_episodes"] = episodes
        self.file.flush()
        for name in self.file:
            if name in ROW_FIELDS:
                self.file[name].resize(length, axis=0)
            elif name in EPISODE_FIELDS:
                self.file[name].resize(episodes, axis=0)
        self.file.flush()
        self.length, self.episodes = length, episodes
        regimes = self.file["regime"][:length] if "regime" in self.file else np.zeros(0, dtype=np.int64)
        values, counts = np.unique(regimes, return_counts=True)
        self.regime_counts = {int(r): int(c) for r, c in zip(values, counts, strict=True)}

    def set_attrs(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.file.flush()

    def close(self) -> None:
        if self.file.id.valid:
            self.flush()
            self.file.close()


def _row_dtype(name: str, value: np.ndarray) -> np.dtype:
    fixed = {"obs": np.uint8, "reward": np.float64, "terminated": np.bool_, "truncated": np.bool_,
             "regime": np.int64, "episode": np.int64, "step": np.int64, "target_mask": np.bool_,
             "z": np.float64}
    if name in fixed:
        return np.dtype(fixed[name])
    if value.dtype.kind in "iub":
        return np.dtype(np.int64)
    if value.dtype.kind == "f":
        return np.dtype(np.float64) if value.dtype.itemsize > 4 else np.dtype(np.float32)
    raise ValueError(f"actions of dtype {value.dtype} cannot be stored; use numeric actions")
