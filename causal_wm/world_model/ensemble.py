"""A probabilistic ensemble baseline (PETS, Chua et al. 2018): several ``ActionConditionedModel``
members with the same inputs, each trained on its own bootstrap resample of the rows with its own seed.

The members' disagreement is the epistemic uncertainty, each member's Gaussian the aleatoric one. The
ensemble predicts by trajectory sampling: particle ``i`` (row ``i`` of the standard normal ``noise``)
is propagated by member ``i % members``, so the same particle rows see the same member under every
action (common random numbers) and along a chained rollout (``z_now`` one row per particle).

    ensemble = ProbabilisticEnsemble().fit(z, interventions, episode=episode, step=step, members=5)
    z_next = ensemble.predict(Intervention.do(1, 1.5), noise)      # (num, n), noise (num, n)
    planner_model = ensemble.for_menu(env.unwrapped.interventions)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from causal_wm._random import derive_seed
from causal_wm.persistence import Persistent, check_state, state_errors
from causal_wm.scm import Intervention
from causal_wm.world_model.baseline import (
    ActionConditionedMenuModel,
    ActionConditionedModel,
    _check_latents,
    _check_rows,
)

FORMAT = "causal_wm.probabilistic_ensemble"
FORMAT_VERSION = 1


class ProbabilisticEnsemble(Persistent):
    """Bootstrap ensemble of ``ActionConditionedModel`` (see the module docstring).

    Create, then ``fit``; or ``ProbabilisticEnsemble.load(path)``. Attributes after fitting:
    ``members`` (the fitted models), ``n``, ``num_nodes``, ``transitions``.
    """

    FORMAT: ClassVar[str] = FORMAT
    FORMAT_VERSION: ClassVar[int] = FORMAT_VERSION

    def __init__(self, members: Sequence[ActionConditionedModel] | None = None) -> None:
        self.members: list[ActionConditionedModel] = []
        if members is not None:
            self._set_members(list(members))

    def _set_members(self, members: list[ActionConditionedModel]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for m in members:
            m._require_fitted()
        first = members[0]
        for m in members[1:]:
            if (m.n, m.num_nodes, m.transitions) != (first.n, first.num_nodes, first.transitions):
                raise ValueError("ensemble members must share n, num_nodes and transitions, got "
                                 f"{(first.n, first.num_nodes, first.transitions)} and "
                                 f"{(m.n, m.num_nodes, m.transitions)}")
        self.members = members

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, z: np.ndarray, interventions: Sequence[Intervention | None], *,
            episode: np.ndarray | None = None, step: np.ndarray | None = None, members: int = 5, seed: int = 0,
            device: Any = "auto", progress: bool = False, **fit_kwargs: Any) -> ProbabilisticEnsemble:
        """Fit ``members`` models, each on a bootstrap resample of the rows; returns ``self``.

        Args:
            z, interventions, episode, step: as in ``ActionConditionedModel.fit``. With episodes, whole
                episodes are resampled (a duplicated episode gets a new id, so its transitions stay
                transitions); without, rows.
            members: ensemble size (>= 1).
            seed: member ``m`` resamples and trains with ``derive_seed(seed, m)``.
            device, progress: as in ``ActionConditionedModel.fit`` (the bar counts members).
            fit_kwargs: other ``ActionConditionedModel.fit`` settings (``hidden``, ``epochs``, ...). The
                intervention features describe the same ``num_nodes`` in every member (default from
                all rows, not the resample).
        """
        from tqdm.auto import tqdm

        if isinstance(members, bool) or not isinstance(members, int | np.integer) or members < 1:
            raise ValueError(f"members must be a positive int, got {members!r}")
        z, interventions, episode, step = _check_rows(z, interventions, episode, step)
        N, n = z.shape
        if N < 10:
            raise ValueError(f"need at least 10 rows to fit and hold out data, got {N}")
        if fit_kwargs.get("num_nodes") is None:
            highest = max((max(iv.targets) for iv in interventions if iv is not None), default=-1)
            fit_kwargs["num_nodes"] = max(n, highest + 1)
        fitted = []
        for m in tqdm(range(int(members)), desc="ensemble members", disable=not progress):
            member_seed = derive_seed(seed, m)
            rows, new_episode = _bootstrap(N, episode, np.random.default_rng(member_seed))
            fitted.append(ActionConditionedModel().fit(
                z[rows], [interventions[i] for i in rows], episode=new_episode,
                step=None if step is None else step[rows], seed=member_seed, device=device, **fit_kwargs))
        self._set_members(fitted)
        return self

    def fine_tune(self, z: np.ndarray, interventions: Sequence[Intervention | None], *,
                  episode: np.ndarray | None = None, step: np.ndarray | None = None, seed: int = 0,
                  **fine_tune_kwargs: Any) -> ProbabilisticEnsemble:
        """Fine-tune every member on all the new rows (``ActionConditionedModel.fine_tune``, member
        ``m`` with ``derive_seed(seed, m)``); returns a new ensemble, ``self`` is unchanged."""
        self._require_fitted()
        return ProbabilisticEnsemble([
            member.fine_tune(z, interventions, episode=episode, step=step, seed=derive_seed(seed, m),
                             **fine_tune_kwargs)
            for m, member in enumerate(self.members)])

    # --- basics -------------------------------------------------------------------------------
    def _require_fitted(self) -> list[ActionConditionedModel]:
        if not self.members:
            raise ValueError("the ensemble is not fitted: call fit(...) or ProbabilisticEnsemble.load(path)")
        return self.members

    @property
    def n(self) -> int:
        return self._require_fitted()[0].n

    @property
    def num_nodes(self) -> int:
        return self._require_fitted()[0].num_nodes

    @property
    def transitions(self) -> bool:
        return self._require_fitted()[0].transitions

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of all members together."""
        return sum(m.num_parameters for m in self._require_fitted())

    def _feature(self, intervention: Intervention | None) -> np.ndarray:
        """The intervention's features (the same in every member); validates its targets."""
        return self._require_fitted()[0]._feature(intervention)

    # --- prediction ---------------------------------------------------------------------------
    def predict(self, intervention: Intervention | None, noise: np.ndarray, z_now: np.ndarray | None = None,
                intervention_now: Intervention | None = None) -> np.ndarray:
        """Next latents ``(num, n)`` under ``intervention`` from standard normal ``noise`` ``(num, n)``:
        row ``i`` is member ``i % members``'s ``predict`` of noise row ``i``. ``z_now`` ``(n,)`` (one
        state for all rows) or ``(num, n)`` (one per row) and ``intervention_now`` as in
        ``ActionConditionedModel.predict``."""
        return self.predict_many([intervention], noise, z_now, intervention_now)[0]

    def predict_many(self, interventions: Sequence[Intervention | None], noise: np.ndarray,
                     z_now: np.ndarray | None = None, intervention_now: Intervention | None = None) -> np.ndarray:
        """``predict`` under every entry of ``interventions`` on the same ``noise`` (row ``i`` stays on
        member ``i % members``): ``(len(interventions), num, n)``, one network pass per member."""
        members = self._require_fitted()
        noise = _check_latents(noise, "noise", self.n)
        num = len(noise)
        per_row = None
        if z_now is not None and self.transitions:
            per_row = np.asarray(z_now, dtype=np.float64)
            if per_row.shape == (self.n,):
                per_row = None
            elif per_row.shape != (num, self.n):
                raise ValueError(f"z_now must have shape ({self.n},) or ({num}, {self.n}), got {np.shape(z_now)}")
        out = np.empty((len(interventions), num, self.n))
        for m, member in enumerate(members):
            rows = np.arange(m, num, len(members))
            if len(rows):
                now = z_now if per_row is None else per_row[rows]
                out[:, rows] = member.predict_many(interventions, noise[rows], now, intervention_now)
        return out

    def sample(self, num: int, intervention: Intervention | None, *, z_now: np.ndarray | None = None,
               intervention_now: Intervention | None = None, seed: int = 0) -> np.ndarray:
        """``num`` samples ``(num, n)`` of the next latents (see ``predict``)."""
        if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
            raise ValueError(f"num must be a positive int, got {num!r}")
        noise = np.random.default_rng(seed).standard_normal((int(num), self.n))
        return self.predict(intervention, noise, z_now, intervention_now)

    def moments(self, intervention: Intervention | None, z_now: np.ndarray | None = None,
                intervention_now: Intervention | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(n,)`` and covariance ``(n, n)`` of the equal-weight mixture of the members'
        Gaussians (one ``z_now`` ``(n,)``): the mean of the covariances plus the spread of the means."""
        parts = [m.moments(intervention, z_now, intervention_now) for m in self._require_fitted()]
        means = np.stack([p[0] for p in parts])
        mean = means.mean(axis=0)
        spread = (means - mean).T @ (means - mean) / len(parts)
        return mean, np.mean([p[1] for p in parts], axis=0) + spread

    def log_prob(self, z: np.ndarray, intervention: Intervention | None, z_now: np.ndarray | None = None,
                 intervention_now: Intervention | None = None) -> np.ndarray:
        """Log-density ``(N,)`` of latents ``z`` ``(N, n)`` under the mixture: the log of the mean of
        the members' densities."""
        from scipy.special import logsumexp

        members = self._require_fitted()
        logs = np.stack([m.log_prob(z, intervention, z_now, intervention_now) for m in members])
        return logsumexp(logs, axis=0) - math.log(len(members))

    def for_menu(self, interventions: Sequence[Intervention | None]) -> ActionConditionedMenuModel:
        """A planner's ``LatentModel`` over this menu (``n``, ``num_actions``,
        ``predict(action, noise, z_now=None, regime_now=None)``), with trajectory sampling."""
        self._require_fitted()
        return ActionConditionedMenuModel(self, interventions)

    # --- persistence --------------------------------------------------------------------------
    # ``save`` and ``load`` come from ``causal_wm.persistence.Persistent``
    def state(self) -> dict[str, Any]:
        """The members' states (plain tensors, lists and numbers: ``weights_only``-safe)."""
        return {"format": FORMAT, "version": FORMAT_VERSION,
                "members": [m.state() for m in self._require_fitted()]}

    @classmethod
    def from_state(cls, state: Any, device: Any = "auto", source: str = "state") -> ProbabilisticEnsemble:
        """Rebuild an ensemble from ``state()`` onto ``device``."""
        check_state(state, format=FORMAT, version=FORMAT_VERSION, source=source)
        with state_errors(source, "probabilistic ensemble"):
            members = [ActionConditionedModel.from_state(s, device, source=f"{source} (member {i})")
                       for i, s in enumerate(state["members"])]
            return cls(members)

    def __repr__(self) -> str:
        if not self.members:
            return "ProbabilisticEnsemble(unfitted)"
        return (f"ProbabilisticEnsemble(members={len(self.members)}, n={self.n}, transitions={self.transitions}, "
                f"parameters={self.num_parameters})")


def _bootstrap(N: int, episode: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows ``(M,)`` of a bootstrap resample and, with episodes, the resample's episode ids ``(M,)``
    (draw ``d`` of episode ``e`` becomes episode ``d``, so duplicates stay apart)."""
    if episode is None:
        return rng.integers(N, size=N), None
    ids = np.unique(episode)
    drawn = rng.choice(ids, size=len(ids), replace=True)
    rows_of = {e: np.flatnonzero(episode == e) for e in np.unique(drawn)}
    rows = np.concatenate([rows_of[e] for e in drawn])
    new_episode = np.concatenate([np.full(len(rows_of[e]), d, dtype=np.int64) for d, e in enumerate(drawn)])
    return rows, new_episode
