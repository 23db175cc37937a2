"""Causal scene environments (installed as ``causal_wm.envs``).

Importing ``causal_wm`` registers them with gymnasium:

- ``causal_wm/Balls-v0``: coloured balls whose coordinates follow a linear Gaussian SCM.
- ``causal_wm/Shadow-v0``: a pendulum, a light and the shadow they cast (nonlinear SCM).
- ``causal_wm/Chemistry-v0``: coloured objects whose colours follow a nonlinear SCM with an
  interaction (``c = a * b``) and a mediator chain (``d -> e -> goal``).

In both the action chooses an intervention on the latent causal model (action 0: none).
"""

from __future__ import annotations

import gymnasium

ENV_IDS = ("causal_wm/Balls-v0", "causal_wm/Shadow-v0", "causal_wm/Chemistry-v0")
_ENTRY_POINTS = {
    "causal_wm/Balls-v0": "causal_wm.envs.balls:BallsEnv",
    "causal_wm/Shadow-v0": "causal_wm.envs.shadow:ShadowEnv",
    "causal_wm/Chemistry-v0": "causal_wm.envs.chemistry:ChemistryEnv",
}
MAX_EPISODE_STEPS = 50


def register_envs() -> None:
    """Register every causal scene with gymnasium (idempotent: ids already registered are kept)."""
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=MAX_EPISODE_STEPS)


def make(env_id: str, *, vector: dict | None = None, **kwargs):
    """``gymnasium.make(env_id, **kwargs)`` (or ``gymnasium.make_vec(env_id, **vector, **kwargs)``)
    with a ``ValueError`` naming the problem for an unknown id or a keyword the env does not take,
    instead of gymnasium's own error types."""
    import inspect

    if not isinstance(env_id, str) or env_id not in gymnasium.registry:
        near = [e for e in gymnasium.registry if isinstance(env_id, str) and env_id.split("/")[-1][:4] in e][:5]
        raise ValueError(f"unknown gymnasium env id {env_id!r}" + (f" (similar: {near})" if near else "")
                         + "; a user's env must be registered (gymnasium.register) or passed as an env object")
    try:
        if vector is not None:
            return gymnasium.make_vec(env_id, **vector, **kwargs)
        return gymnasium.make(env_id, **kwargs)
    except TypeError as err:
        spec = gymnasium.registry[env_id]
        known = ""
        if isinstance(spec.entry_point, str):
            try:
                cls = gymnasium.envs.registration.load_env_creator(spec.entry_point)
                known = f"; it takes {sorted(p for p in inspect.signature(cls).parameters if p != 'self')}"
            except Exception:  # the hint is optional
                known = ""
        raise ValueError(f"{env_id} does not take these arguments {sorted(kwargs)}: {err}{known}") from err
    except gymnasium.error.Error as err:
        raise ValueError(f"cannot make {env_id}: {err}") from err


def __getattr__(name: str):
    # Lazy access to the classes keeps `import causal_wm` light (no OpenCV import until a scene is used).
    if name in ("BallsEnv", "balls_scm"):
        from causal_wm.envs import balls
        return getattr(balls, name)
    if name in ("ShadowEnv", "shadow_scm", "ShadowRenderer"):
        from causal_wm.envs import shadow
        return getattr(shadow, name)
    if name in ("ChemistryEnv", "chemistry_scm", "ChemistryRenderer"):
        from causal_wm.envs import chemistry
        return getattr(chemistry, name)
    if name in ("BallsRenderer", "render_balls"):
        from causal_wm.envs import rendering
        return getattr(rendering, name)
    if name in ("CausalSceneEnv", "intervention_menu"):
        from causal_wm.envs import base
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENV_IDS",
    "BallsEnv",
    "BallsRenderer",
    "CausalSceneEnv",
    "ChemistryEnv",
    "ChemistryRenderer",
    "ShadowEnv",
    "ShadowRenderer",
    "balls_scm",
    "chemistry_scm",
    "intervention_menu",
    "make",
    "register_envs",
    "render_balls",
    "shadow_scm",
]
