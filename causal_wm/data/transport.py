"""The process transport of ``collect``: episode workers, one process per env, running whole episodes.

``collect`` uses it for an env id with a built-in policy, ``num_envs > 1`` and ``vectorization="async"``.
Each worker makes its own env from the id and runs whole episodes of the collection's seeding, so one
message carries a block of rows instead of one message per step; the parent only schedules episodes
and writes.

Start. The parent cloudpickles ``(env_id, env_kwargs, policy, labeller, seed, planned, obs_shape)`` once
and starts ``num`` daemon processes (the ``fork`` start method where the platform has it, else
``spawn``; the entry point ``_worker_main`` is importable as ``causal_wm.data.transport._worker_main``).
Each worker gets a duplex pipe and a shared-memory block of ``_SLOTS`` frame slots of ``_BLOCK_ROWS``
frames each. ``collect`` starts the workers before it opens the file, so forked children never inherit
the HDF5 descriptor and its lock.

Messages, parent to worker (through the pipe):

- ``(episode, counts)``: run episode ``episode``; ``counts`` is a snapshot of the file's regime counts
  for a quota episode of a balanced run (the worker then ends the episode as soon as every regime has
  its quota), else ``None``;
- ``("ack", slot)``: the parent has copied the frames of ``slot`` out; the worker may fill it again;
- ``None``: stop.

Messages, worker to parent:

- ``("rows", episode, reset_obs, block, slot, ended)``: up to ``_BLOCK_ROWS`` consecutive rows of
  ``episode``. ``block`` holds every field but the frames, stacked into arrays; the frames lie in shared
  slot ``slot`` (a pipe would move them in 64 KiB pieces, each a context switch). ``reset_obs`` (the
  reset frame, pickled) comes with the first message of an episode only, else ``None``; the last message
  of an episode has ``ended=True``. A worker fills one slot while the parent copies the other out, and
  waits for an acknowledgement when both are taken;
- ``("error", name, text, traceback)``: the worker raised; it stops after sending this.

Assignment. ``_run_workers`` hands episode numbers out in increasing order, one at a time to each idle
worker, and a worker runs one episode at a time. Episodes may end out of order: the collector's
``_InOrder`` writes the head episode's rows as they come and keeps later episodes' rows in memory until
every earlier episode has ended, so the file is the same whatever the number of workers. Quota
episodes of a balanced run start one at a time, only once every earlier episode is written.

Failures. A worker's exception reaches the parent as an ``"error"`` message and is raised there: a
``ValueError`` (``DatasetError`` included) as a ``ValueError`` with the worker's message, anything else
as a ``RuntimeError`` with the worker's traceback. A worker that dies without a word (killed, crashed)
closes its pipe; the parent reads end-of-file and raises ``RuntimeError("collector worker i died
(exit code c)")``. Nothing is retried: ``collect`` commits the rows written so far and closes the
workers, and a resumed collection replays the unfinished episode from its seed. ``close`` sends
``None`` to idle workers, terminates busy ones (their episodes are no longer needed), kills any still
alive after five seconds and unlinks the shared memory.

Dying with the parent. A worker ignores SIGINT (Ctrl-C is the parent's to handle) and, on Linux, asks
the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), then checks that the parent
did not die before the request took effect; so a SIGKILLed collector leaves no orphans. Workers are
daemons, so a parent that exits normally terminates them too. A worker leaves through ``os._exit``,
skipping atexit handlers inherited through fork (e.g. HDF5 closing the parent's files).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from causal_wm.data.collector import (
    _balanced_full,
    _check_action,
    _InOrder,
    _Labeller,
    _make_row,
    _next_episode_allowed,
    episode_seeds,
)
from causal_wm.data.format import Writer
from causal_wm.data.policies import BalancedPolicy, Policy

_BLOCK_ROWS = 256
_SLOTS = 2  # frame blocks per worker: it fills one while the parent copies the other out


def _stack_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: None if rows[0][name] is None else np.stack([np.asarray(r[name]) for r in rows])
            for name in rows[0]}


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker when its parent dies (a SIGKILLed collector leaves no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


class _WorkerInbox:
    """The worker's end of the pipe: slot acknowledgements are absorbed, other messages queued."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.free = list(range(_SLOTS))
        self.pending: list[Any] = []

    def _pump(self) -> None:
        message = self.conn.recv()
        if isinstance(message, tuple) and message[0] == "ack":
            self.free.append(message[1])
        else:
            self.pending.append(message)

    def next_command(self) -> Any:
        while not self.pending:
            self._pump()
        return self.pending.pop(0)

    def take_slot(self) -> int:
        while not self.free:
            self._pump()
        return self.free.pop()


