"""``collect``: log seeing and acting data from any image gymnasium env into an HDF5 collection.

Episodes are the unit of work and of randomness. Episode ``e`` resets its env with a seed and draws
its policy's random numbers from a stream, both derived from ``(seed, e)`` alone, and rows are written
in episode order whatever lane (sub-environment) ran them. Hence the file's content does not depend on
the number of lanes, on vectorization, or on interruptions: a resumed collection drops a trailing
incomplete episode, replays it from its seed and continues, and ends with the same data as an
uninterrupted run (for the built-in policies and for deterministic user policies).

Two ways to run several environments:

- *lanes*: one process steps a single env or a gymnasium ``VectorEnv`` (``make_vec`` with
  ``vectorization="sync"``, a user's ``SyncVectorEnv``/``AsyncVectorEnv``, or ``"async"`` with a user
  policy), one row per sub-environment and step; ended sub-environments are reset explicitly with
  their next episode's seed, so gymnasium's autoreset pseudo-steps never happen;
- *episode workers* (env id, built-in policy, ``num_envs > 1``, ``vectorization="async"``): each worker
  process runs whole episodes with its own env and hands back blocks of rows, frames through shared
  memory; the parent only writes. The processes and their protocol live in ``causal_wm.data.transport``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import concatenate, create_empty_array
from tqdm.auto import tqdm

from causal_wm.data.dataset import Dataset
from causal_wm.data.format import (
    COMPRESSIONS,
    SCHEMA_VERSION,
    DatasetError,
    Writer,
    check_overwritable,
    check_writable,
    menu_to_json,
    open_for_reading,
    read_rows,
    scm_to_dict,
    to_json,
)
from causal_wm.data.policies import (
    ActingPolicy,
    AgentPolicy,
    BalancedPolicy,
    CallablePolicy,
    MixPolicy,
    Policy,
    SeeingPolicy,
    finite_actions,
    parse_policy,
)

SEEDING = ("episode e: env.reset(seed=int(SeedSequence(seed, spawn_key=(e,)).generate_state(1)[0])); "
           "policy stream default_rng(SeedSequence(seed, spawn_key=(e,)).spawn(1)[0])")
# Attributes that must match to continue a file: they decide what the rows are.
_RESUME_KEYS = ("env_id", "env_kwargs", "seed", "policy", "per_regime", "menu", "regime_source")
VECTORIZATIONS = ("sync", "async")


def episode_seeds(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    """``(env reset seed, policy generator)`` of episode ``episode`` of a collection seeded ``seed``."""
    sequence = np.random.SeedSequence(seed, spawn_key=(episode,))
    env_seed = int(sequence.generate_state(1, dtype=np.uint32)[0])
    return env_seed, np.random.default_rng(sequence.spawn(1)[0])


# --------------------------------------------------------------------------------------------------
# lanes: one interface over a single env and a vector env
# --------------------------------------------------------------------------------------------------
def _lane_info(infos: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The info dict of sub-environment ``i`` from a vector env's batched infos."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        out[key] = _lane_info(value, i) if isinstance(value, Mapping) else value[i]
    return out


class _Lanes:
    """``num`` sub-environments: reset any subset with given seeds, step all of them together."""

    def __init__(self, env: gym.Env | VectorEnv) -> None:
        self.env = env
        self.vector = isinstance(env, VectorEnv)
        self._probe: gym.Env | None = None
        if self.vector:
            self.num = int(env.num_envs)
            self.observation_space = env.single_observation_space
            self.action_space = env.single_action_space
            self.mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
            self._actions = create_empty_array(self.action_space, n=self.num)
        else:
            self.num = 1
            self.observation_space = env.observation_space
            self.action_space = env.action_space

    def _first_env(self) -> gym.Env | None:
        """A sub-environment to read attributes from, without touching the lanes' processes.

        ``AsyncVectorEnv.get_attr`` of a missing attribute raises in the worker and closes the whole
        vector env, so an async env is probed through one extra copy made by its own factory.
        """
        if not self.vector:
            return self.env
        if isinstance(self.env, SyncVectorEnv):
            return self.env.envs[0]
        if self._probe is None and isinstance(self.env, AsyncVectorEnv):
            self._probe = self.env.env_fns[0]()
        return self._probe

    def attr(self, name: str) -> Any:
        """Attribute ``name`` of the (first) unwrapped env, or None."""
        env = self._first_env()
        return None if env is None else getattr(env.unwrapped, name, None)

    @property
    def spec(self) -> Any:
        env = self._first_env()
        return getattr(env, "spec", None) or getattr(self.env, "spec", None)

    def reset(self, lanes: list[int], seeds: list[int]) -> list[tuple[np.ndarray, dict[str, Any]]]:
        if not self.vector:
            obs, info = self.env.reset(seed=seeds[0])
            return [(obs, info)]
        mask = np.zeros(self.num, dtype=np.bool_)
        mask[lanes] = True
        seed_list: list[int | None] = [None] * self.num
        for lane, s in zip(lanes, seeds, strict=True):
            seed_list[lane] = s
        # a masked reset also clears gymnasium's pending next-step autoreset of those lanes, so the
        # reset pseudo-step never happens
        obs, infos = self.env.reset(seed=seed_list, options={"reset_mask": mask})
        return [(obs[lane], _lane_info(infos, lane)) for lane in lanes]

    def step(self, actions: list[Any]) -> list[tuple[np.ndarray, float, bool, bool, dict[str, Any]]]:
        if not self.vector:
            obs, reward, terminated, truncated, info = self.env.step(actions[0])
            return [(obs, float(reward), bool(terminated), bool(truncated), info)]
        batched = concatenate(self.action_space, actions, self._actions)
        obs, rewards, terminated, truncated, infos = self.env.step(batched)
        out = []
        for i in range(self.num):
            done = bool(terminated[i] or truncated[i])
            if done and self.mode == AutoresetMode.SAME_STEP:
                # the env already reset this lane: the step's own outcome sits in final_obs/final_info
                out.append((infos["final_obs"][i], float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                            _lane_info(infos["final_info"], i)))
            else:
                out.append((obs[i], float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                            _lane_info(infos, i)))
        return out

    def close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def close(self) -> None:
        self.close_probe()
        self.env.close()


def _make_lanes(env_or_id: Any, num_envs: int, vectorization: str,
                env_kwargs: Mapping[str, Any]) -> tuple[_Lanes, bool]:
    """The lanes and whether ``collect`` owns (and must close) the environment."""
    if isinstance(env_or_id, str):
        from causal_wm.envs import make

        if num_envs == 1:
            return _Lanes(make(env_or_id, **env_kwargs)), True
        vec = make(env_or_id, vector={"num_envs": num_envs, "vectorization_mode": vectorization,
                                      "vector_kwargs": {"autoreset_mode": AutoresetMode.DISABLED, "copy": False}},
                   **env_kwargs)
        return _Lanes(vec), True
    if env_kwargs:
        raise ValueError("env_kwargs apply only when collect makes the env from an id")
    if isinstance(env_or_id, VectorEnv):
        if num_envs not in (1, env_or_id.num_envs):
            raise ValueError(f"num_envs={num_envs} but the given vector env has {env_or_id.num_envs} envs")
        return _Lanes(env_or_id), False
    if isinstance(env_or_id, gym.Env):
        if num_envs != 1:
            raise ValueError("num_envs > 1 needs an env id (or pass a gymnasium VectorEnv yourself)")
        return _Lanes(env_or_id), False
    raise ValueError(f"env_or_id must be a gymnasium env id, a gymnasium.Env or a VectorEnv, "
                     f"got {type(env_or_id).__name__}")


def _check_image_space(space: gym.Space) -> tuple[int, ...]:
    if (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] in (1, 3, 4)):
        return tuple(int(s) for s in space.shape)
    raise ValueError(f"collect needs image observations: a uint8 Box of shape (H, W, C) with C in "
                     f"(1, 3, 4); this env observes {space}. Wrap it first, e.g. "
                     f"gymnasium.wrappers.AddRenderObservation(env, render_only=True)")


# --------------------------------------------------------------------------------------------------
# regimes
# --------------------------------------------------------------------------------------------------
@dataclass
class _Labeller:
    """Turns one step's action and info into ``(regime, target mask, z)``, checking everything."""

    regime_fn: Callable[[Any], Any] | None
    menu: list[Any] | None
    n: int | None
    has_z: bool | None = None  # decided by the first row (or by the file being continued)
    has_mask: bool | None = None
    _masks: dict[int, np.ndarray] = field(default_factory=dict)  # regime -> mask of its menu entry

    def regime(self, action: Any, info: Mapping[str, Any], where: str) -> int:
        if self.regime_fn is not None:
            regime = _valid_regime(self.regime_fn(action), self.menu, f"regime_fn({action!r}) {where}")
            if "regime" in info:
                labelled = _valid_regime(info["regime"], self.menu, f"info['regime'] {where}")
                if labelled != regime:
                    raise ValueError(f"info['regime'] = {labelled} but regime_fn({action!r}) = {regime} {where}")
            return regime
        if "regime" not in info:
            raise ValueError(f"the env does not label regimes ({where}): put info['regime'] (int, 0 = no "
                             f"intervention) on every step, or pass regime_fn(action) -> int to collect")
        return _valid_regime(info["regime"], self.menu, f"info['regime'] {where}")

    def latents(self, info: Mapping[str, Any], where: str) -> np.ndarray | None:
        z = info.get("z")
        if z is not None and self.n is None:
            self.n = int(np.asarray(z).size)
        if self.has_z is None:
            self.has_z = z is not None
            if self.has_mask is None:
                self.has_mask = self.n is not None and (self.menu is not None or "intervention" in info)
        if not self.has_z:
            return None
        if z is None:
            raise ValueError(f"info['z'] is missing {where} although the collection stores true latents")
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (self.n,):
            raise ValueError(f"info['z'] has shape {z.shape} {where}; expected ({self.n},)")
        return z

    def target_mask(self, regime: int, info: Mapping[str, Any], where: str) -> np.ndarray | None:
        if not self.has_mask:
            return None
        menu = self.menu
        if menu is not None and info.get("intervention", menu[regime]) is menu[regime]:
            # the common case: the env hands out its own menu entries; one mask per regime
            mask = self._masks.get(regime)
            if mask is None:
                mask = self._masks[regime] = self._mask_of(menu[regime], where)
            return mask
        if "intervention" not in info:
            raise ValueError(f"info['intervention'] is missing {where} and the env has no menu")
        intervention = info["intervention"]
        if isinstance(intervention, Mapping):
            from causal_wm.scm import Intervention

            intervention = Intervention.from_dict(dict(intervention))
        return self._mask_of(intervention, where)

    def _mask_of(self, intervention: Any, where: str) -> np.ndarray:
        assert self.n is not None
        mask = np.zeros(self.n, dtype=np.bool_)
        if intervention is not None:
            targets = list(intervention.targets)
            if max(targets) >= self.n:
                raise ValueError(f"intervention {intervention} targets node {max(targets)} but there are "
                                 f"{self.n} latents {where}")
            mask[targets] = True
        return mask


