"""Shared pieces of the world-model tests: a small four-node SCM world with a menu of single-node hard
interventions, its true latents as the representation (``causal_wm.crl.representation.TrueLatents``),
to test the learned SCM without representation error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from causal_wm.crl.representation import TrueLatents
from causal_wm.scm import SCM, Intervention, LinearMechanism, random_scm

# 0 -> 1 -> 2 -> 3 with 1 -> 3: node 2's child 3 also reads 2's parent
WORLD_GRAPH = np.array([[0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])


@dataclass
class SCMWorld:
    """A linear Gaussian SCM on ``WORLD_GRAPH`` and its menu: seeing, two mean-shift hard interventions
    per node (regimes 1..8) and a two-node do-intervention (regime 9) that the representation does not
    know. ``model`` is a ``CausalWorldModel`` fitted on the true latents of regimes 0..8."""

    scm: SCM
    menu: list[Intervention | None]
    model: object = None

    def sample(self, rows: int, seed: int, scm: SCM | None = None, regimes: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` latents ``(rows, 4)`` and their regimes ``(rows,)``, drawn uniformly from ``regimes``
        (default the known regimes 0..8), of ``scm`` (default the world's own)."""
        scm = self.scm if scm is None else scm
        rng = np.random.default_rng(seed)
        labels = rng.choice(np.arange(9) if regimes is None else np.asarray(regimes), size=rows)
        z = np.zeros((rows, scm.n))
        for r in np.unique(labels):
            z[labels == r] = scm.forward(rng.standard_normal((int(np.sum(labels == r)), scm.n)), self.menu[r])
        return z, labels

    def shifted(self, node: int) -> SCM:
        """The same SCM with the weights of ``node``'s mechanism negated."""
        mechanisms = [LinearMechanism(m.parents, -m.weights) if j == node and m is not None else m
                      for j, m in enumerate(self.scm.mechanisms)]
        return SCM(self.scm.graph, mechanisms, self.scm.noise_std, self.scm.noise_mean)


def make_world(seed: int = 3, rows: int = 4000) -> SCMWorld:
    from causal_wm.world_model import CausalWorldModel

    scm = random_scm(WORLD_GRAPH, "linear", seed=seed).standardized()
    menu: list[Intervention | None] = [None]
    for j in range(4):
        menu += [Intervention.hard(j, shift=-1.0, std=0.7), Intervention.hard(j, shift=1.0, std=0.7)]
    menu.append(Intervention.do((0, 2), (1.0, -1.0)))
    world = SCMWorld(scm, menu)
    z, regimes = world.sample(rows, seed=seed)
    representation = TrueLatents.from_menu(WORLD_GRAPH, menu, regimes=range(9))
    world.model = CausalWorldModel.fit_arrays(z, regimes, menu=menu, representation=representation, preset="debug")
    return world


@pytest.fixture(scope="module")
def scm_world() -> SCMWorld:
    """A fitted true-latent world (see ``SCMWorld``)."""
    return make_world()
