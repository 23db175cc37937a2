"""``repair``: salvage the intact rows of a damaged or truncated collection into a new, valid one.

A file cut short (a full disk, a copy that stopped) no longer opens: HDF5 checks that the file is as
long as its superblock says. ``repair`` reads it through a view padded with zeros to that length, finds
every storage chunk of the committed rows (from HDF5's own chunk index where it is intact, else from the
collection's ``chunk_index``, see ``causal_wm.data.format``), keeps a chunk only if its bytes lie wholly
inside the surviving file and pass their fletcher32 checksum, and copies the longest run of intact rows
from row 0, with the episodes' reset observations, into a new collection with the same attributes and
menu. Episodes keep their numbers (episode ``e`` is seeded from ``(seed, e)``), so ``collect`` with the
same arguments continues the repaired file and rewrites the lost rows exactly as they were.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from causal_wm.data.format import (
    CHUNK_INDEX,
    EPISODE_FIELDS,
    HDF5_SIGNATURE,
    INDEXED_FIELDS,
    ROW_FIELDS,
    DatasetError,
    Writer,
    check_writable,
    index_slot,
)

_FLUSH_ROWS = 1024


@dataclass(frozen=True)
class RepairReport:
    """What ``repair`` saved: rows and episodes of the source's commit counters and of the new file."""

    source: Path
    out: Path
    rows_committed: int
    rows_saved: int
    episodes_committed: int
    episodes_saved: int

    @property
    def rows_lost(self) -> int:
        return self.rows_committed - self.rows_saved

    def __str__(self) -> str:
        return (f"{self.out}: saved {self.rows_saved} of {self.rows_committed} committed rows of {self.source} "
                f"({self.rows_lost} lost), {self.episodes_saved} of {self.episodes_committed} episodes")