def _worker_main(conn: Any, payload: bytes, frames: Any, parent_pid: int) -> None:
    """Run episodes on request.

    Receives ``(episode, counts)`` (``None`` stops the worker) and answers with messages
    ``("rows", episode, reset_obs or None, block, slot, ended)``: ``block`` holds every field but the
    frames, which are in shared-memory slot ``slot`` (the parent acknowledges each slot once it has
    copied the frames out); the last message of an episode has ``ended=True``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent_pid)
    try:
        import cloudpickle

        env_id, env_kwargs, policy, labeller, seed, planned, obs_shape = cloudpickle.loads(payload)
        slots = np.ndarray((_SLOTS, _BLOCK_ROWS, *obs_shape), dtype=np.uint8, buffer=frames.buf)
        env = gym.make(env_id, **env_kwargs)
        inbox = _WorkerInbox(conn)
        balanced = policy if isinstance(policy, BalancedPolicy) else None
        while True:
            message = inbox.next_command()
            if message is None:
                break
            episode, counts = message
            env_seed, rng = episode_seeds(seed, episode)
            obs, _ = env.reset(seed=env_seed)
            reset_obs: np.ndarray | None = obs
            policy.start(0, episode, rng)
            if balanced is not None and counts is not None:
                balanced.counts = dict(counts)
            rows: list[dict[str, Any]] = []
            slot = inbox.take_slot()
            step = 0
            while True:
                action = _check_action(policy.act(0, obs, step), env.action_space)
                obs, reward, terminated, truncated, info = env.step(action)
                row = _make_row(labeller, action, obs, float(reward), bool(terminated), bool(truncated), info,
                                episode, step, planned)
                slots[slot, len(rows)] = obs
                row["obs"] = None
                rows.append(row)
                step += 1
                ended = bool(terminated or truncated)
                if balanced is not None and counts is not None:
                    regime = row["regime"]
                    balanced.counts[regime] = balanced.counts.get(regime, 0) + 1
                    ended = ended or all(balanced.counts.get(r, 0) >= balanced.per_regime for r in balanced.regimes)
                if ended or len(rows) == _BLOCK_ROWS:
                    conn.send(("rows", episode, reset_obs, _stack_rows(rows), slot, ended))
                    rows, reset_obs = [], None
                    if ended:
                        break
                    slot = inbox.take_slot()
        env.close()
    except Exception as err:  # reported to the parent, which raises it
        try:
            conn.send(("error", type(err).__name__, str(err), traceback.format_exc()))
        except Exception:
            pass
    finally:
        conn.close()
        os._exit(0)  # skip atexit handlers inherited by fork (e.g. HDF5 closing the parent's files)


class _EpisodeWorkers:
    """``num`` processes, each with its own env made from ``env_id``, running whole episodes.

    Frames travel through shared memory (a pipe moves megabytes in 64 KiB pieces, each a context
    switch); everything else is pickled through the pipe.
    """

    def __init__(self, num: int, env_id: str, env_kwargs: Mapping[str, Any], policy: Policy,
                 labeller: _Labeller, seed: int, planned: dict[Any, int] | None,
                 obs_shape: tuple[int, ...]) -> None:
        import multiprocessing as mp
        from multiprocessing import shared_memory

        import cloudpickle

        methods = mp.get_all_start_methods()
        context = mp.get_context("fork" if "fork" in methods else "spawn")
        payload = cloudpickle.dumps((env_id, dict(env_kwargs), policy, labeller, seed, planned, obs_shape))
        slot_bytes = _BLOCK_ROWS * int(np.prod(obs_shape))
        self.conns, self.procs, self.frames, self.slots = [], [], [], []
        self.busy: set[int] = set()
        for _ in range(num):
            frames = shared_memory.SharedMemory(create=True, size=_SLOTS * slot_bytes)
            parent, child = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child, payload, frames, os.getpid()), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
            self.frames.append(frames)
            self.slots.append(np.ndarray((_SLOTS, _BLOCK_ROWS, *obs_shape), dtype=np.uint8, buffer=frames.buf))

    @property
    def num(self) -> int:
        return len(self.conns)

    def start(self, worker: int, episode: int, counts: dict[int, int] | None) -> None:
        self.conns[worker].send((episode, counts))
        self.busy.add(worker)

    def receive(self) -> list[tuple[int, tuple[Any, ...]]]:
        """``(worker, (episode, reset_obs, block, ended))`` for every message waiting; frames are copied
        out of shared memory into ``block["obs"]`` and their slot handed back."""
        from multiprocessing.connection import wait

        out = []
        for conn in wait(self.conns):
            worker = self.conns.index(conn)
            try:
                message = conn.recv()
            except EOFError:
                code = self.procs[worker].exitcode
                raise RuntimeError(f"collector worker {worker} died (exit code {code})") from None
            if message[0] == "error":
                _, name, text, trace = message
                if name in ("ValueError", "DatasetError"):
                    raise ValueError(text)
                raise RuntimeError(f"collector worker {worker} failed with {name}: {text}\n{trace}")
            _, episode, reset_obs, block, slot, ended = message
            block["obs"] = self.slots[worker][slot, : len(block["regime"])].copy()
            conn.send(("ack", slot))
            if ended:
                self.busy.discard(worker)
            out.append((worker, (episode, reset_obs, block, ended)))
        return out

    def close(self) -> None:
        """Stop idle workers and terminate busy ones (their episodes are no longer needed)."""
        for worker, (conn, proc) in enumerate(zip(self.conns, self.procs, strict=True)):
            if worker in self.busy:
                proc.terminate()
            else:
                try:
                    conn.send(None)
                except OSError:
                    proc.terminate()
        for conn, proc, frames in zip(self.conns, self.procs, self.frames, strict=True):
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
            frames.close()
            frames.unlink()
        self.slots.clear()


def _run_workers(workers: _EpisodeWorkers, policy: Policy, writer: Writer, target: int, bar: Any) -> None:
    balanced = policy if isinstance(policy, BalancedPolicy) else None
    busy: list[int | None] = [None] * workers.num
    order = _InOrder(writer, target)
    next_episode = order.head
    while not order.full and not _balanced_full(balanced, writer):
        for worker in range(workers.num):
            if busy[worker] is None and _next_episode_allowed(balanced, next_episode, order,
                                                               any(e is not None for e in busy)):
                quota = balanced is not None and not balanced.is_free(next_episode)
                workers.start(worker, next_episode, dict(writer.regime_counts) if quota else None)
                busy[worker] = next_episode
                next_episode += 1
        for worker, (episode, reset_obs, block, ended) in workers.receive():
            if reset_obs is not None:
                order.begin(episode, reset_obs)
            order.add_block(episode, block)
            if ended:
                busy[worker] = None
                order.end(episode)
        bar.update(writer.total - bar.n)
