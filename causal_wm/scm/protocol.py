"""Generators for the published synthetic protocol (docs/science.md section 6).

Each returns a ``CRLProblem``: observations and true latents per environment (``envs[0]`` is
observational), the SCM, the mixing and the interventions, so algorithms see only
``problem.observations`` and evaluation uses the rest. Environment order is shuffled unless asked
otherwise, so no algorithm can rely on env ``m`` hitting node ``m - 1``.

Sign convention of ``oracle_score_differences``: observational minus interventional,
``D^m(x) = s^0(x) - s^m(x)``, evaluated at the samples of the observational environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from causal_wm._random import SeedLike, as_generator
from causal_wm.scm.graphs import erdos_renyi_dag
from causal_wm.scm.interventions import Intervention
from causal_wm.scm.mixing import Mixing, random_mixing
from causal_wm.scm.model import SCM, random_scm


@dataclass
class CRLProblem:
    """Multi-environment data with its ground truth.

    Attributes:
        observations: one ``(N, d)`` array per environment; index 0 is observational.
        latents: the true latents ``(N, n)`` behind each environment's observations.
        interventions: ``None`` for env 0, then the intervention of each env.
        scm: the latent SCM; ``scm.graph`` is the true DAG (``A[i, j] = 1`` iff ``i -> j``).
        mixing: the map ``x = mixing(z)``.
        pairs: for two hard interventions per node, the index pairs ``(m, m')`` of envs that hit the
            same node (ground truth; GSCALE-I may be asked to find them).
    """

    observations: list[np.ndarray]
    latents: list[np.ndarray]
    interventions: list[Intervention | None]
    scm: SCM
    mixing: Mixing
    pairs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.scm.n

    @property
    def d(self) -> int:
        return self.mixing.d

    @property
    def graph(self) -> np.ndarray:
        return self.scm.graph

    @property
    def targets(self) -> list[tuple[int, ...]]:
        """True intervened nodes of every interventional environment (env 1 onwards)."""
        return [iv.targets for iv in self.interventions[1:] if iv is not None]

    @property
    def target_matrix(self) -> np.ndarray:
        """``(num_interventional_envs, n)`` 0/1 matrix: row ``m - 1`` marks the targets of env ``m``."""
        T = np.zeros((len(self.interventions) - 1, self.n), dtype=np.int64)
        for m, targets in enumerate(self.targets):
            T[m, list(targets)] = 1
        return T

    def latent_score_differences(self, reference: int = 0) -> list[np.ndarray]:
        """Exact ``s^0(z) - s^m(z)`` ``(N, n)`` for every interventional env ``m``, at the latents
        of env ``reference``."""
        z = self.latents[reference]
        s0 = self.scm.score(z)
        return [s0 - self.scm.score(z, iv) for iv in self.interventions[1:]]

    def oracle_score_differences(self, reference: int = 0) -> list[np.ndarray]:
        """Exact ``s^0(x) - s^m(x)`` ``(N, d)`` in observation space (on the support of the mixing),
        for every interventional env ``m``, at the observations of env ``reference``."""
        z = self.latents[reference]
        return [self.mixing.pushforward_score(z, D) for D in self.latent_score_differences(reference)]


def _build(scm: SCM, mixing: Mixing, interventions: list[Intervention | None], num_samples: int,
           rng: np.random.Generator, pairs: list[tuple[int, int]] | None = None) -> CRLProblem:
    latents = [scm.sample(num_samples, iv, rng) for iv in interventions]
    return CRLProblem([mixing(z) for z in latents], latents, interventions, scm, mixing, pairs or [])


def _shuffle(interventions: list[Intervention], rng: np.random.Generator, shuffle: bool) -> tuple[list, np.ndarray]:
    perm = rng.permutation(len(interventions)) if shuffle else np.arange(len(interventions))
    return [interventions[i] for i in perm], perm


def lscale_problem(n: int, d: int, num_samples: int, *, hard: bool = True, latent: str = "linear",
                   mixing: str = "linear", edge_prob: float = 0.5, hard_variance_factor: float = 5.0,
                   soft_parent_scale: float = 0.5, shuffle: bool = True, seed: SeedLike = None) -> CRLProblem:
    """One intervention per node (LSCALE-I): hard ones cut the parents and multiply the noise
    variance by ``hard_variance_factor`` (5 as published); soft ones multiply the parent weights by
    ``soft_parent_scale`` (halve, as published) and the noise variance by ``hard_variance_factor``.
    ``num_samples`` per environment."""
    rng = as_generator(seed)
    scm = random_scm(erdos_renyi_dag(n, edge_prob=edge_prob, seed=rng), latent, rng)
    mix = random_mixing(mixing, n, d, rng)
    # Soft interventions also scale the noise (as the published code does): halving the parent
    # weights alone would leave a root node's distribution unchanged.
    ivs = [Intervention.hard(t, scale=np.sqrt(hard_variance_factor)) if hard
           else Intervention.soft(t, parent_scale=soft_parent_scale, scale=np.sqrt(hard_variance_factor))
           for t in range(n)]
    ivs, _ = _shuffle(ivs, rng, shuffle)
    return _build(scm, mix, [None, *ivs], num_samples, rng)


def gscale_problem(n: int, d: int, num_samples: int, *, latent: str = "quadratic", mixing: str = "tanh",
                   edge_prob: float = 0.5, variance_factors: tuple[float, float] = (0.25, 4.0),
                   shuffle: bool = True, seed: SeedLike = None) -> CRLProblem:
    """Two hard interventions per node (GSCALE-I): noise variance times 0.25 and times 4 as
    published. ``problem.pairs`` lists the env pairs that hit the same node."""
    rng = as_generator(seed)
    scm = random_scm(erdos_renyi_dag(n, edge_prob=edge_prob, seed=rng), latent, rng)
    mix = random_mixing(mixing, n, d, rng)
    ivs = [Intervention.hard(t, scale=np.sqrt(f)) for f in variance_factors for t in range(n)]
    ivs, _ = _shuffle(ivs, rng, shuffle)
    by_node: dict[int, list[int]] = {}
    for m, iv in enumerate(ivs, start=1):
        by_node.setdefault(iv.targets[0], []).append(m)
    pairs = [tuple(sorted(v)) for _, v in sorted(by_node.items())]
    return _build(scm, mix, [None, *ivs], num_samples, rng, pairs)  # type: ignore[arg-type]


def multi_node_target_matrix(n: int, seed: SeedLike = None, *, fill_rate: float = 0.5) -> np.ndarray:
    """``(n, n)`` 0/1 matrix ``D`` of an unknown multi-node design, ``D[m, i] = 1`` iff env ``m + 1``
    intervenes on node ``i``: identity plus upper-triangular entries with probability ``fill_rate``,
    redrawn until invertible, rows shuffled (the published UMNI-CRL design)."""
    rng = as_generator(seed)
    while True:
        D = (np.eye(n, dtype=bool) | np.triu(rng.random((n, n)) <= fill_rate)).T
        if abs(np.linalg.det(D.astype(float))) > 0.5:
            return D[rng.permutation(n)].astype(np.int64)


def umni_problem(n: int, d: int, num_samples: int, *, hard: bool = True, latent: str = "linear",
                 edge_prob: float = 0.5, hard_variance_factor: float = 0.25, soft_parent_scale: float = 0.5,
                 soft_variance_factor: float = 0.25, target_matrix: np.ndarray | None = None,
                 seed: SeedLike = None) -> CRLProblem:
    """Unknown multi-node interventions (UMNI-CRL): ``n`` interventional envs, env ``m`` intervening on
    the nodes of row ``m - 1`` of ``target_matrix`` (default ``multi_node_target_matrix``). The
    graph is an Erdős–Rényi DAG in the order ``0..n-1`` (as published). Hard: noise variance times
    ``hard_variance_factor``; soft: parent weights times ``soft_parent_scale`` and noise variance times
    ``soft_variance_factor`` (as published: without it a soft intervention on a root changes nothing)."""
    rng = as_generator(seed)
    scm = random_scm(erdos_renyi_dag(n, edge_prob=edge_prob, seed=rng, permute=False), latent, rng)
    mix = random_mixing("linear", n, d, rng)
    D = multi_node_target_matrix(n, rng) if target_matrix is None else np.asarray(target_matrix)
    if D.shape != (n, n) or abs(np.linalg.det(D.astype(float))) < 1e-9:
        raise ValueError(f"target_matrix must be an invertible ({n}, {n}) 0/1 matrix")
    ivs: list[Intervention | None] = [None]
    for row in D:
        t = tuple(np.flatnonzero(row).tolist())
        ivs.append(Intervention.hard(t, scale=np.sqrt(hard_variance_factor)) if hard
                   else Intervention.soft(t, parent_scale=soft_parent_scale, scale=np.sqrt(soft_variance_factor)))
    return _build(scm, mix, ivs, num_samples, rng)
