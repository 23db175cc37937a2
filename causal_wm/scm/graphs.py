"""Directed acyclic graphs over latent variables.

Convention everywhere in causal_wm: adjacency ``A`` of shape ``(n, n)`` with ``A[i, j] = 1`` iff
``i -> j``; the parents of node ``j`` are the nonzeros of column ``j``. Adjacencies are returned as
``int64`` arrays of zeros and ones.
"""

from __future__ import annotations

import numpy as np

from causal_wm._random import SeedLike, as_generator

NAMED_GRAPHS = ("chain", "fork", "collider", "full", "empty")


def validate_dag(adjacency: np.ndarray | list, n: int | None = None) -> np.ndarray:
    """Check that ``adjacency`` is a square 0/1 matrix of a DAG and return it as ``int64``.

    Raises ``ValueError`` naming the problem: wrong shape, entries other than 0/1, self-loops, a
    cycle, or a size different from ``n`` when ``n`` is given.
    """
    A = np.asarray(adjacency)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"adjacency must be a square (n, n) matrix, got shape {A.shape}")
    if n is not None and A.shape[0] != n:
        raise ValueError(f"adjacency must be ({n}, {n}) for {n} latent variables, got {A.shape}")
    if not np.all(np.isfinite(A)) or not np.all((A == 0) | (A == 1)):
        raise ValueError("adjacency entries must be 0 or 1 (A[i, j] = 1 iff i -> j)")
    A = A.astype(np.int64)
    if np.any(np.diag(A)):
        loops = np.flatnonzero(np.diag(A)).tolist()
        raise ValueError(f"adjacency has self-loops on nodes {loops}; a DAG has none")
    if topological_order(A, check=False) is None:
        raise ValueError("adjacency has a directed cycle; a causal graph must be acyclic")
    return A


def topological_order(adjacency: np.ndarray, *, check: bool = True) -> list[int] | None:
    """Kahn's order of the nodes (parents before children), smallest index first among ties.

    Returns None for a cyclic graph when ``check`` is False; raises ``ValueError`` otherwise.
    """
    A = np.asarray(adjacency) != 0
    n = A.shape[0]
    indegree = A.sum(axis=0).astype(int)
    ready = sorted(np.flatnonzero(indegree == 0).tolist())
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in np.flatnonzero(A[i]).tolist():
            indegree[j] -= 1
            if indegree[j] == 0:
                ready.append(j)
        ready.sort()
    if len(order) != n:
        if check:
            raise ValueError("adjacency has a directed cycle; a causal graph must be acyclic")
        return None
    return order


def is_dag(adjacency: np.ndarray) -> bool:
    """True iff ``adjacency`` is square, binary and acyclic."""
    try:
        validate_dag(adjacency)
    except ValueError:
        return False
    return True


def parents(adjacency: np.ndarray, j: int) -> list[int]:
    """Parents of node ``j`` (indices ``i`` with ``A[i, j] = 1``), ascending."""
    return np.flatnonzero(np.asarray(adjacency)[:, j]).tolist()


def ancestors(adjacency: np.ndarray, j: int) -> list[int]:
    """All ancestors of node ``j`` (not including ``j``), ascending."""
    A = np.asarray(adjacency) != 0
    seen: set[int] = set()
    stack = np.flatnonzero(A[:, j]).tolist()
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(np.flatnonzero(A[:, i]).tolist())
    return sorted(seen)


def transitive_closure(adjacency: np.ndarray) -> np.ndarray:
    """``C[i, j] = 1`` iff there is a directed path ``i -> ... -> j`` (length >= 1)."""
    A = (np.asarray(adjacency) != 0).astype(np.int64)
    n = A.shape[0]
    C = A.copy()
    for k in range(n):
        C = C | (C[:, [k]] & C[[k], :])
    return C.astype(np.int64)


def erdos_renyi_dag(
    n: int,
    *,
    edge_prob: float | None = None,
    expected_degree: float | None = None,
    seed: SeedLike = None,
    permute: bool = True,
) -> np.ndarray:
    """Erdős–Rényi DAG on a random causal order.

    Every pair ``(i, j)`` with ``i`` before ``j`` in the order gets the edge ``i -> j`` independently
    with probability ``edge_prob``. Give either ``edge_prob`` or ``expected_degree`` (the expected
    number of neighbours of a node, in plus out: ``edge_prob = expected_degree / (n - 1)``).
    With ``permute=False`` the order is ``0, 1, ..., n-1`` (upper-triangular adjacency).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of nodes, got {n}")
    if (edge_prob is None) == (expected_degree is None):
        raise ValueError("give exactly one of edge_prob and expected_degree")
    if expected_degree is not None:
        if expected_degree < 0:
            raise ValueError(f"expected_degree must be >= 0, got {expected_degree}")
        edge_prob = 0.0 if n == 1 else min(1.0, expected_degree / (n - 1))
    assert edge_prob is not None
    if not 0.0 <= edge_prob <= 1.0:
        raise ValueError(f"edge_prob must lie in [0, 1], got {edge_prob}")
    rng = as_generator(seed)
    upper = np.triu(rng.random((n, n)) < edge_prob, k=1).astype(np.int64)
    if not permute:
        return upper
    order = rng.permutation(n)
    A = np.zeros((n, n), dtype=np.int64)
    A[np.ix_(order, order)] = upper
    return A


def named_dag(name: str, n: int) -> np.ndarray:
    """A named structure on ``n`` nodes, causal order ``0, ..., n-1``.

    - ``chain``: 0 -> 1 -> ... -> n-1
    - ``fork``: 0 -> every other node (a common cause)
    - ``collider``: every node but the last -> n-1 (a common effect)
    - ``full``: i -> j for every i < j
    - ``empty``: no edges
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of nodes, got {n}")
    A = np.zeros((n, n), dtype=np.int64)
    if name == "chain":
        A[np.arange(n - 1), np.arange(1, n)] = 1
    elif name == "fork":
        A[0, 1:] = 1
    elif name == "collider":
        A[:-1, n - 1] = 1
    elif name == "full":
        A = np.triu(np.ones((n, n), dtype=np.int64), k=1)
    elif name == "empty":
        pass
    else:
        raise ValueError(f"unknown graph name {name!r}; choose one of {NAMED_GRAPHS}")
    return A
