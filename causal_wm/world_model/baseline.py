"""A non-causal baseline world model: an action-conditioned Gaussian predictor in latent space.

``ActionConditionedModel`` predicts the next latents ``(n,)`` from a fixed description of the
action (``intervention_features``) and, in persistent worlds, from the current latents and the
action that produced them. It has no graph and no mechanisms: whatever it knows about an
intervention it must read off the intervention's features, so it is the reference the causal
world model has to beat on interventions it has not seen (other do-values, multi-node
combinations).

The predictive distribution is ``N(mu(x), L(x) L(x)^T)`` in standardised latents, with ``mu`` and
the Cholesky factor ``L`` (positive diagonal) the outputs of one MLP on the input ``x``; it is
trained by negative log-likelihood with early stopping on held-out data. ``predict`` maps
standard normal noise to samples, ``z = mean + scale * (mu + L noise)``, so planners can use
common random numbers across actions.

Input of the network, per row: ``[f(a_t), c, c * z_{t-1}, c * f(a_{t-1})]`` where ``f`` is
``intervention_features``, ``z_{t-1}`` the standardised previous latents of the same episode and
``c`` a flag that is 1 when the previous step is known. Rows without a predecessor (first steps)
have ``c = 0``, and every transition is trained twice, with and without its context (the loss is
the mean of both NLLs), so the same network also gives the marginal of every action
(``z_now=None``) learned from all rows. A model fitted without episode/step columns has no context
inputs at all and ignores ``z_now``.

``fine_tune`` continues training a fitted model on new rows (a new model, the same standardisation
and inputs); ``causal_wm.world_model.ensemble.ProbabilisticEnsemble`` bootstraps several of them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from causal_wm._torch import generator, smooth_mlp, train_early_stopping
from causal_wm.device import resolve_device
from causal_wm.persistence import Persistent, check_state, state_errors
from causal_wm.scm import Intervention

if TYPE_CHECKING:
    from causal_wm.world_model.ensemble import ProbabilisticEnsemble

FORMAT = "causal_wm.action_conditioned_model"
FORMAT_VERSION = 1

# per node: targeted, hard, soft, do, mechanism factor, noise mean (do: the value), noise std
FEATURES_PER_NODE = 7
_LOG_2PI = math.log(2.0 * math.pi)
# bounds on log of the Cholesky diagonal (standardised units): keeps early training finite
_LOG_DIAG_RANGE = (-7.0, 4.0)


def intervention_features(intervention: Intervention | None, num_nodes: int) -> np.ndarray:
    """A fixed description ``(FEATURES_PER_NODE * num_nodes,)`` float64 of an action.

    Node by node (blocks of ``FEATURES_PER_NODE``): targeted flag, kind flags (hard, soft, do),
    mechanism factor on the parents (0 for hard and do), noise mean (the value of a
    do-intervention) and noise std, from ``Intervention.node_params(t, observational_std=1.0)``
    (so a ``scale`` of the observational noise reads as that std). Untargeted nodes are all zeros;
    ``None`` (observational) is all zeros. Multi-node interventions fill several blocks, so unseen
    combinations and do-values have features too.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int | np.integer) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
    out = np.zeros((num_nodes, FEATURES_PER_NODE))
    if intervention is None:
        return out.reshape(-1)
    if not isinstance(intervention, Intervention):
        raise ValueError(f"expected an Intervention or None, got {type(intervention).__name__}")
    if max(intervention.targets) >= num_nodes:
        raise ValueError(f"intervention targets {intervention.targets} but there are {num_nodes} nodes")
    kind = ("hard", "soft", "do").index(intervention.kind)
    for t in intervention.targets:
        factor, mean, std = intervention.node_params(t, observational_std=1.0)
        out[t, 0] = 1.0
        out[t, 1 + kind] = 1.0
        out[t, 4:] = (factor, mean, std)
    return out.reshape(-1)


