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

Every name is imported on first use.
"""

import importlib

# every learner imports numpy/scipy/torch: load on first use (``from causal_wm.crl import lscale_i``
# works as usual), so that reading a config (``causal_wm.crl.images.config``) stays light
_LAZY = {
    "lscale_i": "lscale", "LinearCRLResult": "lscale",
    "umni_crl": "umni", "UMNIResult": "umni",
    "gscale_i": "gscale", "GScaleResult": "gscale",
    "fit_image_crl": "images", "ImageCRLResult": "images",
    "find_pairs": "pairing", "pairs_from_menu": "pairing", "bayes_accuracy": "pairing",
    "closest_dag": "dag",
    "Representation": "representation", "register_representation": "representation",
    "representation_from_state": "representation",
    "score_differences": "scores", "score_differences_between": "scores", "score_error": "scores",
}
_MODULES = ("dag", "metrics", "pairing", "scores", "lscale", "umni", "gscale", "images", "representation")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"causal_wm.crl.{_LAZY[name]}"), name)
    if name in _MODULES:
        return importlib.import_module(f"causal_wm.crl.{name}")
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