class _PaddedFile(io.RawIOBase):
    """A read-only view of a file extended with zeros to ``length`` bytes (for h5py's fileobj driver)."""

    def __init__(self, path: Path, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self.real_size = os.fstat(self._fd).st_size
        self.length = max(length, self.real_size)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.length - self._pos))
        real = max(0, min(n, self.real_size - self._pos))
        done = 0
        while done < real:
            data = os.pread(self._fd, real - done, self._pos + done)
            if not data:
                break
            view[done: done + len(data)] = data
            done += len(data)
        view[done:n] = b"\0" * (n - done)
        self._pos += n
        return n

    def read_raw(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def stored_eof(path: Path) -> int:
    """The file length recorded in the HDF5 superblock at offset 0 (0 when it cannot be read)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) < 48 or head[:8] != HDF5_SIGNATURE:
        return 0
    version = head[8]
    if version in (0, 1):
        size, at = head[13], 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        size, at = head[9], 12
    else:
        return 0
    fmt = {4: "<I", 8: "<Q"}.get(size)
    if fmt is None:
        return 0
    at += 2 * size  # base address, free-space (or superblock extension) address, then end of file
    return int(struct.unpack(fmt, head[at: at + size])[0]) if at + size <= len(head) else 0


class _ChunkReader:
    """Decodes storage chunks of one dataset of the damaged file, checking them on the way."""

    def __init__(self, src: h5py.Dataset, raw: _PaddedFile, index: np.ndarray | None, scratch: h5py.File) -> None:
        self.src = src
        self.raw = raw
        self.index = index
        self.name = src.name.lstrip("/")
        self.rows = src.chunks[0] if src.chunks is not None else 0
        self._cache: tuple[int, np.ndarray | None] | None = None
        self._scratch = scratch
        self._dummies: dict[int, h5py.Dataset] = {}

    def _dummy(self, mask: int) -> h5py.Dataset:
        """A one-chunk dataset in the scratch file with the source's filters except those that ``mask``
        says were skipped for a chunk (bit ``i`` set: filter ``i`` not applied, e.g. lzf on a chunk it
        could not shrink). Chunk bytes are written into it raw with mask 0 and decoded, checksum included,
        on read: HDF5 does not decode a raw chunk written with a nonzero mask in the same session."""
        if mask not in self._dummies:
            source = self.src.id.get_create_plist()
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk(self.src.chunks)
            for i in range(source.get_nfilters()):
                if not (mask >> i) & 1:
                    code, flags, values, _ = source.get_filter(i)
                    dcpl.set_filter(code, flags, values)
            space = h5py.h5s.create_simple(self.src.chunks)
            name = f"{self.name}-mask{mask}".encode()
            self._dummies[mask] = h5py.Dataset(h5py.h5d.create(self._scratch.id, name, self.src.id.get_type(),
                                                               space, dcpl=dcpl))
        return self._dummies[mask]

    def _locations(self, chunk: int) -> list[tuple[int, int, int]]:
        found = []
        zeros = (0,) * (self.src.ndim - 1)
        try:
            info = self.src.id.get_chunk_info_by_coord((chunk * self.rows, *zeros))
            if info.byte_offset is not None:
                found.append((int(info.byte_offset), int(info.size), int(info.filter_mask)))
        except (OSError, ValueError, RuntimeError):
            pass  # HDF5's chunk index is damaged or cut off here
        if self.index is not None and self.name in INDEXED_FIELDS:
            slot = index_slot(self.name, chunk)
            if slot < len(self.index):
                entry = tuple(int(v) for v in self.index[slot])
                if entry not in found:
                    found.append(entry)  # type: ignore[arg-type]
        return found

    def chunk(self, chunk: int) -> np.ndarray | None:
        """Rows of storage chunk ``chunk`` (a whole chunk), or None when they cannot be trusted."""
        if self._cache is not None and self._cache[0] == chunk:
            return self._cache[1]
        result = None
        if self.rows and chunk * self.rows < self.src.shape[0]:
            for offset, size, mask in self._locations(chunk):
                if offset <= 0 or size <= 0 or offset + size > self.raw.real_size:
                    continue  # not stored, or (partly) beyond the end of the surviving file
                zeros = (0,) * (self.src.ndim - 1)
                try:
                    dummy = self._dummy(mask)
                    dummy.id.write_direct_chunk((0, *zeros), self.raw.read_raw(offset, size))
                    result = dummy[...]  # goes through the filters: the checksum is verified here
                    break
                except (OSError, ValueError):
                    continue
        self._cache = (chunk, result)
        return result

    def rows_from(self, start: int, stop: int) -> tuple[np.ndarray, int]:
        """``(values, end)``: rows ``start..end - 1`` (``end <= stop``) read intact, stopping at the first
        damaged chunk."""
        parts, at = [], start
        while at < stop:
            chunk = at // self.rows
            values = self.chunk(chunk)
            if values is None:
                break
            take = min(stop, (chunk + 1) * self.rows, self.src.shape[0])
            if take <= at:
                break
            parts.append(values[at - chunk * self.rows: take - chunk * self.rows])
            at = take
        empty = np.zeros((0, *self.src.shape[1:]), dtype=self.src.dtype)
        return (np.concatenate(parts) if parts else empty), at


def repair(path: str | os.PathLike, out: str | os.PathLike) -> RepairReport:
    """Copy every intact committed row of the damaged collection ``path`` into a new collection ``out``.

    Rows are kept from row 0 up to the first row that cannot be read in full (a storage chunk of any
    of its datasets lost to a truncation or failing its checksum); the rest are lost (``collect`` with
    the same arguments regenerates them when continuing ``out``). The new file has the source's
    attributes (menu, graph, seed, ...) plus ``repaired_from``. Works on a healthy file too (a copy).

    Returns:
        a ``RepairReport`` (rows and episodes saved and lost).

    Raises:
        FileNotFoundError: no file at ``path``.
        DatasetError: ``path`` is not a collection or nothing of it can be read; ``out`` exists.
    """
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"no collection file at {path}")
    if out.exists():
        raise DatasetError(f"{out} already exists; give repair a new path for the repaired collection")
    check_writable(out)
    raw = _PaddedFile(path, stored_eof(path))
    try:
        try:
            src = h5py.File(raw, "r")
        except (OSError, ValueError) as err:
            raise DatasetError(f"nothing can be salvaged from {path}: even its HDF5 header is unreadable ({err}); "
                               f"start over with resume=False (causal-wm collect --no-resume)") from err
        with src, h5py.File(f"repair-scratch-{id(raw)}", "w", driver="core", backing_store=False) as scratch:
            return _repair(path, out, src, raw, scratch)
    finally:
        raw.close()


def _repair(path: Path, out: Path, src: h5py.File, raw: _PaddedFile, scratch: h5py.File) -> RepairReport:
    try:
        attrs = dict(src.attrs.items())
    except (OSError, RuntimeError, KeyError) as err:
        raise DatasetError(f"nothing can be salvaged from {path}: its attributes are unreadable ({err}); "
                           f"start over with resume=False (causal-wm collect --no-resume)") from err
    if "schema_version" not in attrs or "committed_length" not in attrs:
        raise DatasetError(f"{path} is not a causal_wm collection (no schema_version / committed_length "
                           f"attributes); repair only salvages collections")
    length = int(attrs.pop("committed_length"))
    episodes = int(attrs.pop("committed_episodes", 0))
    attrs["repaired_from"] = str(path)
    index = _read_index(src)
    readers: dict[str, _ChunkReader] = {}
    for name in (*ROW_FIELDS, *EPISODE_FIELDS):
        try:
            if name in src:
                readers[name] = _ChunkReader(src[name], raw, index, scratch)
        except (OSError, KeyError, RuntimeError, ValueError):
            pass
    row_names = [n for n in ROW_FIELDS if n in readers]
    required = ("obs", "action", "reward", "terminated", "truncated", "regime", "episode", "step")
    if length and (any(n not in readers for n in required) or "reset_obs" not in readers):
        length = 0  # a dataset's header is lost: nothing can be trusted

    Writer.create(out, attrs)
    writer = Writer(out, _FLUSH_ROWS, readers["obs"].src.compression if "obs" in readers else None)
    saved_episodes = 0
    try:
        window = max([readers[n].rows for n in row_names] + [_FLUSH_ROWS]) if length else 1
        at = 0
        while at < length:
            stop = min(length, at + window)
            block: dict[str, Any] = {n: None for n in ROW_FIELDS}
            end = stop
            for name in row_names:
                values, got = readers[name].rows_from(at, stop)
                block[name] = values
                end = min(end, got)
            block = {n: None if v is None else v[: end - at] for n, v in block.items()}
            written, saved_episodes, ok = _write_episodes(writer, block, readers["reset_obs"], saved_episodes)
            at += written
            if not ok or end < stop:
                break
        writer.close()
        return RepairReport(path, out, int(src.attrs["committed_length"]), writer.length, episodes,
                            writer.episodes)
    finally:
        if writer.file.id.valid:
            writer.close()


def _write_episodes(writer: Writer, block: dict[str, Any], reset_obs: _ChunkReader,
                    next_episode: int) -> tuple[int, int, bool]:
    """Append ``block`` (consecutive rows) episode by episode; stops before an episode that does not follow
    the previous one or whose reset observation is lost. ``(rows written, next episode, all written)``."""
    episode = block["episode"]
    count = len(episode)
    if count == 0:
        return 0, next_episode, True
    starts = [0, *(np.flatnonzero(np.diff(episode)) + 1).tolist()]
    bounds = [*starts[1:], count]
    for a, b in zip(starts, bounds, strict=True):
        e = int(episode[a])
        if e == next_episode - 1 and a == 0 and writer.total_episodes:
            pass  # the episode the previous block ended in goes on
        elif e == next_episode:
            frame = None
            if reset_obs.rows:
                values = reset_obs.chunk(e // reset_obs.rows)
                if values is not None and e < reset_obs.src.shape[0]:
                    frame = values[e - (e // reset_obs.rows) * reset_obs.rows]
            if frame is None:
                return a, next_episode, False
            writer.begin_episode(frame)
            next_episode += 1
        else:
            return a, next_episode, False  # rows of an episode out of order: a damaged row
        writer.append_rows({n: None if v is None else v[a:b] for n, v in block.items()})
    return count, next_episode, True


def _read_index(src: h5py.File) -> np.ndarray | None:
    """The ``chunk_index`` of ``src`` with its unreadable parts set to -1, or None (older files)."""
    try:
        if CHUNK_INDEX not in src:
            return None
        ds = src[CHUNK_INDEX]
        out = np.full(ds.shape, -1, dtype=np.int64)
        rows = ds.chunks[0] if ds.chunks is not None else ds.shape[0]
        for first in range(0, ds.shape[0], max(1, rows)):
            try:
                out[first: first + rows] = ds[first: first + rows]
            except OSError:
                pass
        return out
    except (OSError, KeyError, RuntimeError, ValueError):
        return None


__all__ = ["RepairReport", "repair", "stored_eof"]
