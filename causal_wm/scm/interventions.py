"""The ``Intervention`` value type.

An intervention replaces the conditional ``p_t(z_t | z_pa(t))`` of every target ``t``:

- ``hard`` (stochastic hard): the parents are cut; ``z_t = shift + std_t * eps`` where ``std_t`` is
  ``std`` when given, else ``scale`` times the node's observational noise std.
- ``soft``: the parents stay; the mechanism is multiplied by ``parent_scale`` (for a linear SCM this
  scales the parent weights) and the noise is scaled by ``scale`` and shifted by ``shift``.
- ``do``: ``do(z_t = value)`` as a hard intervention with small noise ``std`` around ``value``, so the
  interventional distribution keeps a density.

Several targets make a multi-node intervention; every parameter is then either one number for all
targets or a tuple with one entry per target. Interventions are frozen and hashable, so they can be
dictionary keys and travel through vector envs, and they round-trip through JSON
(``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

KINDS = ("hard", "soft", "do")
Kind = Literal["hard", "soft", "do"]

_PARAMS = ("shift", "scale", "std", "parent_scale", "value")


def _per_target(value: Any, k: int, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if np.ndim(value) == 0:
        values = (float(value),) * k
    else:
        values = tuple(float(v) for v in value)
        if len(values) != k:
            raise ValueError(f"{name} has {len(values)} entries for {k} targets")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, got {values}")
    return values


@dataclass(frozen=True)
class Intervention:
    """An intervention on one or more latent nodes (see the module docstring for the semantics).

    Attributes:
        targets: intervened node indices, ascending and distinct.
        kind: ``"hard"``, ``"soft"`` or ``"do"``.
        shift: new noise mean (hard, soft); per target.
        scale: factor on the observational noise std (hard, soft); per target.
        std: absolute noise std (hard: overrides ``scale``; do: the small noise around ``value``).
        parent_scale: factor on the mechanism of the parents (soft only).
        value: the value ``v`` of ``do(z_t = v)``.
        name: optional label shown in plots and menus.
    """

    targets: tuple[int, ...]
    kind: Kind = "hard"
    shift: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    parent_scale: tuple[float, ...] | None = None
    value: tuple[float, ...] | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        targets = ((int(self.targets),) if isinstance(self.targets, int | np.integer)
                   else tuple(int(t) for t in self.targets))
        if not targets:
            raise ValueError("an intervention needs at least one target node")
        if len(set(targets)) != len(targets) or min(targets) < 0:
            raise ValueError(f"targets must be distinct non-negative node indices, got {targets}")
        order = sorted(range(len(targets)), key=targets.__getitem__)
        object.__setattr__(self, "targets", tuple(targets[i] for i in order))
        if self.kind not in KINDS:
            raise ValueError(f"unknown intervention kind {self.kind!r}; choose one of {KINDS}")
        k = len(targets)
        for p in _PARAMS:
            values = _per_target(getattr(self, p), k, p)
            if values is not None:
                values = tuple(values[i] for i in order)
            object.__setattr__(self, p, values)
        if self.kind == "do":
            if self.value is None:
                raise ValueError("a do-intervention needs a value")
            if self.std is None:
                object.__setattr__(self, "std", (0.05,) * k)
        if self.kind == "soft" and self.parent_scale is None:
            object.__setattr__(self, "parent_scale", (0.5,) * k)
        for p in ("scale", "std"):
            values = getattr(self, p)
            if values is not None and min(values) <= 0:
                raise ValueError(f"{p} must be positive, got {values}")
        if self.kind != "soft" and self.parent_scale is not None:
            raise ValueError("parent_scale applies to soft interventions only")
        if self.kind != "do" and self.value is not None:
            raise ValueError("value applies to do-interventions only; use shift for hard ones")

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def hard(cls, targets: int | tuple[int, ...], *, shift: Any = 0.0, scale: Any = 1.0,
             std: Any = None, name: str = "") -> Intervention:
        """Stochastic hard intervention: cut the parents; noise mean ``shift``, std ``std`` or
        ``scale`` x the observational noise std."""
        return cls(_tuple(targets), "hard", shift=shift, scale=None if std is not None else scale,
                   std=std, name=name)

    @classmethod
    def soft(cls, targets: int | tuple[int, ...], *, parent_scale: Any = 0.5, shift: Any = 0.0,
             scale: Any = 1.0, name: str = "") -> Intervention:
        """Soft intervention: keep the parents, multiply the mechanism by ``parent_scale``."""
        return cls(_tuple(targets), "soft", shift=shift, scale=scale, parent_scale=parent_scale, name=name)

    @classmethod
    def do(cls, targets: int | tuple[int, ...], value: Any, *, std: Any = 0.05, name: str = "") -> Intervention:
        """``do(z_t = value)`` with Gaussian noise of std ``std`` around the value."""
        return cls(_tuple(targets), "do", value=value, std=std, name=name)

    # --- per-target view ----------------------------------------------------------------------
    def node_params(self, t: int, observational_std: float) -> tuple[float, float, float]:
        """``(mechanism_factor, noise_mean, noise_std)`` of target ``t`` under this intervention.

        ``mechanism_factor`` multiplies the parents' mechanism (0 for hard and do).
        """
        i = self.targets.index(t)
        if self.kind == "do":
            assert self.value is not None and self.std is not None
            return 0.0, self.value[i], self.std[i]
        shift = self.shift[i] if self.shift is not None else 0.0
        if self.std is not None:
            noise_std = self.std[i]
        else:
            noise_std = (self.scale[i] if self.scale is not None else 1.0) * observational_std
        factor = 0.0 if self.kind == "hard" else (self.parent_scale[i] if self.parent_scale else 0.5)
        return factor, shift, noise_std

    def label(self) -> str:
        """A short human-readable label, e.g. ``hard(z2: shift=-1, std=0.7)``."""
        if self.name:
            return self.name
        nodes = ",".join(f"z{t}" for t in self.targets)
        parts = []
        for p in _PARAMS:
            values = getattr(self, p)
            if values is not None:
                shown = values[0] if len(set(values)) == 1 else list(values)
                parts.append(f"{p}={shown:g}" if isinstance(shown, float) else f"{p}={shown}")
        return f"{self.kind}({nodes}: {', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``Intervention.from_dict`` inverts it."""
        out: dict[str, Any] = {"targets": list(self.targets), "kind": self.kind}
        for p in _PARAMS:
            values = getattr(self, p)
            if values is not None:
                out[p] = list(values)
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intervention:
        unknown = set(data) - {"targets", "kind", "name", *_PARAMS}
        if unknown:
            raise ValueError(f"unknown intervention fields {sorted(unknown)}")
        return cls(tuple(data["targets"]), data.get("kind", "hard"),
                   **{p: data[p] for p in _PARAMS if p in data}, name=data.get("name", ""))


def _tuple(targets: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    return (int(targets),) if isinstance(targets, int | np.integer) else tuple(int(t) for t in targets)
