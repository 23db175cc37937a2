"""Score-based causal representation learning.

    from causal_wm.crl import lscale_i, gscale_i, umni_crl, metrics
    result = lscale_i(envs)          # envs[0] observational (N, d), envs[1:] one per intervention
    result.encode(x); result.graph; result.env_targets

- ``scores``: score-difference estimators (oracle, gaussian, sliced/denoising score matching,
  classifier log ratios), sign convention observational minus interventional.
- ``lscale_i`` (linear mixing, one intervention per node), ``umni_crl`` (linear mixing, unknown
  multi-node interventions), ``gscale_i`` (general mixing, two hard interventions per node).
- ``fit_image_crl``: the image pipeline (autoencoder, pair log-ratio read-out, latent graph, decoder).
- ``metrics``: MCC, R^2, SHD, edge precision/recall, incorrect-mixing norm, latent error.
- ``dag``: exact closest-DAG projection by dynamic programming over subsets.
- ``pairing``: which interventions hit the same node (from a menu, or found from the data).
- ``Representation``: the protocol every learner's result satisfies and the world model accepts.

The torch-based learners (``gscale_i``, ``fit_image_crl``) are imported on first use, so the linear
algorithms stay light.
"""

from causal_wm.crl import dag, metrics
from causal_wm.crl.dag import closest_dag
from causal_wm.crl.lscale import LinearCRLResult, lscale_i
from causal_wm.crl.representation import Representation, register_representation, representation_from_state
from causal_wm.crl.umni import UMNIResult, umni_crl


def __getattr__(name: str):
    if name in ("gscale_i", "GScaleResult"):
        from causal_wm.crl import gscale

        return getattr(gscale, name)
    if name in ("find_pairs", "pairs_from_menu", "bayes_accuracy", "pairing"):
        from causal_wm.crl import pairing

        return pairing if name == "pairing" else getattr(pairing, name)
    if name in ("fit_image_crl", "ImageCRLResult"):
        from causal_wm.crl import images

        return getattr(images, name)
    if name in ("score_differences", "score_differences_between", "score_error", "scores"):
        from causal_wm.crl import scores

        return scores if name == "scores" else getattr(scores, name)
    raise AttributeError(f"module 'causal_wm.crl' has no attribute {name!r}")


__all__ = [
    "GScaleResult",
    "ImageCRLResult",
    "LinearCRLResult",
    "Representation",
    "UMNIResult",
    "bayes_accuracy",
    "closest_dag",
    "dag",
    "find_pairs",
    "fit_image_crl",
    "gscale_i",
    "lscale_i",
    "metrics",
    "pairing",
    "pairs_from_menu",
    "register_representation",
    "representation_from_state",
    "score_differences",
    "score_differences_between",
    "score_error",
    "scores",
    "umni_crl",
]
