"""Latent structural causal models: DAGs, mechanisms, interventions, exact densities and scores,
mixing functions and the published synthetic protocol."""

from causal_wm.scm.graphs import (
    NAMED_GRAPHS,
    ancestors,
    erdos_renyi_dag,
    is_dag,
    named_dag,
    parents,
    topological_order,
    transitive_closure,
    validate_dag,
)
from causal_wm.scm.interventions import Intervention
from causal_wm.scm.mechanisms import (
    FunctionMechanism,
    LinearMechanism,
    Mechanism,
    MLPMechanism,
    QuadraticMechanism,
    ScaledMechanism,
    random_mechanism,
    scaled_mechanism,
)
from causal_wm.scm.mixing import (
    LinearMixing,
    Mixing,
    MLPMixing,
    TanhMixing,
    random_linear_mixing_matrix,
    random_mixing,
)
from causal_wm.scm.model import SCM, random_scm
from causal_wm.scm.protocol import (
    CRLProblem,
    gscale_problem,
    lscale_problem,
    multi_node_target_matrix,
    umni_problem,
)

__all__ = [
    "NAMED_GRAPHS",
    "SCM",
    "CRLProblem",
    "FunctionMechanism",
    "Intervention",
    "LinearMechanism",
    "LinearMixing",
    "MLPMechanism",
    "MLPMixing",
    "Mechanism",
    "Mixing",
    "QuadraticMechanism",
    "ScaledMechanism",
    "TanhMixing",
    "ancestors",
    "erdos_renyi_dag",
    "gscale_problem",
    "is_dag",
    "lscale_problem",
    "multi_node_target_matrix",
    "named_dag",
    "parents",
    "random_linear_mixing_matrix",
    "random_mechanism",
    "random_mixing",
    "random_scm",
    "scaled_mechanism",
    "topological_order",
    "transitive_closure",
    "umni_problem",
    "validate_dag",
]
