"""Tests of the exact closest-DAG projection against brute force over all orders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from causal_wm.crl.dag import closest_dag, dag_from_order, order_weight
from causal_wm.scm.graphs import is_dag


def _brute_force(W: np.ndarray) -> float:
    return max(order_weight(W, list(p)) for p in itertools.permutations(range(W.shape[0])))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for _ in range(8):
        W = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.7)
        res = closest_dag(W)
        assert is_dag(res.adjacency)
        assert res.kept_weight == pytest.approx(_brute_force(W), abs=1e-9)
        assert res.kept_weight + res.removed_weight == pytest.approx(np.maximum(W - np.diag(np.diag(W)), 0).sum())
        np.testing.assert_array_equal(res.adjacency, dag_from_order(W, res.order))
        # only positive, off-diagonal entries are ever kept
        assert np.all(W[res.adjacency == 1] > 0)


def test_dag_input_is_kept_and_cycle_is_broken_at_weakest_edge():
    A = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    res = closest_dag(A * 2.0)
    np.testing.assert_array_equal(res.adjacency, A)
    assert res.removed_weight == 0.0
    # 3-cycle 0 -> 1 -> 2 -> 0 with weakest edge 2 -> 0
    W = np.zeros((3, 3))
    W[0, 1], W[1, 2], W[2, 0] = 3.0, 2.0, 0.5
    res = closest_dag(W)
    np.testing.assert_array_equal(np.argwhere(res.adjacency), [[0, 1], [1, 2]])
    assert res.removed_weight == pytest.approx(0.5)


def test_larger_graph_recovers_planted_dag():
    rng = np.random.default_rng(0)
    n = 14
    A = np.triu((rng.random((n, n)) < 0.4).astype(int), k=1)
    perm = rng.permutation(n)
    A = A[np.ix_(perm, perm)]
    # strong true edges plus weak noise in both directions
    W = 1.0 * A + 0.05 * rng.random((n, n))
    res = closest_dag(W)
    assert np.all(res.adjacency[A == 1] == 1)


def test_errors():
    with pytest.raises(ValueError, match="square"):
        closest_dag(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        closest_dag(np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="permutation"):
        dag_from_order(np.zeros((3, 3)), [0, 0, 1])
