"""``Representation``: the typed hand-off from causal representation learning to the world model.

Every learner of ``causal_wm.crl`` returns one (``lscale_i`` -> ``LinearCRLResult``, ``umni_crl`` ->
``UMNIResult``, ``gscale_i`` -> ``GScaleResult``, ``fit_image_crl`` -> ``ImageCRLResult``), and
``causal_wm.CausalWorldModel`` accepts any object that satisfies the protocol, a user's own too:

    class MyEncoder:                                   # e.g. a pretrained, disentangled encoder
        n = 3
        graph = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])   # A[i, j] = 1 iff learned i -> j
        env_targets = {1: (0,), 2: (1,), 3: (2,)}      # regime -> learned latents it intervenes on
        diagnostics = {}
        def encode(self, x): return x @ W.T            # (N, d) -> (N, n)
        def decode(self, z): return z @ W_inv.T        # (N, n) -> observations
        def encoder_module(self): return torch.nn.Linear(d, 3, bias=False)
        def to(self, device): return self
        def state(self): ...; from_state = classmethod(...)   # only needed for model.save / load

    model = CausalWorldModel.fit_arrays(x, regimes, representation=MyEncoder())

Conventions: ``n`` learned latents; ``graph`` ``(n, n)`` int, a DAG over learned latents;
``env_targets`` maps every interventional regime the representation knows to the tuple of learned
latents it intervenes on (regime 0, observational, may be absent); ``encode`` returns float
``(N, n)``; ``encoder_module()`` is a differentiable ``torch.nn.Module`` from model input to
``(B, n)``; ``state()`` is a ``weights_only``-safe dict with a ``format`` tag and ``from_state``
rebuilds the object from it (``register_representation`` makes a user's class loadable from a
saved world model).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from causal_wm.persistence import ModelFileError, Persistent, check_state, state_errors

if TYPE_CHECKING:  # torch is imported where it is used: the linear learners need none
    from torch import nn

__all__ = ["LinearEncoderResult", "Representation", "register_representation", "representation_from_state",
           "targets_dict"]


@runtime_checkable
class Representation(Protocol):
    """What the world model needs from a learned representation (see the module docstring)."""

    @property
    def n(self) -> int: ...

    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    diagnostics: dict[str, Any]

    def encode(self, x: Any) -> np.ndarray: ...

    def decode(self, z: Any) -> np.ndarray: ...

    def encoder_module(self) -> nn.Module: ...

    def to(self, device: Any) -> Any: ...

    def state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: Any, device: Any = "auto", source: str = "state") -> Any: ...


# format tag -> "module:Class" of the built-in representations (imported on first use) or a class
_FORMATS: dict[str, str | type] = {
    "causal_wm.crl.images": "causal_wm.crl.images.result:ImageCRLResult",
    "causal_wm.crl.lscale": "causal_wm.crl.lscale:LinearCRLResult",
    "causal_wm.crl.umni": "causal_wm.crl.umni:UMNIResult",
    "causal_wm.crl.gscale": "causal_wm.crl.gscale:GScaleResult",
}


def register_representation(cls: type) -> type:
    """Make a user's representation class loadable from saved world models: ``cls.FORMAT`` (a str)
    names its ``state()``'s ``format`` tag; ``cls.from_state(state, device, source)`` rebuilds it.
    Usable as a class decorator."""
    fmt = getattr(cls, "FORMAT", None)
    if not isinstance(fmt, str) or not callable(getattr(cls, "from_state", None)):
        raise ValueError(f"{cls.__name__} needs a FORMAT string and a from_state classmethod to be registered")
    _FORMATS[fmt] = cls
    return cls


def representation_from_state(state: Any, device: Any = "auto", source: str = "state") -> Any:
    """Rebuild a representation from its ``state()`` by the state's ``format`` tag."""
    fmt = state.get("format") if isinstance(state, Mapping) else None
    target = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if target is None:
        raise ModelFileError(f"{source}: unknown representation format {fmt!r} (known: {sorted(_FORMATS)}); "
                             "a user's representation class must be registered with "
                             "causal_wm.crl.register_representation before loading")
    if isinstance(target, str):
        import importlib

        module, name = target.split(":")
        target = getattr(importlib.import_module(module), name)
    return target.from_state(state, device, source=source)


def targets_dict(targets: Mapping[int, Sequence[int]] | None = None) -> dict[int, tuple[int, ...]]:
    """``{regime: (learned latent, ...)}`` with int keys and sorted int tuples."""
    return {int(r): tuple(sorted(int(t) for t in ts)) for r, ts in sorted((targets or {}).items())}


