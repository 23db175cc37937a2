"""``CausalWorldModel``: a learned structural causal model over learned latent causal variables.

    model = CausalWorldModel.fit(dataset)                 # images: GSCALE-I pipeline; then mechanisms
    z = model.encode(images)                              # (N, n) learned latents
    z = model.sample(1000, Intervention.do(2, 1.7))       # imagined intervention, never seen in the data
    frames = model.decode(z)                              # (N, S, S, 3) uint8
    planner_model = model.for_menu(env.unwrapped.interventions)   # for causal_wm.agents planners
    adapted, report = model.adapt(model.encode(new_frames), new_regimes)   # after a mechanism shift

Parts, all in the learned latent space (``n`` latents, ``A[i, j] = 1`` iff learned ``i -> j``):

- representation: encoder/decoder and latent graph from causal representation learning
  (``causal_wm.crl.images.fit_image_crl`` for images, ``causal_wm.crl.lscale_i`` for vectors);
- one mechanism per learned latent, ``z_k = f_k(z_pa(k)) + r_k`` (``mechanisms.NodeMechanism``),
  fitted on the rows of every regime that does not intervene on ``k`` (mechanisms are invariant
  there, so seeing and acting data both count);
- for every regime of the data, the learned latents it targets and their interventional
  distributions (empirical quantile functions);
- a calibration ``z_hat_k = a_k + b_k * z_j`` between every true node ``j`` named by the env's
  intervention menu and its learned latent ``k``, fitted from the regimes whose intervention
  distribution is known in the env's units (hard interventions with a given std, do). It lets the
  model imagine interventions the data never showed: other do values, other means, combinations of
  nodes (graph surgery on the learned SCM);
- the temporal persistence of the exogenous noise when the data is sequential: a Gaussian-copula
  AR(1) coefficient per latent, estimated from consecutive rows of the same episode.

Mechanisms are modular, so a change of the world that replaces one mechanism leaves the others valid:
``adapt`` tests every mechanism's residuals on a few new rows and refits only the ones that no longer
fit, starting from their old form.

Noise convention: every latent ``k`` has a standard normal score ``e_k``; its value is the quantile
function of its mechanism's residual (or of its intervention) at ``e_k``. ``predict`` takes
standard normal ``noise`` ``(num, n)``, so planners can compare actions on common random numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from causal_wm._random import derive_seed
from causal_wm._torch import to_jsonable
from causal_wm.config import apply_overrides, config_dict
from causal_wm.crl.images.config import ImageCRLConfig
from causal_wm.crl.lscale import LinearCRLResult
from causal_wm.crl.representation import Representation, representation_from_state
from causal_wm.persistence import ModelFileError, Persistent, check_state, read_state, state_errors
from causal_wm.scm import Intervention
from causal_wm.scm.graphs import topological_order
from causal_wm.world_model.config import WorldModelConfig, make_config, preset_name
from causal_wm.world_model.mechanisms import NodeMechanism, QuantileNoise

FORMAT = "causal_wm.world_model"
FORMAT_VERSION = 1

# An intervention on the model: None (observational), a regime of the data (int), an ``Intervention``
# on the env's true nodes, or ``{learned latent: value | (mean, std) | QuantileNoise}``.
InterventionLike = None | int | Intervention | Mapping[int, Any]


# --- representation for vector observations --------------------------------------------------------
def _fit_linear_representation(x: np.ndarray, regimes: np.ndarray, menu: Sequence[Any] | None,
                               seed: int) -> LinearCRLResult:
    """LSCALE-I on vector observations: one interventional regime per true node (the first single-node
    regime of each target in the menu; without a menu every interventional regime is one node). The
    result's ``env_targets`` also name the multi-node regimes of the menu whose nodes all have a latent."""
    from causal_wm.crl.lscale import lscale_i

    present = sorted(int(r) for r in np.unique(regimes))
    if 0 not in present:
        raise ValueError("the data has no observational rows (regime 0): LSCALE-I needs them")
    chosen: list[int] = []
    if menu is None:
        chosen = [r for r in present if r != 0]
    else:
        seen: set[tuple[int, ...]] = set()
        for r in present:
            iv = menu[r] if r < len(menu) else None
            if r == 0 or iv is None or len(iv.targets) != 1 or iv.targets in seen:
                continue
            seen.add(iv.targets)
            chosen.append(r)
    if not chosen:
        raise ValueError("the data has no interventional regimes: a causal model needs acting data")
    envs = [x[regimes == 0]] + [x[regimes == r] for r in chosen]
    result = lscale_i(envs, n=len(chosen), seed=seed, regimes=chosen)
    env_targets = dict(result.env_targets)
    if menu is not None:
        by_node = {menu[r].targets: env_targets[r] for r in chosen}
        for r in present:
            iv = menu[r] if r < len(menu) else None
            if r != 0 and r not in env_targets and iv is not None and all((t,) in by_node for t in iv.targets):
                env_targets[r] = tuple(sorted({by_node[(t,)][0] for t in iv.targets}))
    return dataclasses.replace(result, env_targets=env_targets)


