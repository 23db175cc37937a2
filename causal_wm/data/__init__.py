"""Seeing and acting data: the collector, the on-disk collection format (HDF5) and its dataset.

    ds = causal_wm.data.collect("causal_wm/Balls-v0", steps=10_000, path="balls.h5")
    ds.by_regime()                       # regime -> row indices
    for batch in ds.batches(256):        # float32 (B, C, H, W) in [0, 1], regimes, row indices
        ...
"""

from causal_wm.data.collector import collect, episode_seeds
from causal_wm.data.dataset import Dataset
from causal_wm.data.format import SCHEMA_VERSION, DatasetError
from causal_wm.data.policies import (
    ActingPolicy,
    AgentPolicy,
    BalancedPolicy,
    CallablePolicy,
    MixPolicy,
    Policy,
    SeeingPolicy,
)
from causal_wm.data.repair import RepairReport, repair

__all__ = [
    "SCHEMA_VERSION",
    "ActingPolicy",
    "AgentPolicy",
    "BalancedPolicy",
    "CallablePolicy",
    "Dataset",
    "DatasetError",
    "MixPolicy",
    "Policy",
    "RepairReport",
    "SeeingPolicy",
    "collect",
    "episode_seeds",
    "repair",
]
