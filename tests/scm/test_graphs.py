import itertools

import numpy as np
import pytest

from causal_wm.scm import (
    ancestors,
    erdos_renyi_dag,
    is_dag,
    named_dag,
    parents,
    topological_order,
    transitive_closure,
    validate_dag,
)


def test_erdos_renyi_is_acyclic_and_seeded():
    for seed in range(20):
        A = erdos_renyi_dag(7, edge_prob=0.5, seed=seed)
        assert is_dag(A)
        assert A.dtype == np.int64
        np.testing.assert_array_equal(A, erdos_renyi_dag(7, edge_prob=0.5, seed=seed))


def test_erdos_renyi_edge_density_matches_expected_degree():
    n, degree = 10, 2.0
    edges = np.mean([erdos_renyi_dag(n, expected_degree=degree, seed=s).sum() for s in range(400)])
    # expected number of edges = n * degree / 2
    assert abs(edges - n * degree / 2) < 0.5


def test_unpermuted_er_is_upper_triangular():
    A = erdos_renyi_dag(6, edge_prob=1.0, permute=False)
    np.testing.assert_array_equal(A, np.triu(np.ones((6, 6), dtype=int), 1))


@pytest.mark.parametrize("name,edges", [("chain", 4), ("fork", 4), ("collider", 4), ("full", 10), ("empty", 0)])
def test_named_graphs(name, edges):
    A = named_dag(name, 5)
    assert is_dag(A) and A.sum() == edges


def test_named_graph_semantics():
    assert parents(named_dag("chain", 4), 3) == [2]
    assert parents(named_dag("collider", 4), 3) == [0, 1, 2]
    assert ancestors(named_dag("chain", 4), 3) == [0, 1, 2]
    np.testing.assert_array_equal(transitive_closure(named_dag("chain", 4)), named_dag("full", 4))


def test_topological_order_respects_edges():
    for seed in range(10):
        A = erdos_renyi_dag(8, edge_prob=0.5, seed=seed)
        position = {v: k for k, v in enumerate(topological_order(A))}
        for i, j in itertools.product(range(8), repeat=2):
            if A[i, j]:
                assert position[i] < position[j]


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((2, 3)), "square"),
        (np.array([[0, 2], [0, 0]]), "0 or 1"),
        (np.array([[1, 0], [0, 0]]), "self-loops"),
        (np.array([[0, 1], [1, 0]]), "cycle"),
    ],
)
def test_validate_dag_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_dag(bad)


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        erdos_renyi_dag(3)
    with pytest.raises(ValueError, match="unknown graph name"):
        named_dag("star", 3)