# --- the model -----------------------------------------------------------------------------------
class CausalWorldModel(Persistent):
    """A learned SCM in a learned latent space with an encoder and a decoder (see the module docstring).

    Build with ``CausalWorldModel.fit`` (or ``fit_arrays``); read with ``CausalWorldModel.load``.

    Attributes:
        representation: the CRL result, any ``causal_wm.crl.Representation`` (``ImageCRLResult`` for
            images, ``LinearCRLResult`` from LSCALE-I for vectors, or a user's own).
        graph: ``(n, n)`` DAG over learned latents.
        mechanisms: ``n`` ``NodeMechanism``.
        regimes: regime of the data -> ``{learned target: QuantileNoise}`` (empty for regime 0).
        menu: the env's intervention menu (``menu[k]`` is regime ``k``), or None.
        latent_of_node: true node ``j`` -> learned latent ``k``.
        calibration: learned latent ``k`` -> ``(a, b)``: ``E[z_hat_k] = a + b * z_true_j``.
        measurement_noise: learned latent ``k`` -> std of ``z_hat_k`` around ``a + b * z_true_j`` (the
            encoder's error, estimated from the variance the calibration regimes add to their own).
        persistence: ``(n,)`` AR(1) coefficient of every latent's exogenous noise (0: i.i.d.).
        diagnostics: fit statistics (held-out mechanism errors, calibration R^2, row counts, seconds).
    """

    FORMAT: ClassVar[str] = FORMAT
    FORMAT_VERSION: ClassVar[int] = FORMAT_VERSION

    def __init__(self, representation: Representation, graph: np.ndarray, mechanisms: list[NodeMechanism],
                 regimes: dict[int, dict[int, QuantileNoise]], menu: Sequence[Any] | None,
                 latent_of_node: dict[int, int], calibration: dict[int, tuple[float, float]],
                 persistence: np.ndarray, diagnostics: dict[str, Any] | None = None,
                 measurement_noise: dict[int, float] | None = None) -> None:
        self.representation = representation
        self.graph = np.asarray(graph, dtype=np.int64)
        self.mechanisms = list(mechanisms)
        self.regimes = {int(r): dict(spec) for r, spec in regimes.items()}
        self.menu = None if menu is None else list(menu)
        self.latent_of_node = {int(j): int(k) for j, k in latent_of_node.items()}
        self.calibration = {int(k): (float(a), float(b)) for k, (a, b) in calibration.items()}
        self.measurement_noise = {int(k): float(v) for k, v in (measurement_noise or {}).items()}
        self.persistence = np.asarray(persistence, dtype=np.float64).reshape(self.n)
        self.diagnostics = dict(diagnostics or {})
        self.order = topological_order(self.graph)

    # --- basics ---
    @property
    def n(self) -> int:
        return int(self.graph.shape[0])

    @property
    def image_size(self) -> int | None:
        return getattr(self.representation, "image_size", None)

    def encode(self, observations: Any) -> np.ndarray:
        """Learned latents ``(N, n)`` float32 of observations (uint8 images ``(N, H, W, 3)``, float
        images ``(N, 3, H, W)`` in ``[0, 1]``, or vectors ``(N, d)`` for a linear representation)."""
        return self.representation.encode(observations)

    def decode(self, z: Any) -> np.ndarray:
        """Observations of learned latents ``(N, n)``: uint8 images ``(N, S, S, 3)`` (or vectors)."""
        return self.representation.decode(z)

    def encoder_module(self) -> nn.Module:
        """A differentiable ``nn.Module`` from observations (float ``(B, 3, H, W)`` in ``[0, 1]``) to ``(B, n)``."""
        return self.representation.encoder_module()

    def to(self, device: Any) -> CausalWorldModel:
        self.representation.to(device)
        return self

    # --- interventions ---
    def _resolve(self, intervention: InterventionLike) -> dict[int, QuantileNoise]:
        """Learned target -> distribution of its value under ``intervention``."""
        if intervention is None:
            return {}
        if isinstance(intervention, bool):
            raise ValueError(f"not an intervention: {intervention!r}")
        if isinstance(intervention, int | np.integer):
            r = int(intervention)
            if r not in self.regimes:
                raise ValueError(f"regime {r} is not in the data the model was fitted on (regimes "
                                 f"{sorted(self.regimes)}); pass an Intervention to imagine a new one")
            return self.regimes[r]
        if isinstance(intervention, Intervention):
            if self.menu is not None:
                for r, iv in enumerate(self.menu):
                    if iv == intervention and r in self.regimes:
                        return self.regimes[r]
            return self._imagined(intervention)
        if isinstance(intervention, Mapping):
            spec: dict[int, QuantileNoise] = {}
            for k, value in intervention.items():
                if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < self.n:
                    raise ValueError(f"learned latent {k!r} is outside 0..{self.n - 1}")
                if isinstance(value, QuantileNoise):
                    spec[int(k)] = value
                elif isinstance(value, tuple | list) and len(value) == 2:
                    spec[int(k)] = QuantileNoise.gaussian(float(value[0]), abs(float(value[1])))
                elif isinstance(value, int | float | np.floating | np.integer) and math.isfinite(value):
                    spec[int(k)] = QuantileNoise.gaussian(float(value), 0.0)
                else:
                    raise ValueError(f"value of learned latent {k} must be a number, (mean, std) or a "
                                     f"QuantileNoise, got {value!r}")
            return spec
        raise ValueError(f"not an intervention: {intervention!r} (None, a regime, an Intervention or a "
                         f"dict learned latent -> value)")

    def _imagined(self, iv: Intervention) -> dict[int, QuantileNoise]:
        """An intervention on true nodes the data never showed, through the calibration maps."""
        if iv.kind not in ("hard", "do"):
            raise ValueError(f"cannot imagine a {iv.kind} intervention outside the data: the learned model "
                             f"imagines hard and do interventions on the env's nodes ({iv.label()})")
        spec: dict[int, QuantileNoise] = {}
        for j in iv.targets:
            if j not in self.latent_of_node:
                raise ValueError(f"node {j} of {iv.label()} has no learned latent (known nodes: "
                                 f"{sorted(self.latent_of_node)}); the data must intervene on it")
            k = self.latent_of_node[j]
            if k not in self.calibration:
                raise ValueError(f"learned latent {k} (node {j}) has no calibration: the data has no intervention "
                                 f"with a known distribution on it")
            a, b = self.calibration[k]
            _, mean, std = iv.node_params(j, 1.0 / abs(b))
            noise = self.measurement_noise.get(k, 0.0)
            spec[k] = QuantileNoise.gaussian(a + b * mean, math.sqrt((b * std) ** 2 + noise**2))
        return spec

    def node_value(self, node: int, value: float) -> float:
        """The learned-latent value of true node ``node`` at ``value`` (calibration map)."""
        k = self.latent_of_node.get(int(node))
        if k is None or k not in self.calibration:
            raise ValueError(f"node {node} has no calibrated learned latent")
        a, b = self.calibration[k]
        return a + b * float(value)

    # --- sampling ---
    def forward(self, e: np.ndarray, intervention: InterventionLike = None) -> np.ndarray:
        """Latents ``(num, n)`` from standard normal scores ``e`` ``(num, n)`` under ``intervention``."""
        spec = self._resolve(intervention)
        e = np.asarray(e, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != self.n:
            raise ValueError(f"noise must be (num, {self.n}), got shape {e.shape}")
        z = np.zeros_like(e)
        for k in self.order:
            if k in spec:
                z[:, k] = spec[k].quantile(e[:, k])
            else:
                mech = self.mechanisms[k]
                z[:, k] = mech.mean(z) + mech.noise.quantile(e[:, k])
        return z

    def abduct(self, z: np.ndarray, intervention: InterventionLike = None) -> np.ndarray:
        """Standard normal scores ``(num, n)`` that ``forward`` maps to latents ``z`` ``(num, n)``."""
        spec = self._resolve(intervention)
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"latents must be (num, {self.n}), got shape {z.shape}")
        e = np.zeros_like(z)
        for k in range(self.n):
            if k in spec:
                e[:, k] = spec[k].score(z[:, k])
            else:
                mech = self.mechanisms[k]
                e[:, k] = mech.noise.score(z[:, k] - mech.mean(z))
        return e

    def predict(self, intervention: InterventionLike, noise: np.ndarray, z_now: np.ndarray | None = None,
                regime_now: InterventionLike = None) -> np.ndarray:
        """Next latents ``(num, n)`` under ``intervention`` from standard normal ``noise`` ``(num, n)``.

        With persistence, ``z_now`` ``(n,)`` and the intervention that produced it (``regime_now``)
        carry the current exogenous noise into the next step (AR(1) in normal scores); ``z_now`` may also
        be ``(num, n)``, one current state per noise row.
        """
        return self.predict_many([intervention], noise, z_now, regime_now)[0]

    def predict_many(self, interventions: Sequence[InterventionLike], noise: np.ndarray,
                     z_now: np.ndarray | None = None, regime_now: InterventionLike = None) -> np.ndarray:
        """``predict`` under every entry of ``interventions`` on the same ``noise`` ``(num, n)``:
        ``(len(interventions), num, n)``, one pass over the nodes for all of them."""
        specs = [self._resolve(iv) for iv in interventions]
        return self._predict_specs(specs, noise, z_now, None if z_now is None else self._resolve(regime_now))

    def _predict_specs(self, specs: Sequence[dict[int, QuantileNoise]], noise: np.ndarray,
                       z_now: np.ndarray | None, spec_now: dict[int, QuantileNoise] | None) -> np.ndarray:
        noise = np.asarray(noise, dtype=np.float64)
        if noise.ndim != 2 or noise.shape[1] != self.n:
            raise ValueError(f"noise must be (num, {self.n}), got shape {noise.shape}")
        if z_now is not None and np.any(self.persistence > 0):
            z = np.asarray(z_now, dtype=np.float64)
            # (n,): one current state for all samples; (num, n): one per sample (chained rollouts)
            z = z.reshape(1, self.n) if z.shape == (self.n,) else z
            rho = self.persistence
            noise = rho * self.abduct(z, spec_now) + np.sqrt(1.0 - rho**2) * noise
        num, count = len(noise), len(specs)
        e = np.tile(noise, (count, 1))
        z = np.zeros_like(e)
        for k in self.order:
            mech = self.mechanisms[k]
            column = mech.mean(z) + mech.noise.quantile(e[:, k])
            for a, spec in enumerate(specs):
                if k in spec:
                    column[a * num:(a + 1) * num] = spec[k].quantile(noise[:, k])
            z[:, k] = column
        return z.reshape(count, num, self.n)

    def sample(self, num: int, intervention: InterventionLike = None, *, seed: int | np.random.Generator = 0,
               z_now: np.ndarray | None = None, regime_now: InterventionLike = None) -> np.ndarray:
        """``num`` latents ``(num, n)`` imagined under ``intervention`` (see ``InterventionLike``)."""
        if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
            raise ValueError(f"num must be a positive int, got {num!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self.predict(intervention, rng.standard_normal((int(num), self.n)), z_now, regime_now)

    def sample_observations(self, num: int, intervention: InterventionLike = None, *, seed: int = 0) -> np.ndarray:
        """Imagined observations (uint8 images ``(num, S, S, 3)``) under ``intervention``."""
        return self.decode(self.sample(num, intervention, seed=seed))

    def for_menu(self, interventions: Sequence[Intervention | None]) -> MenuModel:
        """The model as a planner's ``LatentModel`` whose action ``a`` is ``interventions[a]``
        (e.g. ``env.unwrapped.interventions``, which may hold interventions the data never showed)."""
        return MenuModel(self, interventions)

    # --- adaptation ---
    def adapt(self, z: np.ndarray, regimes: np.ndarray, *, episode: np.ndarray | None = None,
              step: np.ndarray | None = None, threshold: float = 4.0, min_rows: int = 10,
              seed: int = 0) -> tuple[CausalWorldModel, dict[str, Any]]:
        """Adapt to a mechanism shift from ``K`` new rows: find the mechanisms that no longer fit and
        refit only those. Returns a new model and a report; ``self`` is unchanged.

        Detection, per learned latent ``k``, on the new rows whose regime does not intervene on ``k``
        (the rows its mechanism was fitted on: ``representation.env_targets``): the residuals
        ``r = z_k - f_k(z_pa(k))`` are scored by the Gaussian negative log-likelihood ``NLL`` with the
        mean ``mu`` and std ``sigma`` of the mechanism's residual distribution. Under the model,
        ``E[NLL] = 0.5 log(2 pi sigma^2) + 0.5`` whatever the distribution's shape, so the statistic is the
        z-score ``(mean NLL - E[NLL]) / SE`` with the standard error the model implies for unshifted rows:
        ``Var(NLL)`` of the residual distribution (``1/2`` for a Gaussian one) and, with ``episode`` and
        ``step``, the correlation the model's persistence puts between rows of one episode. (A standard
        error estimated from the rows grows with the shift itself and caps the z-score near
        ``sqrt(rows / 2)``, under 5 for 50 rows.) A latent is shifted when its statistic exceeds
        ``threshold``; latents with fewer than ``min_rows`` rows are not tested. A mean shift, a rescaled
        or sign-flipped dependence on the parents or a wider noise all raise the NLL; a narrower noise
        alone is not flagged. The mean NLL of few rows is right-skewed (a scaled chi-square for Gaussian
        residuals), so small samples exceed a threshold somewhat more often than the normal tail says
        (for Gaussian residuals at the default threshold about 5e-4 per mechanism with 40 rows and 2e-3
        with 10, rather than 3e-5).

        Refit of every shifted mechanism on its rows (``NodeMechanism.warm_start``):
        ``alpha * f_old + beta + gamma . z_pa(k)``, a ridge fit towards the old mechanism, usable from
        tens of rows; with at least 400 rows a fresh ``NodeMechanism.fit`` competes on 20 % held-out rows
        and the one with the lower held-out error is kept. The residual distribution is refitted from the
        new residuals. The graph, the other mechanisms, the regimes' intervention distributions, the
        calibration and the persistence are kept.

        Args:
            z: ``(K, n)`` latents in the model's coordinates (``model.encode(observations)``).
            regimes: ``(K,)`` regime of every row (``menu[r]``; 0 observational). Rows of regimes the
                representation names no targets for are left out with an ``UnusedRowsWarning``.
            episode, step: ``(K,)`` ints (both or neither): consecutive rows of one episode, whose
                persistent noise is correlated (without them rows count as independent).
            threshold: z-score above which a mechanism counts as shifted.
            min_rows: fewest rows that test a mechanism (at least 3).
            seed: seeds the held-out split and a fresh fit.

        Returns:
            ``(model, report)``; ``report["mechanisms"]``: per latent ``{"latent", "rows", "statistic"
            (None when untested), "shifted", "nll", "expected_nll"}``; ``report["refitted"]``: the shifted
            latents, highest statistic first; ``report["estimators"]``: latent -> ``"warm start"`` or
            ``"fresh fit"``; ``report["rows_used"]``: rows of known regimes. The report is also appended to
            the new model's ``diagnostics["adaptations"]``.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"latents must be (K, {self.n}), got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("latents contain NaN or infinite values")
        regimes = check_regimes(regimes, self.menu)
        if len(regimes) != len(z):
            raise ValueError(f"{len(z)} rows of latents but {len(regimes)} regime labels")
        if (episode is None) != (step is None):
            raise ValueError("give both episode and step, or neither")
        if episode is not None and step is not None:
            episode, step = np.asarray(episode).reshape(-1), np.asarray(step).reshape(-1)
            if len(episode) != len(z) or len(step) != len(z):
                raise ValueError(f"episode and step must have {len(z)} entries, got {len(episode)} and {len(step)}")
        if not (isinstance(threshold, int | float | np.number) and math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be a positive number, got {threshold!r}")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 3:
            raise ValueError(f"min_rows must be an int >= 3, got {min_rows!r}")

        env_targets = {int(r): tuple(int(t) for t in ts) for r, ts in self.representation.env_targets.items()}
        env_targets[0] = ()
        present = sorted(int(r) for r in np.unique(regimes))
        unknown = [r for r in present if r not in env_targets]
        if unknown:
            counts = {r: int(np.sum(regimes == r)) for r in unknown}
            warnings.warn(f"rows of regimes {counts} (regime: rows) are not used: the model knows no learned "
                          f"targets for them (known regimes {sorted(env_targets)})", UnusedRowsWarning,
                          stacklevel=2)
        known = np.isin(regimes, [r for r in present if r in env_targets])
        if not known.any():
            raise ValueError(f"none of the {len(z)} rows is of a regime the model knows (regimes {present}; "
                             f"known {sorted(env_targets)})")
        z, regimes = z[known], regimes[known]
        if episode is not None and step is not None:
            episode, step = episode[known], step[known]

        tests: list[dict[str, Any]] = []
        rows_of: dict[int, np.ndarray] = {}
        for k in range(self.n):
            free = [r for r in present if r in env_targets and k not in env_targets[r]]
            rows = np.flatnonzero(np.isin(regimes, free))
            rows_of[k] = rows
            entry: dict[str, Any] = {"latent": k, "rows": len(rows), "statistic": None, "shifted": False,
                                     "nll": None, "expected_nll": None}
            if len(rows) >= min_rows:
                statistic, nll, expected = _shift_statistic(
                    self.mechanisms[k], z[rows], k, float(self.persistence[k]),
                    None if episode is None else episode[rows], None if step is None else step[rows])
                entry.update(statistic=statistic, shifted=bool(statistic > threshold), nll=nll,
                             expected_nll=expected)
            tests.append(entry)
        shifted = sorted((e for e in tests if e["shifted"]), key=lambda e: -e["statistic"])

        model = copy.deepcopy(self)
        config = self.diagnostics.get("config", {})
        hidden = int(config.get("mechanism_hidden", WorldModelConfig.mechanism_hidden))
        steps = int(config.get("mechanism_steps", WorldModelConfig.mechanism_steps))
        estimators: dict[int, str] = {}
        for entry in shifted:
            k = entry["latent"]
            rows = rows_of[k]
            mech, estimators[k] = _refit_shifted(self.mechanisms[k], z[rows], k, regimes[rows], hidden=hidden,
                                                 steps=steps, seed=derive_seed(seed, 11, k))
            model.mechanisms[k] = mech
            for diag in model.diagnostics.get("mechanisms", []):
                if diag.get("latent") == k:
                    diag.update(kind=mech.kind, estimator=mech.estimator, adapted=True)
        report: dict[str, Any] = {"mechanisms": tests, "refitted": [e["latent"] for e in shifted],
                                  "estimators": estimators, "rows_used": int(known.sum()),
                                  "unused_regimes": unknown, "threshold": float(threshold)}
        model.diagnostics.setdefault("adaptations", []).append(to_jsonable(report))
        return model, report

    # --- fitting ---
    @classmethod
    def fit(cls, dataset: Any, *, preset: str = "default", config: WorldModelConfig | None = None,
            overrides: Mapping[str, Any] | None = None, device: str | torch.device = "auto", seed: int = 0,
            representation: Representation | None = None, checkpoint_dir: str | os.PathLike | None = None,
            progress: bool = True, menu: Sequence[Any] | None = None,
            pairs: Sequence[tuple[int, int]] | str | None = None,
            crl_options: Mapping[str, Any] | None = None) -> CausalWorldModel:
        """Learn the causal world model of a collection (``causal_wm.data.Dataset`` or its path).

        Args:
            dataset: the collection (seeing and acting data with regime labels).
            preset: ``"default"`` (``"full"`` on CUDA, ``"cpu"`` elsewhere), ``"debug"``, ``"cpu"`` or
                ``"full"`` (``causal_wm.world_model.config.PRESETS``); ignored when ``config`` is given.
            config: a ``WorldModelConfig`` (e.g. from ``make_config``) instead of a preset.
            overrides: settings on top of the preset or config, nested or dotted
                (``{"crl.max_per_regime": 20_000, "mechanism_steps": 800}``).
            device: torch device of the representation learner.
            seed: seeds every stage.
            representation: an already fitted ``causal_wm.crl.Representation`` to build on (skips CRL).
            checkpoint_dir: checkpoints of the representation learner (a rerun resumes).
            progress: progress bars.
            menu: the intervention menu; default the dataset's.
            pairs: the two hard interventions of every node, ``[(first, second), ...]`` regimes, or
                ``"find"`` (from the data); default from the menu (``causal_wm.crl.pairing``).
            crl_options: other keyword arguments of ``causal_wm.crl.images.fit_image_crl`` (e.g.
                ``callback``); ``ImageCRLConfig`` fields given here count as ``crl.`` overrides.

        The resolved config is in ``model.diagnostics["config"]``.
        """
        from causal_wm.data import Dataset
        from causal_wm.device import resolve_device

        if isinstance(dataset, str | os.PathLike):
            dataset = Dataset(dataset)
        if not isinstance(dataset, Dataset):
            raise ValueError(f"dataset must be a causal_wm.data.Dataset or its path, got {type(dataset).__name__}; "
                             f"for arrays use CausalWorldModel.fit_arrays")
        if len(dataset) == 0:
            raise ValueError(f"{dataset.path} has no rows")
        torch_device = resolve_device(device)
        name = "custom" if config is not None else preset_name(preset, torch_device.type)
        options = dict(crl_options or {})
        crl_fields = {f.name for f in dataclasses.fields(ImageCRLConfig)}
        crl_overrides = {k: options.pop(k) for k in list(options) if k in crl_fields}
        if "pairs" in options:
            if pairs is not None:
                raise ValueError("pairs given twice (as pairs= and in crl_options)")
            pairs = options.pop("pairs")
        config = apply_overrides(config if config is not None else make_config(name), overrides)
        config = apply_overrides(config, {"crl": crl_overrides})
        menu = dataset.menu if menu is None else list(menu)
        if representation is None:
            if len(dataset.obs_shape) != 3:
                raise ValueError(f"observations of shape {dataset.obs_shape} are not images; use fit_arrays")
            from causal_wm.crl.images import fit_image_crl

            representation = fit_image_crl(dataset, preset=name, config=config.crl, device=torch_device, seed=seed,
                                           checkpoint_dir=checkpoint_dir, progress=progress, menu=menu,
                                           pairs=pairs, **options)
        _check_representation(representation)
        z = encode_dataset(representation, dataset, progress=progress)
        return cls._fit_latents(representation, z, dataset.regime, menu, dataset.episode, dataset.step,
                                config=config, preset=name, seed=seed)

    @classmethod
    def fit_arrays(cls, observations: np.ndarray, regimes: np.ndarray, *, menu: Sequence[Any] | None = None,
                   episode: np.ndarray | None = None, step: np.ndarray | None = None, preset: str = "cpu",
                   config: WorldModelConfig | None = None, overrides: Mapping[str, Any] | None = None,
                   seed: int = 0, representation: Representation | None = None) -> CausalWorldModel:
        """Learn the model from in-memory data: vectors ``(N, d)`` (LSCALE-I: linear mixing, one hard
        intervention per latent) or, with ``representation`` (any ``causal_wm.crl.Representation``),
        anything it encodes.

        ``regimes`` ``(N,)`` labels every row (0 observational); ``episode`` and ``step`` ``(N,)`` mark
        consecutive rows (rows in episode order) for the persistence estimate. ``preset``, ``config``
        and ``overrides`` as in ``fit`` (only the mechanism settings matter here).
        """
        regimes = check_regimes(regimes, menu)
        if len(regimes) != len(observations):
            raise ValueError(f"{len(observations)} observations but {len(regimes)} regime labels")
        name = "custom" if config is not None else preset_name(preset, "cpu")
        config = apply_overrides(config if config is not None else make_config(name), overrides)
        if representation is None:
            x = np.asarray(observations, dtype=np.float64)
            if x.ndim != 2:
                raise ValueError(f"fit_arrays without a representation takes vectors (N, d), got shape {x.shape}")
            if not np.all(np.isfinite(x)):
                raise ValueError("observations contain NaN or infinite values")
            representation = _fit_linear_representation(x, regimes, menu, seed)
        _check_representation(representation)
        z = np.asarray(representation.encode(observations), dtype=np.float64)
        return cls._fit_latents(representation, z, regimes, menu, episode, step, config=config, preset=name,
                                seed=seed)

    @classmethod
    def _fit_latents(cls, representation: Representation, z: np.ndarray, regimes: np.ndarray,
                     menu: Sequence[Any] | None, episode: np.ndarray | None, step: np.ndarray | None, *,
                     config: WorldModelConfig, preset: str, seed: int) -> CausalWorldModel:
        z = np.asarray(z, dtype=np.float64)
        regimes = np.asarray(regimes, dtype=np.int64)
        if not np.all(np.isfinite(z)):
            raise ValueError("the encoder produced NaN or infinite latents")
        n = int(representation.n)
        graph = np.asarray(representation.graph, dtype=np.int64)
        env_targets = {int(r): tuple(int(t) for t in ts) for r, ts in representation.env_targets.items()}
        env_targets[0] = ()
        present = sorted(int(r) for r in np.unique(regimes))
        if 0 not in present:
            raise ValueError("the data has no observational rows (regime 0)")
        unknown = [r for r in present if r not in env_targets]
        known = np.isin(regimes, [r for r in present if r in env_targets])
        if unknown:
            counts = {r: int(np.sum(regimes == r)) for r in unknown}
            warnings.warn(f"rows of regimes {counts} (regime: rows) are not used: the representation names no "
                          f"learned latents for them (its env_targets cover regimes {sorted(env_targets)}), so "
                          "neither their mechanisms nor their interventions can be learned", UnusedRowsWarning,
                          stacklevel=3)
        diagnostics: dict[str, Any] = {"rows": len(z), "unused_regimes": unknown, "preset": preset,
                                       "config": config_dict(config)}
        # mechanisms on every row whose regime leaves the node alone
        mechanisms = []
        mech_diag = []
        # the parametric image route already fitted a latent SCM in these coordinates: start from it
        latent_scm = getattr(representation, "latent_scm", None) if config.mechanisms_from_representation else None
        for k in range(n):
            free = [r for r in present if r in env_targets and k not in env_targets[r]]
            rows = np.isin(regimes, free)
            parents = [int(p) for p in np.flatnonzero(graph[:, k])]
            if latent_scm is not None:
                mech = NodeMechanism.from_latent_scm(latent_scm, k, parents, z[rows])
            else:
                mech = NodeMechanism.fit(z[rows], k, parents, regimes=regimes[rows], hidden=config.mechanism_hidden,
                                         steps=config.mechanism_steps, seed=derive_seed(seed, 7, k))
            mechanisms.append(mech)
            resid = z[rows, k] - mech.mean(z[rows])
            mech_diag.append({"latent": k, "parents": parents, "kind": mech.kind, "estimator": mech.estimator,
                              "weights": mech.weights.tolist(), "rows": int(rows.sum()),
                              "residual_var": float(np.var(resid)), "marginal_var": float(np.var(z[rows, k]))})
        diagnostics["mechanisms"] = mech_diag
        # interventional distributions of every regime's targets
        regime_models: dict[int, dict[int, QuantileNoise]] = {0: {}}
        laws = {} if latent_scm is None else {
            (int(r), int(t)): (float(latent_scm.law_mean[i, t]), float(latent_scm.law_std[i, t]))
            for i, (r, ts) in enumerate(zip(latent_scm.regimes, latent_scm.targets, strict=True)) for t in ts}
        for r in present:
            if r == 0 or r not in env_targets:
                continue
            rows = regimes == r
            # the latent SCM's intervention law where it has one, else the encoded frames' quantiles
            regime_models[r] = {t: QuantileNoise.gaussian(*laws[(r, t)]) if (r, t) in laws
                                else QuantileNoise.fit(z[rows, t]) for t in env_targets[r]}
        diagnostics["intervention_laws"] = "latent SCM of the representation" if laws else "encoded frames"
        # true node <-> learned latent and calibration
        latent_of_node: dict[int, int] = {}
        moments: dict[int, list[tuple[float, float, float, float, int]]] = {}
        if menu is not None:
            for r, spec in regime_models.items():
                iv = menu[r] if r < len(menu) else None
                if iv is None or len(iv.targets) != 1 or len(spec) != 1:
                    continue
                (j,), (k,) = iv.targets, tuple(spec)
                latent_of_node.setdefault(int(j), int(k))
                if iv.kind == "do" or (iv.kind == "hard" and iv.std is not None):
                    _, mean, std = iv.node_params(j, 1.0)
                    values = z[regimes == r, k]
                    moments.setdefault(k, []).append((mean, std, float(values.mean()), float(values.var()),
                                                      len(values)))
        calibration, noise, calib_diag = _calibrate(moments)
        diagnostics["calibration"] = calib_diag
        model = cls(representation, graph, mechanisms, regime_models, menu, latent_of_node, calibration,
                    np.zeros(n), diagnostics, measurement_noise=noise)
        model.persistence, diagnostics["persistence"] = _fit_persistence(model, z, regimes, known, episode, step)
        return model

    # --- persistence on disk (``save`` and ``load`` from ``causal_wm.persistence.Persistent``) ---
    def state(self) -> dict[str, Any]:
        """Everything ``from_state`` needs: plain tensors, lists and strings (``weights_only``-safe)."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "representation": self.representation.state(),
            "graph": torch.as_tensor(self.graph),
            "mechanisms": json.dumps([m.state() for m in self.mechanisms]),
            "regimes": json.dumps({str(r): {str(k): q.state() for k, q in spec.items()}
                                   for r, spec in self.regimes.items()}),
            "menu": json.dumps(None if self.menu is None else [None if iv is None else iv.to_dict()
                                                               for iv in self.menu]),
            "latent_of_node": json.dumps({str(j): k for j, k in self.latent_of_node.items()}),
            "calibration": json.dumps({str(k): list(v) for k, v in self.calibration.items()}),
            "measurement_noise": json.dumps({str(k): v for k, v in self.measurement_noise.items()}),
            "persistence": torch.as_tensor(self.persistence),
            "diagnostics": json.dumps(to_jsonable(self.diagnostics)),
        }

    @classmethod
    def from_state(cls, state: Any, device: str | torch.device = "auto", source: str = "state") -> CausalWorldModel:
        check_state(state, format=FORMAT, version=FORMAT_VERSION, source=source)
        if state.get("representation_kind") == "linear":
            raise ModelFileError(f"{source} holds a vector world model written by an earlier causal_wm; fit it "
                                 "again (CausalWorldModel.fit_arrays)")
        with state_errors(source, "causal world model"):
            representation = representation_from_state(state["representation"], device,
                                                       source=f"{source} (representation)")
            menu_raw = json.loads(state["menu"])
            menu = None if menu_raw is None else [None if d is None else Intervention.from_dict(d) for d in menu_raw]
            regimes = {int(r): {int(k): QuantileNoise(np.asarray(v)) for k, v in spec.items()}
                       for r, spec in json.loads(state["regimes"]).items()}
            return cls(representation, state["graph"].numpy(),
                       [NodeMechanism.from_state(m) for m in json.loads(state["mechanisms"])], regimes, menu,
                       {int(j): k for j, k in json.loads(state["latent_of_node"]).items()},
                       {int(k): tuple(v) for k, v in json.loads(state["calibration"]).items()},
                       state["persistence"].numpy(), json.loads(state["diagnostics"]),
                       {int(k): v for k, v in json.loads(state["measurement_noise"]).items()})

    def __repr__(self) -> str:
        edges = int(self.graph.sum())
        kind = type(self.representation).__name__
        return (f"CausalWorldModel(n={self.n}, edges={edges}, representation={kind}, regimes={len(self.regimes)}, "
                f"persistence={np.round(self.persistence, 2).tolist()})")