def regime_labels(regimes: Sequence[int] | None, num_envs: int) -> list[int]:
    """Regime labels of ``envs[1:]``: ``regimes`` (distinct positive ints) or ``1..num_envs``."""
    if regimes is None:
        return list(range(1, num_envs + 1))
    labels = [int(r) for r in regimes]
    if len(labels) != num_envs or len(set(labels)) != num_envs or min(labels, default=1) < 1:
        raise ValueError(f"regimes must be {num_envs} distinct positive ints (one per interventional "
                         f"environment), got {list(regimes)!r}")
    return labels


class LinearEncoderResult(Persistent):
    """Base of the linear learners' results (dataclasses with an ``(n, d)`` ``encoder`` matrix,
    ``z_hat = x @ encoder.T``): decoding by the pseudo-inverse, a bias-free ``nn.Linear`` encoder
    module, and persistence of every dataclass field (arrays as tensors, ``env_targets`` as pairs,
    ``diagnostics`` as JSON)."""

    encoder: np.ndarray
    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    diagnostics: dict[str, Any]
    FORMAT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int] = 1

    @property
    def n(self) -> int:
        return int(self.encoder.shape[0])

    @property
    def d(self) -> int:
        return int(self.encoder.shape[1])

    def _check_x(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"observations must have shape (N, {self.d}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("observations contain NaN or infinite values")
        return x

    def encode(self, x: Any) -> np.ndarray:
        """Learned latents ``(N, n)`` of observations ``x`` ``(N, d)``."""
        return self._check_x(x) @ self.encoder.T

    def decode(self, z: Any) -> np.ndarray:
        """Least-squares observations ``(N, d)`` of learned latents ``z`` ``(N, n)`` (pseudo-inverse of
        the encoder: exact on the ``n``-dim signal subspace, up to the data's mean)."""
        from causal_wm.pixels import check_latents

        return check_latents(z, self.n) @ np.linalg.pinv(self.encoder).T

    def encoder_module(self) -> nn.Module:
        """``nn.Linear(d, n, bias=False)`` holding the encoder (float32, frozen)."""
        import torch
        from torch import nn

        layer = nn.Linear(self.d, self.n, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(self.encoder, dtype=torch.float32))
        return layer.requires_grad_(False)

    def to(self, device: Any) -> LinearEncoderResult:
        """numpy results live on the CPU; ``encoder_module()`` can be moved like any module."""
        return self

    def state(self) -> dict[str, Any]:
        import torch

        from causal_wm._torch import to_jsonable

        out: dict[str, Any] = {"format": self.FORMAT, "version": self.FORMAT_VERSION}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "env_targets":
                out[f.name] = [[r, list(t)] for r, t in sorted(value.items())]
            elif f.name == "diagnostics":
                out[f.name] = json.dumps(to_jsonable(value))
            elif isinstance(value, np.ndarray):
                out[f.name] = torch.as_tensor(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_state(cls, state: Any, device: Any = "auto", source: str = "state") -> Any:
        import torch

        check_state(state, format=cls.FORMAT, version=cls.FORMAT_VERSION, source=source)
        with state_errors(source, cls.__name__):
            values: dict[str, Any] = {}
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                value = state[f.name]
                if f.name == "env_targets":
                    values[f.name] = {int(r): tuple(int(t) for t in ts) for r, ts in value}
                elif f.name == "diagnostics":
                    values[f.name] = json.loads(value)
                elif isinstance(value, torch.Tensor):
                    values[f.name] = value.numpy()
                else:
                    values[f.name] = value
            return cls(**values)


@dataclasses.dataclass
class TrueLatents(LinearEncoderResult):
    """The true latents as a ``Representation``: identity encoder ``(n, n)``, the true graph and the
    true targets of every regime. Fits a world model on a scene's ground truth (``info["z"]``), the
    ablation without representation error; never a learner's output.

    Build with ``TrueLatents.from_menu(graph, menu)`` (``menu[r]`` the ``Intervention`` of regime
    ``r``, ``None`` for regime 0)."""

    encoder: np.ndarray
    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    diagnostics: dict[str, Any] = dataclasses.field(default_factory=dict)

    FORMAT: ClassVar[str] = "causal_wm.crl.true_latents"

    @classmethod
    def from_menu(cls, graph: Any, menu: Sequence[Any], regimes: Sequence[int] | None = None) -> TrueLatents:
        """Identity encoder, ``graph`` and the targets of the menu's regimes (all, or ``regimes``)."""
        graph = np.asarray(graph, dtype=np.int64)
        if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
            raise ValueError(f"graph must be a square adjacency matrix, got shape {graph.shape}")
        chosen = range(len(menu)) if regimes is None else [int(r) for r in regimes]
        targets = {r: tuple(int(t) for t in menu[r].targets) for r in chosen if menu[r] is not None}
        return cls(np.eye(graph.shape[0]), graph, targets, {"source": "true latents"})


_FORMATS[TrueLatents.FORMAT] = TrueLatents
