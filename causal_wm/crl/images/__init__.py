"""Causal representation learning from images (GSCALE-I on images, docs/science.md sections 4.4 and 8).

Input: frames of an observational regime (0) and of two hard interventions on every latent node,
with their regime labels, e.g. a ``causal_wm.data.Dataset`` collected on ``causal_wm/Balls-v0``.
Output (``ImageCRLResult``): an encoder ``images -> z_hat`` ``(N, n)`` that recovers the latent
causal variables up to permutation and element-wise invertible maps, a decoder ``z_hat -> images``,
the latent DAG over the learned latents and the learned latent(s) every regime intervenes on.

The pipeline (``fit_image_crl``):

1. Autoencoder (stage 1). A CNN autoencoder compresses frames ``(3, S, S)`` to a low-dimensional
   code ``y`` ``(code_dim,)``. It is only asked to keep the information: its code is entangled.
2. Read-out (stage 2). Log density ratios are invariant to invertible recodings (docs/science.md 2.3), so
   for the two hard interventions ``(lo, hi)`` on node ``t``, ``log p^hi / p^lo`` is the same
   function of ``z_t`` alone whether written in pixels, in ``y`` or in ``z``. A balanced classifier
   between the pair, trained on ``y``, therefore estimates a function of ``z_t`` only, and its logit
   is the learned latent ``t``: an exact zero of the GSCALE-I sparsity objective, reached without
   optimising it. For mean-shift pairs (the default menu of Balls-v0: ``N(-1, 0.7^2)`` vs
   ``N(+1, 0.7^2)``) that function is linear and monotone, so the logit is ``z_t`` up to an affine
   map. Four routes implement this (``route``):

   - ``"parametric"`` (default): an MLP ``h: y -> z`` and a latent SCM on ``z`` whose log densities
     are the logits of one classifier over all regimes (``causal_wm.crl.latent_scm``); it forces every
     regime's log ratio to depend on its targets and their parents only and returns the graph and
     the mechanisms with the latents. The read-out sees every frame (encoded once, streamed), its
     maps can be averaged (``readout_members``), and an end-to-end stage can fine-tune the CNN
     through the same loss (``e2e_epochs``); see docs/science.md section 4.4.
   - ``"pairs"``: one log-ratio classifier per pair on ``y`` (``causal_wm.crl.scores.ClassifierScores``);
     latent ``k`` is the standardised logit of pair ``k``.
   - ``"multinomial"``: one classifier over all ``2n + 1`` regimes on ``y`` (shared features, every
     regime's frames train them); latent ``k`` is ``logit[second_k] - logit[first_k]``.
   - ``"structured"``: one MLP ``y -> z`` ``(n,)`` whose coordinate ``k`` alone feeds the classifier of
     pair ``k`` (a 1-d head), trained jointly with an MLP ``z -> y`` that reconstructs the code;
     restarts are selected by held-out classifier loss.

   ``scripts/bench_image_crl.py`` measures the default route against the supervised ceiling
   (``benchmarks/results/image_crl.json``); ``scripts/bench_gscale_images.py`` compares the routes.
3. Graph (stage 3). Route "parametric": the thresholded strengths ``E|d g_k / d z_i|`` of the latent
   SCM's mechanisms. The other routes: for every interventional regime ``m`` on node ``k``, a classifier between the
   observational regime and ``m`` on the learned latents estimates ``r = log p^0 / p^m``; a hard
   intervention makes ``grad r`` nonzero only on ``{k} + pa(k)``. Edge strength
   ``M[i, k] = E|dr/dz_i| / E|dr/dz_k|`` (averaged over the regimes on ``k``, at observational
   samples; learned latents have unit observational variance), edge ``i -> k`` when
   ``M[i, k] > graph_threshold``, then the closest DAG (``causal_wm.crl.dag``).
4. Decoder (stage 4). An MLP ``z_hat -> y`` followed by the stage-1 image decoder.

Assumption on the design: the two regimes of a pair intervene on the same single node. By default
the pairs come from the dataset's intervention menu, pairing hard single-node interventions with
the same targets (the published GSCALE-I code makes the same assumption: it is told the pairing);
pass ``pairs`` explicitly for data without a menu, or ``pairs="find"`` to find the pairing from the
data (``causal_wm.crl.pairing.find_pairs`` on the stage-1 codes: a pair's log ratio concentrates its
gradient on one direction of the data manifold).

Hot paths are batched torch on the chosen device (bfloat16 autocast for the autoencoder on CUDA);
frames stream from the HDF5 file per batch unless they fit ``cache_bytes``; the autoencoder writes a
checkpoint every epoch and a rerun resumes it; a non-finite loss raises ``FloatingPointError``
before anything broken is written.

Checks that need no ground truth (docs/science.md section 8) are in ``result.diagnostics``: the held-out
reconstruction error of stage 1 (next to the error of predicting the mean frame) and the held-out
balanced accuracy of every pair classifier next to the Bayes accuracy of the design (0.92 for the
mean-shift pairs); a pair far below its Bayes accuracy flags a failed latent.

Conventions: frames are uint8 ``(N, H, W, 3)`` (gymnasium) or float ``(N, 3, H, W)`` in ``[0, 1]``
(torch); graphs ``A[i, j] = 1`` iff learned ``i -> j``; learned latent ``k`` belongs to pair ``k``
and increases from the first regime of the pair towards the second (``log p^second / p^first``).

Modules: ``config`` (settings and presets), ``frames`` (reading and batching frames), ``result``
(``ImageCRLResult`` and its persistence), ``pipeline`` (``fit_image_crl``), ``readouts`` (stage 2),
``evaluation`` (scores against ground truth and figures).
"""

import importlib

from causal_wm.crl.images.config import PRESETS, ROUTES, ImageCRLConfig, make_config

# the pipeline, the result and the figures import torch: load them on first use
_LAZY = {
    "evaluate_image_crl": "causal_wm.crl.images.evaluation", "image_crl_figures": "causal_wm.crl.images.evaluation",
    "plain_code_mcc": "causal_wm.crl.images.evaluation",
    "fit_image_crl": "causal_wm.crl.images.pipeline", "FORMAT": "causal_wm.crl.images.result",
    "FORMAT_VERSION": "causal_wm.crl.images.result", "ImageCRLResult": "causal_wm.crl.images.result",
    "bayes_accuracy": "causal_wm.crl.pairing", "pairs_from_menu": "causal_wm.crl.pairing",
    "prepare_images": "causal_wm.pixels",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'causal_wm.crl.images' has no attribute {name!r}")


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PRESETS",
    "ROUTES",
    "ImageCRLConfig",
    "ImageCRLResult",
    "bayes_accuracy",
    "evaluate_image_crl",
    "fit_image_crl",
    "image_crl_figures",
    "make_config",
    "pairs_from_menu",
    "plain_code_mcc",
    "prepare_images",
]