class MenuModel:
    """A ``CausalWorldModel`` seen through an action menu: action ``a`` is ``interventions[a]``
    (satisfies ``causal_wm.agents.planners.LatentModel``)."""

    def __init__(self, model: CausalWorldModel, interventions: Sequence[Intervention | None]) -> None:
        self.model = model
        self.interventions = list(interventions)
        if not self.interventions:
            raise ValueError("the menu is empty")
        self.specs = [model._resolve(iv) for iv in self.interventions]
        self.n = model.n
        self.num_actions = len(self.interventions)

    def predict(self, action: int, noise: np.ndarray, z_now: np.ndarray | None = None,
                regime_now: int | None = None) -> np.ndarray:
        return self.predict_actions([action], noise, z_now, regime_now)[0]

    def predict_actions(self, actions: Sequence[int], noise: np.ndarray, z_now: np.ndarray | None = None,
                        regime_now: int | None = None) -> np.ndarray:
        """``predict`` of every menu entry in ``actions`` on the same noise: ``(len(actions), num, n)``."""
        bad = [a for a in actions if not 0 <= a < self.num_actions]
        if bad:
            raise ValueError(f"action {bad[0]} is outside 0..{self.num_actions - 1}")
        now = None if regime_now is None else self.specs[regime_now]
        return self.model._predict_specs([self.specs[a] for a in actions], noise, z_now, now)