def _valid_regime(value: Any, menu: list[Any] | None, what: str) -> int:
    if type(value) is int and value >= 0 and (menu is None or value < len(menu)):
        return value
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu" or isinstance(value, bool | np.bool_):
        raise ValueError(f"invalid regime {value!r} from {what}: a regime is a non-negative int "
                         f"(0 = observational, k = the k-th menu entry)")
    regime = int(array)
    if regime < 0:
        raise ValueError(f"invalid regime {regime} from {what}: regimes are non-negative")
    if menu is not None and regime >= len(menu):
        raise ValueError(f"invalid regime {regime} from {what}: the env's menu has regimes 0..{len(menu) - 1}")
    return regime


# --------------------------------------------------------------------------------------------------
# the collector
# --------------------------------------------------------------------------------------------------
@dataclass
class _Episode:
    reset_obs: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def collect(env_or_id: str | gym.Env | VectorEnv, steps: int | None, path: str | os.PathLike, *,
            policy: Any = "acting", regime_fn: Callable[[Any], int] | None = None, num_envs: int = 1,
            vectorization: str = "sync", per_regime: int | None = None, seed: int = 0, resume: bool = True,
            progress: bool = True, env_kwargs: Mapping[str, Any] | None = None, chunk_size: int = 1024,
            compression: str | None = "lzf", overwrite: bool = False) -> Dataset:
    """Collect ``steps`` environment steps into the HDF5 file ``path`` and open it as a ``Dataset``.

    Args:
        env_or_id: a registered env id (made here, with ``env_kwargs``), a ``gymnasium.Env`` or a
            ``gymnasium.vector.VectorEnv``. Observations must be uint8 images ``(H, W, C)``.
        steps: rows to collect (``> 0``); may be None with ``policy="balanced"`` (then
            ``per_regime * number of regimes``).
        path: the collection file (created, or continued when ``resume``).
        policy: ``"seeing"``, ``"acting"`` (uniform over the whole menu, regime 0 included),
            ``"mix:p"`` or a float ``p`` (seeing with probability ``p``, else uniform over the
            interventions), ``"balanced"`` (exactly ``per_regime`` rows of every regime), a callable
            ``obs -> action`` or a stable-baselines3 model. See ``causal_wm.data.policies``.
        regime_fn: ``action -> regime`` for envs that do not put ``info["regime"]`` on their steps;
            when both exist they must agree.
        num_envs: sub-environments run in parallel (env ids only; or pass a VectorEnv).
        vectorization: ``"sync"`` (one process) or ``"async"`` (one process per sub-environment: episode
            workers for the built-in policies, a gymnasium ``AsyncVectorEnv`` for user policies).
        per_regime: rows per regime for ``policy="balanced"``.
        seed: the collection seed; episode ``e`` is seeded from ``(seed, e)``.
        resume: continue an existing file at ``path`` (it must come from the same env, seed and
            policy) up to ``steps`` rows; ``False`` starts over, replacing it (a causal_wm collection,
            or an HDF5 file too damaged to open; anything else only with ``overwrite=True``).
        progress: show a tqdm progress bar.
        env_kwargs: keyword arguments of ``gymnasium.make`` when ``env_or_id`` is an id.
        chunk_size: rows buffered in memory and written (and committed) together.
        compression: lossless HDF5 compression of the images (``obs``): ``"lzf"`` (the default: fast,
            about 10x smaller for the built-in scenes), ``"gzip"`` (smaller still, slower) or ``None``
            (uncompressed). A continued file keeps the compression it was created with, so files
            written uncompressed by older versions resume as they are.
        overwrite: with ``resume=False``, also replace a file at ``path`` that is not a causal_wm
            collection (without it such a file is refused, so that no other data is lost by mistake).

    Returns:
        the collection opened read-only.

    Raises:
        ValueError: bad arguments, an env without image observations, an invalid regime, an
            unwritable path; ``DatasetError`` (a ``ValueError``) for a truncated or corrupt file, or one
            collected with other settings; ``ValueError`` for ``resume=False`` over a file that is not
            a collection, without ``overwrite=True``.
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps <= 0):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    kind, seeing_fraction = parse_policy(policy)
    if kind == "balanced":
        if per_regime is None or isinstance(per_regime, bool) or not isinstance(per_regime, int | np.integer) \
                or per_regime <= 0:
            raise ValueError(f"policy='balanced' needs per_regime, a positive int; got {per_regime!r}")
    elif per_regime is not None:
        raise ValueError(f"per_regime applies to policy='balanced' only (policy is {policy!r})")
    elif steps is None:
        raise ValueError("steps must be a positive int (it may be None only with policy='balanced')")
    if regime_fn is not None and not callable(regime_fn):
        raise ValueError("regime_fn must be a callable action -> int")
    path = Path(path)
    check_writable(path)
    if not resume and not overwrite:
        check_overwritable(path)

    env_kwargs = dict(env_kwargs or {})
    # Built-in policies with an env id run whole episodes in worker processes (one message per block of
    # rows instead of one per step); user policies step a gymnasium AsyncVectorEnv from this process.
    workers = int(num_envs) if (isinstance(env_or_id, str) and num_envs > 1 and vectorization == "async"
                                and kind not in ("callable", "model")) else 0
    if workers:
        lanes, owned = _make_lanes(env_or_id, 1, "sync", env_kwargs)  # metadata only
    else:
        lanes, owned = _make_lanes(env_or_id, int(num_envs), vectorization, env_kwargs)
    try:
        return _collect(lanes, kind, seeing_fraction, policy, regime_fn, steps, per_regime, path, int(seed),
                        resume, progress, int(chunk_size), compression, workers, env_kwargs)
    finally:
        if owned:
            lanes.close()
        else:
            lanes.close_probe()


def _collect(lanes: _Lanes, kind: str, seeing_fraction: float | None, policy_arg: Any,
             regime_fn: Callable[[Any], Any] | None, steps: int | None, per_regime: int | None, path: Path,
             seed: int, resume: bool, progress: bool, chunk_size: int, compression: str | None,
             workers: int, env_kwargs: dict[str, Any]) -> Dataset:
    obs_shape = _check_image_space(lanes.observation_space)
    menu = lanes.attr("interventions")
    menu = list(menu) if menu is not None else None
    action_list = finite_actions(lanes.action_space)
    if menu is not None and (action_list is None or len(action_list) != len(menu)):
        menu_actions = None  # the menu does not line up with the actions: rely on the labels only
    else:
        menu_actions = menu
    graph = lanes.attr("graph")
    graph = None if graph is None else np.asarray(graph).astype(np.int8)
    scm = lanes.attr("scm")
    spec = lanes.spec
    max_episode_steps = getattr(spec, "max_episode_steps", None)
    env_id = getattr(spec, "id", None) or type(getattr(lanes.env, "unwrapped", lanes.env)).__name__
    lanes.close_probe()

    # which action gives which regime, when that is known before stepping
    action_regime: dict[Any, int] | None = None
    if action_list is not None and regime_fn is not None:
        action_regime = {a: _valid_regime(regime_fn(a), menu, f"regime_fn({a!r})") for a in action_list}
    elif action_list is not None and menu_actions is not None:
        action_regime = {a: i for i, a in enumerate(action_list)}
    regime_source = "regime_fn" if regime_fn is not None else "info"

    policy = _make_policy(kind, seeing_fraction, policy_arg, lanes, action_list, action_regime)
    n = None if graph is None else int(graph.shape[0])
    if n is None and menu is not None:
        n = max((max(iv.targets) + 1 for iv in menu if iv is not None), default=None)
    labeller = _Labeller(regime_fn, menu, n)

    if kind == "balanced":
        assert per_regime is not None
        if action_regime is None:
            raise ValueError("policy='balanced' needs a Discrete action space whose regimes are known before "
                             "stepping: an env with an intervention menu, or pass regime_fn")
        regime_actions: dict[int, Any] = {}
        for a, r in action_regime.items():
            regime_actions.setdefault(r, a)
        target = int(per_regime) * len(regime_actions)
        if steps is not None and int(steps) != target:
            raise ValueError(f"steps={steps} but balanced collection of {per_regime} rows for each of "
                             f"{len(regime_actions)} regimes gives {target}; pass steps=None")
        policy = BalancedPolicy(lanes.num, regime_actions, int(per_regime), max_episode_steps, {})
    else:
        assert steps is not None
        target = int(steps)

    from causal_wm import __version__

    spec_kwargs = dict(getattr(spec, "kwargs", None) or {})
    attrs = {
        "schema_version": SCHEMA_VERSION, "package_version": __version__, "env_id": str(env_id),
        "env_kwargs": to_json(spec_kwargs), "menu": menu_to_json(menu), "graph": graph,
        "scm": None if scm is None else to_json(scm_to_dict(scm)), "seed": seed, "seeding": SEEDING,
        "policy": policy.description, "per_regime": -1 if per_regime is None else int(per_regime),
        "regime_source": regime_source,
        "max_episode_steps": -1 if max_episode_steps is None else int(max_episode_steps),
    }
    state = _resume_state(path, attrs, resume, target)
    if state == "complete":
        return Dataset(path)
    planned = action_regime if isinstance(policy, BalancedPolicy) else None
    pool = None
    if workers:
        # the transport imports this module's row helpers: import it here, where it is chosen
        from causal_wm.data.transport import _EpisodeWorkers, _run_workers

        # workers start before the file is opened: forked children must not inherit its descriptor and lock
        pool = _EpisodeWorkers(workers, env_id, env_kwargs, policy, labeller, seed, planned, obs_shape)
    writer: Writer | None = None
    bar = None
    try:
        writer = _open_writer(path, attrs, state, chunk_size, compression)
        bar = tqdm(total=target, initial=writer.total, disable=not progress, unit="frame", desc="collect",
                   dynamic_ncols=True)
        async_lanes = isinstance(lanes.env, AsyncVectorEnv)
        writer.set_attrs(target_length=target, num_envs=workers or lanes.num,
                         vectorization="async" if workers or async_lanes else "sync")
        if "z" in writer.file:
            labeller.has_z = True
        if "target_mask" in writer.file:
            labeller.has_mask = True
        elif writer.length:
            labeller.has_mask = False
        if pool is not None:
            _run_workers(pool, policy, writer, target, bar)
        else:
            if isinstance(policy, BalancedPolicy):
                policy.counts = writer.regime_counts  # live: the writer counts every row it takes
            _run_lanes(lanes, policy, labeller, writer, target, seed, planned, bar)
    finally:
        # on any exit, Ctrl-C included, the rows collected so far are written and committed
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.close()
        if writer is not None:
            writer.close()
    return Dataset(path)


def _make_policy(kind: str, seeing_fraction: float | None, policy_arg: Any, lanes: _Lanes,
                 action_list: list[Any] | None, action_regime: dict[Any, int] | None) -> Policy:
    if kind == "callable":
        return CallablePolicy(policy_arg)
    if kind == "model":
        return AgentPolicy(policy_arg)
    if kind == "acting":
        return ActingPolicy(lanes.num, action_list, lanes.action_space)
    if kind == "balanced":
        return Policy()  # replaced by a BalancedPolicy once the regimes are known
    if action_regime is None:
        raise ValueError(f"policy {kind!r} needs to know which action leaves the env unintervened: use an env "
                         f"with an intervention menu and Discrete actions, or pass regime_fn")
    seeing_actions = [a for a, r in action_regime.items() if r == 0]
    if not seeing_actions:
        raise ValueError(f"policy {kind!r}: no action gives regime 0 (no intervention)")
    if kind == "seeing":
        return SeeingPolicy(seeing_actions[0])
    assert seeing_fraction is not None
    acting = [a for a, r in action_regime.items() if r != 0]
    return MixPolicy(lanes.num, seeing_fraction, seeing_actions[0], acting)


def _resume_state(path: Path, attrs: dict[str, Any], resume: bool, target: int) -> str:
    """``"new"`` (write a fresh file), ``"continue"`` or ``"complete"``; checks a file to be continued
    read-only, so a complete one is left untouched."""
    if not (resume and path.exists()):
        return "new"
    with open_for_reading(path) as handle:
        for key in _RESUME_KEYS:
            old, new = _plain(handle.attrs.get(key)), attrs.get(key)
            if key in ("env_kwargs", "menu") and old is not None:
                old, new = json.loads(old), None if new is None else json.loads(new)
            if old != new:
                raise DatasetError(f"cannot resume {path}: it was collected with {key}={old!r}, now "
                                   f"{key}={new!r}; pass resume=False to start over (replacing it) or choose "
                                   f"another path")
        length = int(handle.attrs["committed_length"])
    if length > target:
        raise DatasetError(f"{path} already holds {length} rows, more than the {target} requested")
    return "complete" if length == target else "continue"


def _open_writer(path: Path, attrs: dict[str, Any], state: str, chunk_size: int,
                 compression: str | None) -> Writer:
    """A writer positioned after the last complete episode of ``path``."""
    if state == "new":
        Writer.create(path, attrs)
        return Writer(path, chunk_size, compression)
    writer = Writer(path, chunk_size, compression)
    try:
        if writer.episodes:
            last = writer.length - 1
            ended = last < 0 or bool(read_rows(writer.file["terminated"], last, path)
                                     or read_rows(writer.file["truncated"], last, path))
            if not ended:  # a trailing episode that did not end is replayed from its seed
                start = int(read_rows(writer.file["episode_start"], writer.episodes - 1, path))
                writer.truncate(start, writer.episodes - 1)
    except Exception:
        writer.file.close()
        raise
    return writer


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _InOrder:
    """Hands rows to the writer in episode order, whatever order the lanes or workers produce them.

    Rows of the head episode (the next one in file order) go straight to the writer; rows of later
    episodes wait in memory until every earlier episode has ended.
    """

    def __init__(self, writer: Writer, target: int) -> None:
        self.writer = writer
        self.target = target
        self.head = writer.total_episodes
        self.episodes: dict[int, _Episode] = {}
        self._head_begun = False

    @property
    def full(self) -> bool:
        return self.writer.total >= self.target

    def begin(self, episode: int, reset_obs: np.ndarray) -> None:
        self.episodes[episode] = _Episode(np.array(reset_obs, dtype=np.uint8, copy=True))

    def _begin_head(self) -> None:
        if not self._head_begun:
            self.writer.begin_episode(self.episodes[self.head].reset_obs)
            self._head_begun = True

    def add_row(self, episode: int, row: dict[str, Any]) -> None:
        if episode == self.head:
            if not self.full:
                self._begin_head()
                self.writer.append_row(row)
        else:
            row["obs"] = np.array(row["obs"], dtype=np.uint8, copy=True)
            self.episodes[episode].rows.append(row)

    def add_block(self, episode: int, block: dict[str, Any]) -> None:
        if episode == self.head:
            self._write_block(block)
        else:
            self.episodes[episode].blocks.append(block)

    def _write_block(self, block: dict[str, Any]) -> None:
        room = self.target - self.writer.total
        if room <= 0:
            return
        self._begin_head()
        if len(block["regime"]) > room:
            block = {name: None if value is None else value[:room] for name, value in block.items()}
        self.writer.append_rows(block)

    def end(self, episode: int) -> None:
        """Episode ``episode`` ended; move the head past every ended episode, writing what waited."""
        self.episodes[episode].done = True
        while not self.full and self.head in self.episodes and self.episodes[self.head].done:
            del self.episodes[self.head]
            self.head += 1
            self._head_begun = False
            waiting = self.episodes.get(self.head)
            if waiting is not None:
                for row in waiting.rows:
                    if self.full:
                        break
                    self._begin_head()
                    self.writer.append_row(row)
                for block in waiting.blocks:
                    self._write_block(block)
                waiting.rows.clear()
                waiting.blocks.clear()


def _next_episode_allowed(balanced: BalancedPolicy | None, episode: int, order: _InOrder, busy: bool) -> bool:
    """Quota episodes of a balanced run start one at a time, after every earlier episode is written."""
    if balanced is None or balanced.is_free(episode):
        return True
    return episode == order.head and not busy


def _balanced_full(balanced: BalancedPolicy | None, writer: Writer) -> bool:
    return balanced is not None and all(writer.regime_counts.get(r, 0) >= balanced.per_regime
                                        for r in balanced.regimes)


def _run_lanes(lanes: _Lanes, policy: Policy, labeller: _Labeller, writer: Writer, target: int, seed: int,
               planned: dict[Any, int] | None, bar: Any) -> None:
    """Step all lanes together (a single env or a VectorEnv), one row per lane and step."""
    k = lanes.num
    balanced = policy if isinstance(policy, BalancedPolicy) else None
    action_list = finite_actions(lanes.action_space)
    filler_action = action_list[0] if action_list is not None else lanes.action_space.sample()
    lane_episode: list[int | None] = [None] * k
    lane_obs: list[np.ndarray | None] = [None] * k
    lane_step = [0] * k
    needs_reset = [True] * k
    order = _InOrder(writer, target)
    next_episode = order.head
    while not order.full and not _balanced_full(balanced, writer):
        for lane in range(k):
            if lane_episode[lane] is None and _next_episode_allowed(
                    balanced, next_episode, order, any(e is not None for e in lane_episode)):
                lane_episode[lane] = next_episode
                next_episode += 1
                needs_reset[lane] = True
        resets = [lane for lane in range(k) if needs_reset[lane]]
        if resets:
            seeds, rngs = [], {}
            for lane in resets:
                e = lane_episode[lane]
                if e is None:
                    seeds.append(0)  # an idle lane (balanced quota phase): its output is never used
                else:
                    env_seed, rngs[lane] = episode_seeds(seed, e)
                    seeds.append(env_seed)
            for lane, (obs, _info) in zip(resets, lanes.reset(resets, seeds), strict=True):
                needs_reset[lane] = False
                e = lane_episode[lane]
                if e is not None:
                    lane_obs[lane], lane_step[lane] = obs, 0
                    order.begin(e, obs)
                    policy.start(lane, e, rngs[lane])
        actions = [filler_action if lane_episode[lane] is None
                   else _check_action(policy.act(lane, lane_obs[lane], lane_step[lane]), lanes.action_space)
                   for lane in range(k)]
        for lane, (obs, reward, terminated, truncated, info) in enumerate(lanes.step(actions)):
            e = lane_episode[lane]
            if e is None:
                needs_reset[lane] = needs_reset[lane] or terminated or truncated
                continue
            row = _make_row(labeller, actions[lane], obs, reward, terminated, truncated, info, e, lane_step[lane],
                            planned)
            order.add_row(e, row)
            lane_obs[lane] = obs
            lane_step[lane] += 1
            if terminated or truncated:
                lane_episode[lane] = None
                needs_reset[lane] = True
                order.end(e)
        bar.update(writer.total - bar.n)


def _make_row(labeller: _Labeller, action: Any, obs: np.ndarray, reward: float, terminated: bool,
              truncated: bool, info: Mapping[str, Any], episode: int, step: int,
              planned: dict[Any, int] | None) -> dict[str, Any]:
    """One row of the file; ``planned`` (balanced runs) maps actions to the regime they must give."""
    where = f"at episode {episode}, step {step}"
    regime = labeller.regime(action, info, where)
    if planned is not None and planned[action] != regime:
        raise ValueError(f"balanced collection planned regime {planned[action]} but the env reported regime "
                         f"{regime} {where}")
    z = labeller.latents(info, where)
    return {"obs": obs, "action": action, "reward": reward, "terminated": terminated, "truncated": truncated,
            "regime": regime, "episode": episode, "step": step, "z": z,
            "target_mask": labeller.target_mask(regime, info, where)}


def _check_action(action: Any, space: gym.Space) -> Any:
    if isinstance(space, spaces.Discrete):
        if type(action) is int and space.start <= action < space.start + space.n:
            return action
        array = np.asarray(action)
        if array.size != 1 or array.dtype.kind not in "iu":
            raise ValueError(f"the policy returned {action!r}; this env needs one integer action")
        action = int(array.reshape(-1)[0])
    if not space.contains(action):
        raise ValueError(f"the policy returned {action!r}, outside the action space {space}")
    return action


__all__ = ["collect", "episode_seeds"]
