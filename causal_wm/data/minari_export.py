"""Export of a collection to Minari (optional extra: ``pip install causal-wm[minari]``).

Minari episodes hold ``T + 1`` observations (the reset observation first) and ``T`` actions, rewards,
terminations and truncations; the collection keeps reset observations per episode, so the export is
exact. Observations are written as raw uint8 arrays: no image codec, nothing lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def episode_buffers(dataset: Any) -> list[dict[str, Any]]:
    """One Minari episode (as a dict of ``EpisodeBuffer`` fields) per episode of ``dataset``;
    observations ``(T + 1, H, W, C)`` uint8."""
    buffers = []
    episode = dataset.episode
    boundaries = np.flatnonzero(np.diff(episode)) + 1
    begin = np.concatenate([[0], boundaries]).astype(np.int64)
    end = np.concatenate([boundaries, [len(dataset)]]).astype(np.int64)
    handle = dataset._handle()
    for b, e in zip(begin, end, strict=True):
        index = int(episode[b])
        rows = np.arange(b, e)
        observations = np.concatenate([dataset.reset_observations([index]), dataset.observations(rows)])
        buffers.append({
            "id": len(buffers),
            "observations": observations,
            "actions": dataset.actions(rows),
            "rewards": dataset.rewards(rows),
            "terminations": handle["terminated"][b:e],
            "truncations": handle["truncated"][b:e],
        })
    return buffers


def to_minari(dataset: Any, dataset_id: str, **kwargs: Any) -> Any:
    """Create the Minari dataset ``dataset_id`` from ``dataset`` (episodes are built in memory)."""
    try:
        import minari
    except ImportError as err:
        raise ImportError("to_minari needs the optional extra minari: pip install 'causal-wm[minari]'") from err
    import gymnasium as gym

    handle = dataset._handle()
    obs_space = gym.spaces.Box(0, 255, tuple(dataset.obs_shape), dtype=np.uint8)
    action_shape = tuple(handle["action"].shape[1:])
    if handle["action"].dtype.kind in "iu" and action_shape == ():
        menu = dataset.menu
        n = len(menu) if menu is not None else int(handle["action"][: len(dataset)].max()) + 1
        action_space: gym.Space = gym.spaces.Discrete(n)
    else:
        action_space = gym.spaces.Box(-np.inf, np.inf, action_shape, dtype=handle["action"].dtype)
    kwargs.setdefault("observation_space", obs_space)
    kwargs.setdefault("action_space", action_space)
    kwargs.setdefault("algorithm_name", f"causal_wm.collect ({dataset.attrs.get('policy', '')})")
    # Minari stores image observations as JPEG by default: lossy, so switched off here.
    kwargs.setdefault("jpeg_encoding", False)
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(**episode) for episode in episode_buffers(dataset)]
    return minari.create_dataset_from_buffers(dataset_id, buffers, **kwargs)