def _calibrate(moments: Mapping[int, list[tuple[float, float, float, float, int]]]
               ) -> tuple[dict[int, tuple[float, float]], dict[int, float], dict[str, Any]]:
    """Per learned latent, from the regimes with a known distribution ``N(mu, sigma^2)`` of its true node
    (``(mu, sigma, learned mean, learned variance, rows)`` each): the line ``learned mean = a + b mu``
    (count-weighted least squares over regimes; needs two different means) and the encoder's noise
    std ``sqrt(mean(learned variance - b^2 sigma^2))``. Means, not quantiles: the encoder's own error
    widens every learned distribution, which would inflate a slope read off the spreads."""
    calibration: dict[int, tuple[float, float]] = {}
    noise: dict[int, float] = {}
    diagnostics: dict[str, Any] = {}
    for k, items in moments.items():
        mu, sigma, m, v, count = (np.array(col, dtype=np.float64) for col in zip(*items, strict=True))
        if np.ptp(mu) < 0.1:
            continue
        w = count / count.sum()
        mu_bar, m_bar = float(w @ mu), float(w @ m)
        b = float(w @ ((mu - mu_bar) * (m - m_bar)) / (w @ (mu - mu_bar) ** 2))
        if abs(b) < 1e-6:
            continue
        a = m_bar - b * mu_bar
        extra = float(w @ (v - b**2 * sigma**2))
        calibration[int(k)] = (a, b)
        noise[int(k)] = math.sqrt(max(extra, 0.0))
        diagnostics[str(k)] = {"a": a, "b": b, "noise_std": noise[int(k)], "regimes": len(items),
                               "max_mean_residual": float(np.max(np.abs(m - a - b * mu)))}
    return calibration, noise, diagnostics


