"""Seeding helpers shared by every sampling function."""

from __future__ import annotations

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a numpy Generator for ``seed`` (an int, a SeedSequence, a Generator or None).

    A Generator passed in is returned as is (so callers share its stream); anything else seeds a
    fresh PCG64 stream, which makes the same int give the same bytes on every platform.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def derive_seed(seed: int, *keys: int) -> int:
    """An independent 32-bit seed for the part ``keys`` of a run seeded with ``seed``, through
    ``numpy.random.SeedSequence`` (``seed + k`` arithmetic would make run 0's part 1 equal run 1's
    part 0)."""
    return int(np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)[0])
