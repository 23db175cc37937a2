"""causal_wm: causal world models for reinforcement learning.

Importing the package registers the causal scene environments with gymnasium
(``causal_wm/Balls-v0``, ``causal_wm/Shadow-v0``).

    import gymnasium as gym, causal_wm
    env = gym.make("causal_wm/Balls-v0")
    ds = causal_wm.collect(env, steps=10_000, path="balls.h5")
    model = causal_wm.CausalWorldModel.fit(ds)
"""

from causal_wm import scm
from causal_wm._version import __version__
from causal_wm.envs import register_envs as _register_envs
from causal_wm.scm import SCM, Intervention

_register_envs()


def __getattr__(name: str):
    # The collector and the world model pull in h5py and torch: import them on first use so that
    # `import causal_wm` stays light.
    if name in ("collect", "Dataset"):
        from causal_wm import data

        return getattr(data, name)
    if name == "CausalWorldModel":
        from causal_wm.world_model import CausalWorldModel

        return CausalWorldModel
    raise AttributeError(f"module 'causal_wm' has no attribute {name!r}")


__all__ = ["SCM", "CausalWorldModel", "Dataset", "Intervention", "__version__", "collect", "scm"]