def encode_dataset(representation: Any, dataset: Any, *, chunk: int = 4096, progress: bool = True) -> np.ndarray:
    """Latents ``(N, n)`` float64 of every row of a collection, read and encoded ``chunk`` rows at a time
    (``representation``: anything with ``encode``, e.g. a ``CausalWorldModel``)."""
    from tqdm.auto import tqdm

    out = []
    for start in tqdm(range(0, len(dataset), chunk), desc="encode", disable=not progress, leave=False):
        out.append(representation.encode(dataset.observations(slice(start, start + chunk))))
    return np.concatenate(out).astype(np.float64)


def _fit_persistence(model: CausalWorldModel, z: np.ndarray, regimes: np.ndarray, known: np.ndarray,
                     episode: np.ndarray | None, step: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
    """AR(1) coefficient per latent of the normal scores of consecutive rows; 0 unless significant."""
    n = model.n
    if episode is None or step is None or len(z) < 2:
        return np.zeros(n), {"pairs": 0}
    episode, step = np.asarray(episode), np.asarray(step)
    consecutive = (episode[1:] == episode[:-1]) & (step[1:] == step[:-1] + 1) & known[1:] & known[:-1]
    idx = np.flatnonzero(consecutive)
    if len(idx) < 50:
        return np.zeros(n), {"pairs": len(idx)}
    e = np.zeros_like(z)
    for r in np.unique(regimes[known]):
        rows = np.flatnonzero((regimes == r) & known)
        e[rows] = model.abduct(z[rows], int(r))
    e = np.clip(e, -5.0, 5.0)
    a, b = e[idx], e[idx + 1]
    rho = np.array([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(n)])
    raw = np.nan_to_num(rho)
    significant = raw > 3.0 / math.sqrt(len(idx))
    rho = np.where(significant, np.clip(raw, 0.0, 0.99), 0.0)
    return rho, {"pairs": len(idx), "raw": raw.tolist()}


def _shift_statistic(mech: NodeMechanism, z: np.ndarray, k: int, rho: float, episode: np.ndarray | None,
                     step: np.ndarray | None) -> tuple[float, float, float]:
    """``(z-score, mean NLL, expected NLL)`` of the residuals of latent ``k`` on rows ``z`` ``(m, n)``
    under the Gaussian with the mean and std of ``mech.noise`` (see ``CausalWorldModel.adapt``).

    The standard error is the one the model implies without a shift: ``Var(NLL)`` of the residual
    distribution (quadrature of its quantile function), times the design effect of the persistence
    ``rho`` between rows of one episode (AR(1) normal scores: ``Corr(u_i^2, u_j^2) = rho^(2 |t_i - t_j|)``).
    A standard error estimated from the rows would grow with the shift itself and cap the z-score near
    ``sqrt(m / 2)``."""
    from scipy.special import ndtri

    points = 1 << 16
    x = mech.noise.quantile(ndtri((np.arange(points) + 0.5) / points))
    mu, sigma = float(np.mean(x)), max(float(np.std(x)), 1e-12)
    var_nll = float(np.var(0.5 * ((x - mu) / sigma) ** 2))
    u = (z[:, k] - mech.mean(z) - mu) / sigma
    nll = 0.5 * math.log(2.0 * math.pi * sigma**2) + 0.5 * u**2
    expected = 0.5 * math.log(2.0 * math.pi * sigma**2) + 0.5
    m = len(nll)
    pairs = float(m)  # sum over row pairs of the correlation of their NLLs (i.i.d.: the m diagonal terms)
    if rho > 0 and episode is not None and step is not None:
        pairs = 0.0
        for e in np.unique(episode):
            t = np.sort(step[episode == e]).astype(np.float64)
            if len(t) <= 4096:
                pairs += float(np.sum(rho ** (2.0 * np.abs(t[:, None] - t[None, :]))))
            else:  # a long run of consecutive rows: the stationary design effect
                pairs += len(t) * (1.0 + rho**2) / (1.0 - rho**2)
    se = math.sqrt(var_nll * pairs) / m
    return float((nll.mean() - expected) / max(se, 1e-12)), float(nll.mean()), expected


def _refit_shifted(old: NodeMechanism, z: np.ndarray, k: int, regimes: np.ndarray, *, hidden: int, steps: int,
                   seed: int, fresh_rows: int = 400) -> tuple[NodeMechanism, str]:
    """The mechanism of latent ``k`` refitted on rows ``z`` ``(m, n)`` after a shift: the warm start from
    ``old``, or with at least ``fresh_rows`` rows a fresh fit when it has the lower error on 20 %
    held-out rows (the residuals' spread around the noise's mean, so a root's fresh fit, whose location
    is in its noise, compares fairly). Returns the mechanism and ``"warm start"`` or ``"fresh fit"``."""
    if len(z) < fresh_rows:
        return NodeMechanism.warm_start(old, z, k), "warm start"
    order = np.random.default_rng(seed).permutation(len(z))
    val, train = order[: len(z) // 5], order[len(z) // 5:]

    def held_out(mech: NodeMechanism) -> float:
        centre = mech.noise.moments()[0]
        return float(np.mean((z[val, k] - mech.mean(z[val]) - centre) ** 2))

    warm = NodeMechanism.warm_start(old, z[train], k)
    fresh = NodeMechanism.fit(z[train], k, old.parents, regimes=regimes[train], hidden=hidden, steps=steps,
                              seed=seed)
    if held_out(fresh) < held_out(warm):
        fresh = NodeMechanism.fit(z, k, old.parents, regimes=regimes, hidden=hidden, steps=steps, seed=seed)
        return fresh, "fresh fit"
    return NodeMechanism.warm_start(old, z, k), "warm start"


class UnusedRowsWarning(UserWarning):
    """Rows of the data that a fit cannot use (their regime's targets are unknown to the representation)."""


def check_regimes(regimes: Any, menu: Sequence[Any] | None = None) -> np.ndarray:
    """Regime labels ``(N,)`` as int64, refusing what would be silently wrong: floats that are not
    whole numbers (or any float array with a fractional part), negative labels, non-finite values and,
    with a menu, labels outside it (regime ``k`` is ``menu[k]``)."""
    raw = np.asarray(regimes)
    if raw.dtype == bool or raw.dtype.kind not in "iuf":
        raise ValueError(f"regime labels must be integers, got dtype {raw.dtype}")
    raw = raw.reshape(-1)
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise ValueError("regime labels contain NaN or infinite values")
        if np.any(raw != np.round(raw)):
            bad = raw[raw != np.round(raw)][:3].tolist()
            raise ValueError(f"regime labels must be whole numbers, got e.g. {bad}")
    labels = raw.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise ValueError(f"regime labels must be >= 0 (0 observational, k the k-th menu entry), got {labels.min()}")
    if menu is not None and len(labels) and labels.max() >= len(menu):
        outside = sorted(int(r) for r in np.unique(labels[labels >= len(menu)]))
        raise ValueError(f"regimes {outside} are not in the menu (regimes 0..{len(menu) - 1}); pass the menu the "
                         "data was collected with")
    return labels


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> Any:
    """Read a ``CausalWorldModel`` or a representation (e.g. an ``ImageCRLResult``) from ``path``, by the
    file's format tag (``ModelFileError`` for anything else)."""
    state = read_state(path, "a causal world model or a representation")
    if state["format"] == FORMAT:
        return CausalWorldModel.from_state(state, device, source=str(path))
    return representation_from_state(state, device, source=str(path))


def _check_representation(representation: Any) -> None:
    if not isinstance(representation, Representation):
        missing = [name for name in ("n", "graph", "env_targets", "diagnostics", "encode", "decode", "encoder_module",
                                     "to", "state", "from_state") if not hasattr(representation, name)]
        raise ValueError(f"representation {type(representation).__name__} is not a causal_wm.crl.Representation "
                         f"(missing {missing})")