def _check_latents(z: Any, name: str, n: int | None = None) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or (n is not None and z.shape[1] != n):
        expected = "(N, n)" if n is None else f"(N, {n})"
        raise ValueError(f"{name} must have shape {expected}, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


def _check_rows(z: Any, interventions: Sequence[Any], episode: Any, step: Any, n: int | None = None
                ) -> tuple[np.ndarray, list[Intervention | None], np.ndarray | None, np.ndarray | None]:
    """Validated training rows: latents ``(N, n)`` float64, ``N`` interventions, and ``(N,)`` int64
    episode and step (both or neither)."""
    z = _check_latents(z, "z", n)
    N = len(z)
    interventions = list(interventions)
    if len(interventions) != N:
        raise ValueError(f"need one intervention per row: {len(interventions)} for {N} rows")
    bad = [type(iv).__name__ for iv in interventions if iv is not None and not isinstance(iv, Intervention)]
    if bad:
        raise ValueError(f"interventions must be Intervention or None, got {bad[0]}")
    if (episode is None) != (step is None):
        raise ValueError("give both episode and step, or neither")
    if episode is not None and step is not None:
        episode = np.asarray(episode, dtype=np.int64).reshape(-1)
        step = np.asarray(step, dtype=np.int64).reshape(-1)
        if len(episode) != N or len(step) != N:
            raise ValueError(f"episode and step must have {N} entries, got {len(episode)} and {len(step)}")
    return z, interventions, episode, step


def _split(N: int, episode: np.ndarray | None, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``(N,)`` bool: the held-out rows, whole episodes when there are at least 2 (a share
    ``val_fraction`` of them, at least 1, never all), else a share of the rows (at least 1)."""
    episode_ids = np.zeros(0) if episode is None else np.unique(episode)
    if episode is not None and len(episode_ids) >= 2:
        num_val = min(len(episode_ids) - 1, max(1, round(val_fraction * len(episode_ids))))
        return np.isin(episode, rng.choice(episode_ids, size=num_val, replace=False))
    is_val = np.zeros(N, dtype=bool)
    is_val[rng.choice(N, size=max(1, round(val_fraction * N)), replace=False)] = True
    return is_val


def _predecessors(episode: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``(N,)`` row index of the previous step of the same episode, -1 where there is none."""
    order = np.lexsort((step, episode))
    prev = np.full(len(episode), -1, dtype=np.int64)
    follows = (episode[order][1:] == episode[order][:-1]) & (step[order][1:] == step[order][:-1] + 1)
    prev[order[1:][follows]] = order[:-1][follows]
    return prev


class _GaussianHead(nn.Module):
    """MLP input ``(B, D)`` -> mean ``(B, n)`` and lower-triangular Cholesky factor ``(B, n, n)``."""

    def __init__(self, in_dim: int, n: int, hidden: int, depth: int, seed: int) -> None:
        super().__init__()
        self.n = n
        self.net = smooth_mlp(in_dim, 2 * n + n * (n - 1) // 2, hidden, depth, seed=seed)
        rows, cols = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, cholesky, log_diagonal)``."""
        out = self.net(x)
        n = self.n
        mean = out[:, :n]
        log_diag = out[:, n: 2 * n].clamp(*_LOG_DIAG_RANGE)
        chol = torch.diag_embed(log_diag.exp())
        chol = chol.index_put((torch.arange(len(x), device=x.device)[:, None], self.rows, self.cols),
                              out[:, 2 * n:])
        return mean, chol, log_diag


def _gaussian_nll(head: _GaussianHead, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-row negative log-likelihood ``(B,)`` of standardised latents ``z`` ``(B, n)``."""
    mean, chol, log_diag = head(x)
    w = torch.linalg.solve_triangular(chol, (z - mean).unsqueeze(-1), upper=False).squeeze(-1)
    return 0.5 * (w**2).sum(dim=1) + log_diag.sum(dim=1) + 0.5 * z.shape[1] * _LOG_2PI


class ActionConditionedModel(Persistent):
    """Non-causal baseline: next latents ``(n,)`` given the action (and the current latents).

    Create, then ``fit``; or ``ActionConditionedModel.load(path)``. See the module docstring for
    the model. Attributes after fitting: ``n`` (latent dimension), ``num_nodes`` (true nodes the
    intervention features describe), ``transitions`` (whether it conditions on the current
    latents), ``history`` (training and held-out loss per epoch, standardised NLL per row).
    """

    FORMAT: ClassVar[str] = FORMAT
    FORMAT_VERSION: ClassVar[int] = FORMAT_VERSION

    def __init__(self) -> None:
        self.head: _GaussianHead | None = None
        self.n = 0
        self.num_nodes = 0
        self.hidden = 0
        self.depth = 0
        self.transitions = False
        self.z_mean = np.zeros(0)
        self.z_scale = np.ones(0)
        self.device = torch.device("cpu")
        self.history: dict[str, Any] = {}
        self._features: dict[Intervention | None, np.ndarray] = {}

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, z: np.ndarray, interventions: Sequence[Intervention | None], *,
            episode: np.ndarray | None = None, step: np.ndarray | None = None, num_nodes: int | None = None,
            hidden: int = 64, depth: int = 2, epochs: int = 300, batch_size: int = 256, lr: float = 1e-3,
            patience: int = 10, val_fraction: float = 0.15, seed: int = 0, device: Any = "auto",
            progress: bool = False) -> ActionConditionedModel:
        """Fit by maximum likelihood with early stopping; returns ``self``.

        Args:
            z: ``(N, n)`` learned latents, one row per step.
            interventions: length ``N``: the ``Intervention`` (None = observational) that produced
                each row, e.g. ``[dataset.menu[r] for r in dataset.regime]``.
            episode, step: ``(N,)`` ints (both or neither). When given, a row whose predecessor
                ``(episode, step - 1)`` is present is a transition and the prediction is
                conditioned on the predecessor's latents and action too.
            num_nodes: true nodes the intervention features describe (default: the larger of
                ``n`` and the highest target + 1).
            hidden, depth: MLP width and number of hidden layers.
            epochs, batch_size, lr, patience: Adam with early stopping on the held-out NLL; two
                learning-rate halvings before stopping.
            val_fraction: held-out share (whole episodes when episodes are given).
            seed: seeds initialisation, split and minibatches.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``.
            progress: show a tqdm bar over epochs.
        """
        z, interventions, episode, step = _check_rows(z, interventions, episode, step)
        N, n = z.shape
        if N < 10:
            raise ValueError(f"need at least 10 rows to fit and hold out data, got {N}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        highest = max((max(iv.targets) for iv in interventions if iv is not None), default=-1)
        num_nodes = max(n, highest + 1) if num_nodes is None else int(num_nodes)
        if highest >= num_nodes:
            raise ValueError(f"an intervention targets node {highest} but num_nodes is {num_nodes}")

        self.n, self.num_nodes, self.hidden, self.depth = n, num_nodes, int(hidden), int(depth)
        self.device = resolve_device(device)
        self._features = {}
        self.z_mean = z.mean(axis=0)
        self.z_scale = np.maximum(z.std(axis=0), 1e-6)
        prev = np.full(N, -1, dtype=np.int64) if episode is None or step is None else _predecessors(episode, step)
        self.transitions = bool(np.any(prev >= 0))
        inputs, zs = self._design(z, interventions, prev)
        self.head = _GaussianHead(inputs.shape[1], n, self.hidden, self.depth, seed).to(self.device)
        is_val = _split(N, episode, val_fraction, np.random.default_rng(seed))
        self.history = self._train(inputs, zs, is_val, epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                                   patience=int(patience), seed=seed, progress=progress,
                                   desc="action-conditioned model")
        return self

    def fine_tune(self, z: np.ndarray, interventions: Sequence[Intervention | None], *,
                  episode: np.ndarray | None = None, step: np.ndarray | None = None, epochs: int = 100,
                  lr: float = 3e-4, patience: int = 10, batch_size: int = 256, seed: int = 0,
                  progress: bool = False) -> ActionConditionedModel:
        """Continue training on new rows (e.g. after the world changed); returns a new model, ``self``
        is unchanged.

        The new rows go through the fitted model's standardisation (``z_mean``, ``z_scale``), feature
        layout and context handling (a model fitted on transitions reads the predecessor of every row
        whose ``(episode, step - 1)`` is among the new rows; others, and all rows without
        episode/step, train the blind input). With at least 20 rows, 20 % are held out (whole episodes
        when there are at least 2) for early stopping, and the weights with the best held-out loss are
        kept, the fitted ones included (epoch 0); with fewer, ``min(epochs, 20)`` epochs are trained on
        all rows, keeping the weights with the lowest loss on them.

        Args:
            z: ``(K, n)`` latents (K >= 1), interventions: length ``K`` (as in ``fit``).
            episode, step: ``(K,)`` ints, both or neither.
            epochs, lr, patience, batch_size: Adam with early stopping (two learning-rate halvings).
            seed: seeds the split and the minibatches.
            progress: show a tqdm bar over epochs.
        """
        self._require_fitted()
        z, interventions, episode, step = _check_rows(z, interventions, episode, step, n=self.n)
        N = len(z)
        if N < 1:
            raise ValueError("fine_tune needs at least one row")
        for iv in interventions:
            if iv is not None:
                self._feature(iv)  # targets outside the model's nodes: a clear error before training
        model = copy.deepcopy(self)
        prev = np.full(N, -1, dtype=np.int64)
        if model.transitions and episode is not None and step is not None:
            prev = _predecessors(episode, step)
        inputs, zs = model._design(z, interventions, prev)
        rng = np.random.default_rng(seed)
        if N >= 20:
            is_val = _split(N, episode, 0.2, rng)
            fixed = False
        else:
            is_val = np.zeros(N, dtype=bool)
            epochs, fixed = min(int(epochs), 20), True
        history = model._train(inputs, zs, is_val, epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                               patience=int(epochs) + 1 if fixed else int(patience), seed=seed,
                               progress=progress, desc="fine-tune")
        model.history = {**self.history, "fine_tune": history}
        return model

    def _design(self, z: np.ndarray, interventions: Sequence[Intervention | None], prev: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs ``(N, D)`` and standardised targets ``(N, n)`` of rows ``z`` ``(N, n)``;
        ``prev`` ``(N,)`` is the row of each row's predecessor (-1: none; ignored without transitions)."""
        zs = (z - self.z_mean) / self.z_scale
        action = np.stack([self._feature(iv) for iv in interventions])
        if not self.transitions:
            return action, zs
        has = (prev >= 0).astype(np.float64)[:, None]
        before = np.maximum(prev, 0)
        return np.concatenate([action, has, has * zs[before], has * action[before]], axis=1), zs

    def _train(self, inputs: np.ndarray, zs: np.ndarray, is_val: np.ndarray, *, epochs: int, batch_size: int,
               lr: float, patience: int, seed: int, progress: bool, desc: str) -> dict[str, Any]:
        """Adam on the NLL of ``self.head`` (the mean of the NLLs with and without context for a model
        on transitions) on the rows outside ``is_val`` ``(N,)`` bool, early stopping on those in it
        (without held-out rows: on the training rows' full loss); returns the history."""
        head = self._require_fitted()
        dev = self.device
        train_rows = ~is_val if is_val.any() else np.ones(len(is_val), dtype=bool)
        x_train = torch.as_tensor(inputs[train_rows], dtype=torch.float32, device=dev)
        z_train = torch.as_tensor(zs[train_rows], dtype=torch.float32, device=dev)
        x_val = torch.as_tensor(inputs[is_val], dtype=torch.float32, device=dev) if is_val.any() else x_train
        z_val = torch.as_tensor(zs[is_val], dtype=torch.float32, device=dev) if is_val.any() else z_train
        F = self.num_nodes * FEATURES_PER_NODE
        gen = generator(seed, dev)
        batch = min(batch_size, len(x_train))
        transitions = self.transitions

        def loss_of(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            loss = _gaussian_nll(head, x, z).mean()
            if transitions:
                blind = torch.cat([x[:, :F], torch.zeros_like(x[:, F:])], dim=1)
                loss = 0.5 * (loss + _gaussian_nll(head, blind, z).mean())
            return loss

        def step_loss() -> torch.Tensor:
            idx = torch.randint(len(x_train), (batch,), generator=gen, device=dev)
            return loss_of(x_train[idx], z_train[idx])

        bar = tqdm(total=epochs + 1, desc=desc, disable=not progress)

        @torch.no_grad()
        def val_loss() -> float:
            loss = float(loss_of(x_val, z_val))
            bar.update(1)
            bar.set_postfix(val_nll=f"{loss:.3f}")
            return loss

        result = train_early_stopping(head, step_loss, val_loss, epochs=epochs,
                                      steps_per_epoch=max(1, math.ceil(len(x_train) / batch)), lr=lr,
                                      patience=patience, lr_decays=2)
        bar.close()
        return {"train_loss": result.train_loss, "val_loss": result.val_loss, "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run, "num_train": int(train_rows.sum()), "num_val": int(is_val.sum())}

    # --- prediction ---------------------------------------------------------------------------
    def _feature(self, intervention: Intervention | None) -> np.ndarray:
        cached = self._features.get(intervention)
        if cached is None:
            cached = intervention_features(intervention, self.num_nodes)
            self._features[intervention] = cached
        return cached

    def _require_fitted(self) -> _GaussianHead:
        if self.head is None:
            raise ValueError("the model is not fitted: call fit(...) or ActionConditionedModel.load(path)")
        return self.head

    def _inputs(self, num: int, intervention: Intervention | None, z_now: np.ndarray | None,
                intervention_now: Intervention | None) -> torch.Tensor:
        features = np.broadcast_to(self._feature(intervention), (num, self.num_nodes * FEATURES_PER_NODE))
        if not self.transitions:
            x = features
        elif z_now is None:
            x = np.concatenate([features, np.zeros((num, 1 + self.n + features.shape[1]))], axis=1)
        else:
            z = np.asarray(z_now, dtype=np.float64)
            if z.shape == (self.n,):
                z = z.reshape(1, self.n)
            z = _check_latents(z, "z_now", self.n)
            if len(z) not in (1, num):
                raise ValueError(f"z_now must have shape ({self.n},) or ({num}, {self.n}), got {np.shape(z_now)}")
            zs = np.broadcast_to((z - self.z_mean) / self.z_scale, (num, self.n))
            previous = np.broadcast_to(self._feature(intervention_now), features.shape)
            x = np.concatenate([features, np.ones((num, 1)), zs, previous], axis=1)
        return torch.as_tensor(np.array(x, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def predict(self, intervention: Intervention | None, noise: np.ndarray, z_now: np.ndarray | None = None,
                intervention_now: Intervention | None = None) -> np.ndarray:
        """Next latents ``(num, n)`` float64 under ``intervention`` from standard normal ``noise`` ``(num, n)``.

        ``z_now`` ``(n,)`` or ``(num, n)`` and ``intervention_now`` (the intervention that produced
        them; None = observational) condition the prediction when the model was fitted on
        transitions; otherwise they are ignored. Without ``z_now`` it samples the action's marginal.
        """
        return self.predict_many([intervention], noise, z_now, intervention_now)[0]

    @torch.no_grad()
    def predict_many(self, interventions: Sequence[Intervention | None], noise: np.ndarray,
                     z_now: np.ndarray | None = None, intervention_now: Intervention | None = None) -> np.ndarray:
        """``predict`` under every entry of ``interventions`` on the same ``noise`` ``(num, n)`` in one
        network pass: ``(len(interventions), num, n)``."""
        head = self._require_fitted()
        noise = _check_latents(noise, "noise", self.n)
        num, count = len(noise), len(interventions)
        if count == 0:
            return np.zeros((0, num, self.n))
        x = torch.cat([self._inputs(num, iv, z_now, intervention_now) for iv in interventions])
        mean, chol, _ = head(x)
        eps = torch.as_tensor(np.tile(noise, (count, 1)), dtype=torch.float32, device=self.device)
        zs = (mean + (chol @ eps.unsqueeze(-1)).squeeze(-1)).double().cpu().numpy()
        return (self.z_mean + self.z_scale * zs).reshape(count, num, self.n)

    def sample(self, num: int, intervention: Intervention | None, *, z_now: np.ndarray | None = None,
               intervention_now: Intervention | None = None, seed: int = 0) -> np.ndarray:
        """``num`` samples ``(num, n)`` of the next latents under ``intervention`` (see ``predict``)."""
        if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
            raise ValueError(f"num must be a positive int, got {num!r}")
        self._require_fitted()
        noise = np.random.default_rng(seed).standard_normal((int(num), self.n))
        return self.predict(intervention, noise, z_now, intervention_now)

    @torch.no_grad()
    def moments(self, intervention: Intervention | None, z_now: np.ndarray | None = None,
                intervention_now: Intervention | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean ``(n,)`` and covariance ``(n, n)`` of the next latents (one ``z_now`` ``(n,)``)."""
        head = self._require_fitted()
        if z_now is not None and np.shape(z_now) != (self.n,):
            raise ValueError(f"moments takes one z_now of shape ({self.n},), got {np.shape(z_now)}")
        mean, chol, _ = head(self._inputs(1, intervention, z_now, intervention_now))
        m, L = mean[0].double().cpu().numpy(), chol[0].double().cpu().numpy()
        return self.z_mean + self.z_scale * m, (self.z_scale[:, None] * (L @ L.T)) * self.z_scale[None, :]

    @torch.no_grad()
    def log_prob(self, z: np.ndarray, intervention: Intervention | None, z_now: np.ndarray | None = None,
                 intervention_now: Intervention | None = None) -> np.ndarray:
        """Log-density ``(N,)`` of latents ``z`` ``(N, n)`` under the predictive distribution."""
        head = self._require_fitted()
        z = _check_latents(z, "z", self.n)
        x = self._inputs(len(z), intervention, z_now, intervention_now)
        zs = torch.as_tensor((z - self.z_mean) / self.z_scale, dtype=torch.float32, device=self.device)
        nll = _gaussian_nll(head, x, zs).double().cpu().numpy()
        return -nll - float(np.sum(np.log(self.z_scale)))

    def for_menu(self, interventions: Sequence[Intervention | None]) -> ActionConditionedMenuModel:
        """A ``LatentModel`` for planners (``causal_wm.agents.planners``) over this menu
        (action ``k`` = ``interventions[k]``; ``interventions[0]`` is usually None)."""
        self._require_fitted()
        return ActionConditionedMenuModel(self, interventions)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of the network."""
        return sum(p.numel() for p in self._require_fitted().parameters())

    # --- persistence --------------------------------------------------------------------------
    # ``save`` and ``load`` come from ``causal_wm.persistence.Persistent``
    def state(self) -> dict[str, Any]:
        """Plain tensors, lists and numbers (readable with ``torch.load(weights_only=True)``)."""
        head = self._require_fitted()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n": self.n,
            "num_nodes": self.num_nodes,
            "hidden": self.hidden,
            "depth": self.depth,
            "transitions": self.transitions,
            "in_dim": int(head.net[0].in_features),
            "z_mean": torch.as_tensor(self.z_mean, dtype=torch.float64),
            "z_scale": torch.as_tensor(self.z_scale, dtype=torch.float64),
            "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "history": {k: (list(v) if isinstance(v, list) else v) for k, v in self.history.items()},
        }

    @classmethod
    def from_state(cls, state: Any, device: Any = "auto", source: str = "state") -> ActionConditionedModel:
        """Rebuild a model from ``state()`` onto ``device``."""
        check_state(state, format=FORMAT, version=FORMAT_VERSION, source=source)
        dev = resolve_device(device)
        with state_errors(source, "action-conditioned model"):
            model = cls()
            model.n, model.num_nodes = int(state["n"]), int(state["num_nodes"])
            model.hidden, model.depth = int(state["hidden"]), int(state["depth"])
            model.transitions = bool(state["transitions"])
            model.z_mean = state["z_mean"].cpu().numpy()
            model.z_scale = state["z_scale"].cpu().numpy()
            model.device = dev
            model.history = dict(state["history"])
            model.head = _GaussianHead(int(state["in_dim"]), model.n, model.hidden, model.depth, seed=0).to(dev)
            model.head.load_state_dict(state["state_dict"])
            model.head.eval()
        return model


class ActionConditionedMenuModel:
    """An ``ActionConditionedModel`` (or a ``ProbabilisticEnsemble`` of them) over a discrete menu, in
    the planners' ``LatentModel`` form: ``n``, ``num_actions`` and
    ``predict(action, noise, z_now=None, regime_now=None)``."""

    def __init__(self, model: ActionConditionedModel | ProbabilisticEnsemble,
                 interventions: Sequence[Intervention | None]) -> None:
        self.model = model
        self.interventions = list(interventions)
        if not self.interventions:
            raise ValueError("the menu needs at least one entry")
        for iv in self.interventions:
            if iv is not None:
                model._feature(iv)  # validates the targets against the model's nodes now, not mid-plan
        self.n = model.n
        self.num_actions = len(self.interventions)

    def predict(self, action: int, noise: np.ndarray, z_now: np.ndarray | None = None,
                regime_now: int | None = None) -> np.ndarray:
        """Next latents ``(num, n)`` under menu entry ``action``; see ``ActionConditionedModel.predict``."""
        return self.predict_actions([action], noise, z_now, regime_now)[0]

    def predict_actions(self, actions: Sequence[int], noise: np.ndarray, z_now: np.ndarray | None = None,
                        regime_now: int | None = None) -> np.ndarray:
        """``predict`` of every menu entry in ``actions`` on the same noise: ``(len(actions), num, n)``."""
        bad = [a for a in actions if not 0 <= a < self.num_actions]
        if bad:
            raise ValueError(f"action {bad[0]} is outside 0..{self.num_actions - 1}")
        intervention_now = None
        if self.model.transitions and z_now is not None:
            if regime_now is None:
                raise ValueError("a model fitted on transitions needs the current regime with the current latents")
            if not 0 <= regime_now < self.num_actions:
                raise ValueError(f"regime_now {regime_now} is outside 0..{self.num_actions - 1}")
            intervention_now = self.interventions[regime_now]
        return self.model.predict_many([self.interventions[a] for a in actions], noise, z_now, intervention_now)
