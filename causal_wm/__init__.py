"""causal_wm: causal world models for reinforcement learning.

Importing the package registers the causal scene environments with gymnasium
(``causal_wm/Balls-v0`` and friends).
"""

__version__ = "0.1.0"

from causal_wm import scm
from causal_wm.scm import SCM, Intervention

try:  # envs are installed as causal_wm.envs; registering them needs only gymnasium
    from causal_wm.envs import register_envs as _register_envs
except ImportError:  # pragma: no cover - envs package not yet present
    _register_envs = None
if _register_envs is not None:
    _register_envs()

__all__ = ["SCM", "Intervention", "__version__", "scm"]
