"""One way to write and read every saved object of causal_wm.

Every model file is a ``torch.save`` of a plain dict (tensors, numbers, strings, lists: loadable with
``torch.load(weights_only=True)``, so reading a file never runs code) with two keys added here:
``format`` (what the file holds, e.g. ``"causal_wm.world_model"``) and ``version`` (of that format).
Writes are atomic (a temporary file next to the target, then a rename), so an interrupted save never
leaves a truncated file under the target's name. Reads give one error, ``ModelFileError`` (a
``ValueError``), naming the file and what was expected, for an empty, truncated, corrupt, foreign or
other-format file; a missing file stays ``FileNotFoundError``.

    save_state({"weights": ...}, "model.pt", format="causal_wm.world_model", version=1)
    state = load_state("model.pt", format="causal_wm.world_model", version=1)
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = ["FORMAT_NAMES", "ModelFileError", "Persistent", "check_state", "load_state", "read_state", "save_state",
           "state_errors"]

P = TypeVar("P", bound="Persistent")

# format tag -> what a person calls it (for error messages)
FORMAT_NAMES: dict[str, str] = {
    "causal_wm.world_model": "causal world model (CausalWorldModel)",
    "causal_wm.crl.images": "image CRL model (ImageCRLResult)",
    "causal_wm.crl.gscale": "GSCALE-I model (GScaleResult)",
    "causal_wm.crl.lscale": "LSCALE-I result (LinearCRLResult)",
    "causal_wm.crl.umni": "UMNI-CRL result (UMNIResult)",
    "causal_wm.action_conditioned_model": "action-conditioned model (ActionConditionedModel)",
    "causal_wm.probabilistic_ensemble": "probabilistic ensemble (ProbabilisticEnsemble)",
    "causal_wm.plain_autoencoder": "plain autoencoder (PlainAutoencoder)",
}


class ModelFileError(ValueError):
    """A file (or state dict) that is not a readable object of the expected kind: empty, truncated,
    corrupt, not a torch file, or a file of another format or version."""


def describe(fmt: str) -> str:
    """``"an image CRL model (ImageCRLResult)"`` for a known format tag, ``"a file of format 'x'"`` else."""
    name = FORMAT_NAMES.get(fmt)
    if name is None:
        return f"a file of format {fmt!r}"
    return ("an " if name[0] in "aeiou" else "a ") + name


def save_state(state: dict[str, Any], path: str | os.PathLike, *, format: str, version: int) -> Path:
    """Write ``state`` plus its ``format`` tag and ``version`` to ``path`` atomically; returns the path."""
    from causal_wm._torch import save_atomic

    return save_atomic({**state, "format": format, "version": int(version)}, path)


def read_state(path: str | os.PathLike, what: str = "a causal_wm model file") -> dict[str, Any]:
    """The dict a causal_wm file holds, whatever its format (``weights_only`` loading).

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: an empty, truncated or corrupt file, not a torch file, or no format tag.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path} (expected {what})")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not {what}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty, not {what} (an interrupted copy?)")
    import torch  # here, not at the top: the linear learners' results import this module without torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated, corrupt and foreign files
        if isinstance(err, pickle.UnpicklingError):
            # torch's own text suggests weights_only=False: never do that with a file of unknown origin
            detail = "it holds pickled Python objects, which causal_wm never loads"
        else:
            detail = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
        raise ModelFileError(f"{path} is not a readable model file ({what} expected): truncated, corrupt or not "
                             f"a torch file ({detail})") from err
    if not isinstance(state, dict) or not isinstance(state.get("format"), str):
        raise ModelFileError(f"{path} is a torch file but not a causal_wm model (it has no format tag); "
                             f"expected {what}")
    return state


def check_state(state: Any, *, format: str | Iterable[str], version: int | Iterable[int],
                source: str = "state") -> dict[str, Any]:
    """``state`` if it carries one of the ``format`` tags at one of the ``version`` s; else
    ``ModelFileError`` naming ``source``, what it holds and what was expected."""
    formats = (format,) if isinstance(format, str) else tuple(format)
    versions = (version,) if isinstance(version, int) else tuple(version)
    expected = " or ".join(describe(f) for f in formats)
    if not isinstance(state, dict) or not isinstance(state.get("format"), str):
        raise ModelFileError(f"{source} is not a causal_wm model (no format tag); expected {expected}")
    found = state["format"]
    if found not in formats:
        raise ModelFileError(f"{source} is not {expected}: it holds {describe(found)}")
    if state.get("version") not in versions:
        raise ModelFileError(f"{source} is {describe(found)} of format version {state.get('version')!r}; this "
                             f"version of causal_wm reads version {' or '.join(map(str, versions))}")
    return state


def load_state(path: str | os.PathLike, *, format: str | Iterable[str], version: int | Iterable[int]
               ) -> dict[str, Any]:
    """Read and check a file written by ``save_state`` (see ``read_state`` and ``check_state``)."""
    formats = (format,) if isinstance(format, str) else tuple(format)
    state = read_state(path, " or ".join(describe(f) for f in formats))
    return check_state(state, format=formats, version=version, source=str(path))


@contextlib.contextmanager
def state_errors(source: str, what: str) -> Iterator[None]:
    """Inside ``from_state``: a state with missing or malformed parts (a hand-edited or damaged file)
    raises ``ModelFileError`` naming ``source``, not a bare ``KeyError`` or a shape mismatch."""
    try:
        yield
    except ModelFileError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{source} is a damaged {what} ({type(err).__name__}: {err})") from err


class Persistent:
    """``save(path)`` and ``load(path, device)`` for a class with ``FORMAT``, ``FORMAT_VERSION``,
    ``state()`` (plain tensors, numbers, strings, lists, dicts) and
    ``from_state(state, device="auto", source="state")`` (which should start with ``check_state``)."""

    FORMAT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int]

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls: type[P], state: Any, device: Any = "auto", source: str = "state") -> P:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``state()`` atomically with the format tag (loadable with ``torch.load(weights_only=True)``)."""
        return save_state(self.state(), path, format=self.FORMAT, version=self.FORMAT_VERSION)

    @classmethod
    def load(cls: type[P], path: str | os.PathLike, device: Any = "auto") -> P:
        """Read a file written by ``save`` onto ``device``; ``ModelFileError`` for a bad file."""
        state = load_state(path, format=cls.FORMAT, version=cls.FORMAT_VERSION)
        return cls.from_state(state, device, source=str(path))
