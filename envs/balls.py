"""``causal_wm/Balls-v0``: coloured balls whose coordinates are the latents of a linear Gaussian SCM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from causal_wm.scm import SCM, LinearMechanism, erdos_renyi_dag, parents, random_scm, validate_dag

from .base import DEFAULT_DO_VALUES, CausalSceneEnv, MultiNodeSpec
from .rendering import BallsRenderer


def balls_scm(num_balls: int = 3, *, graph: np.ndarray | None = None, expected_degree: float = 2.0,
              graph_seed: int = 0, box: tuple[np.ndarray | float, np.ndarray | float] | None = None,
              noise_std: Sequence[float] | None = None) -> SCM:
    """The standardised linear Gaussian SCM of the ball scene (``n = 2 * num_balls`` latents).

    The DAG is ``graph`` (``A[i, j] = 1`` iff ``i -> j``) or an Erdős–Rényi DAG with
    ``expected_degree`` drawn from ``graph_seed``; weights and noise follow the published protocol
    (``random_scm(A, "linear", ...)`` from the same seed), then every node is rescaled to observational
    variance 1. A ``graph`` with entries other than 0 and 1 is a weighted adjacency (``W[i, j]`` the
    weight of ``i -> j``): those weights with noise std ``noise_std`` (``(n,)``, default 1 on every
    node), then standardised. ``box`` truncates the samples by rejection.
    """
    n = 2 * num_balls
    rng = np.random.default_rng(graph_seed)
    weights = None if graph is None else np.asarray(graph, dtype=np.float64)
    if weights is None:
        A = erdos_renyi_dag(n, expected_degree=expected_degree, seed=rng)
    else:
        if weights.shape != (n, n):
            raise ValueError(f"graph must be a square ({n}, {n}) adjacency matrix for {num_balls} balls, got "
                             f"shape {weights.shape}")
        if not np.all(np.isfinite(weights)):
            raise ValueError("graph (a weighted adjacency) must be finite")
        A = validate_dag((weights != 0).astype(np.int64), n=n)
    weighted = weights is not None and not np.all(np.isin(weights, (0.0, 1.0)))
    if noise_std is not None and not weighted:
        raise ValueError("noise_std applies to a weighted graph (the random protocol draws its own noise)")
    if weighted:
        # a weighted graph: these weights and noise, then standardised
        noise = np.ones(n) if noise_std is None else np.asarray(noise_std, dtype=np.float64)
        if noise.shape != (n,) or not np.all(np.isfinite(noise)) or np.any(noise <= 0):
            raise ValueError(f"noise_std must hold {n} positive numbers, got {noise_std!r}")
        mechanisms = [LinearMechanism(tuple(parents(A, j)), weights[parents(A, j), j]) if parents(A, j) else None
                      for j in range(n)]
        scm = SCM(A, mechanisms, noise).standardized()
    else:
        scm = random_scm(A, "linear", rng).standardized()
    names = [f"ball{b}.{axis}" for b in range(num_balls) for axis in ("x", "y")]
    if box is not None:
        box = (np.broadcast_to(np.asarray(box[0], dtype=np.float64), (n,)),
               np.broadcast_to(np.asarray(box[1], dtype=np.float64), (n,)))
    return SCM(scm.graph, scm.mechanisms, scm.noise_std, scm.noise_mean, box=box, names=names)


class BallsEnv(CausalSceneEnv):
    """
    ## Description

    ``num_balls`` coloured balls on a plain background. The x and y pixel coordinates of the balls are
    ``n = 2 * num_balls`` latent variables (node ``2b`` = x of ball ``b``, node ``2b + 1`` = y) that
    follow a linear Gaussian structural causal model on a random DAG (Erdős–Rényi, expected degree
    2, drawn from ``graph_seed``; weights and noise of the published protocol), standardised so that
    every latent has observational variance 1. The agent does not move the balls: each step it
    chooses an intervention on the causal model and the world draws a fresh sample under it
    (seeing = action 0, acting = action k >= 1). This is the image setting of score-based causal
    representation learning (Varıcı et al.), made interactive.

    Every step ``eps_t = rho * eps_{t-1} + sqrt(1 - rho^2) * xi_t`` with ``xi_t ~ N(0, I)`` and
    ``z_t = scm.forward(eps_t[None], interventions[a_t])[0]``, so the marginal of every step is
    exactly the distribution of the chosen regime and ``persistence = rho`` only sets how much
    consecutive samples share (``rho = 0``: i.i.d.).

    Keeping the balls in view (``keep_in_view``):

    - ``"squash"`` (default): pixel position
      ``margin + (size - 2 * margin) * (0.5 + 0.5 * tanh(z / squash_scale))`` with
      ``margin = ball_radius + 1``; smooth, monotone and invertible, near linear over the central
      range. The latents remain an untruncated Gaussian SCM, so densities, scores and the
      stationary-marginal property stay exact.
    - ``"truncate"`` (the published way): latents are truncated to the box ``[-box, box]^n`` by
      rejection sampling and mapped linearly to pixels. Rejection with persistent noise would break
      the stationary marginal, so it needs ``persistence == 0``. The SCM's densities and scores are
      then those of the untruncated model (equal inside the box up to a constant).

    The true DAG is ``env.unwrapped.graph`` (``A[i, j] = 1`` iff ``i -> j``), the SCM
    ``env.unwrapped.scm``, the menu ``env.unwrapped.interventions`` and the batch renderer
    ``env.unwrapped.renderer`` (latents ``(N, n)`` -> frames, no stepping needed).

    ## Action Space

    ``Discrete(K)``. Action 0 = no intervention (regime 0, observational). Action ``k >= 1`` applies
    ``interventions[k]`` (``interventions[0] is None``; regime = action). Default menu, node by node:
    two stochastic hard mean-shift interventions ``N(-1, 0.7^2)`` and ``N(+1, 0.7^2)`` (in
    standardised units), then ``do(z_t = v)`` with noise std 0.05 for ``v`` in ``(-1.5, 0, 1.5)``;
    then the ``multi_node`` entries. With the defaults ``K = 1 + 5n = 31`` for 3 balls. With
    ``task="reach"`` the entries that target the goal node are dropped unless
    ``allow_goal_interventions=True``.

    ## Observation Space

    ``Box(0, 255, (image_size, image_size, 3), uint8)``: an RGB frame (HWC), 64 x 64 by default;
    anti-aliased balls of radius ``ball_radius`` px, drawn in order (later balls on top).

    ## Rewards

    ``task=None`` (default): 0 every step (data collection). ``task="reach"``: dense reward
    ``-abs(z[goal_node] - goal_value)``.

    ## Starting State

    An observational sample (regime 0) with ``eps_0 ~ N(0, I)``.

    ## Episode End

    Never terminates; ``gym.make`` truncates after 50 steps (``max_episode_steps``).

    Every ``info`` (reset and step) holds ``regime`` (int), ``intervention`` (the ``Intervention``
    or None) and ``z`` (float64 ``(n,)`` true latents; for evaluation only).

    ## Arguments

    ```python
    gym.make("causal_wm/Balls-v0", num_balls=3, image_size=64, ball_radius=5.0, colors=None,
             background=(255, 255, 255), graph=None, expected_degree=2.0, graph_seed=0, noise_std=None,
             keep_in_view="squash", squash_scale=2.5, box=2.0, persistence=0.0,
             hard_interventions="shift", do_values=(-1.5, 0.0, 1.5), do_std=0.05, multi_node=(),
             task=None, goal_node=None, goal_value=None, allow_goal_interventions=None,
             distractors=0, distractor_shift=False, mechanism_shift=None, render_mode=None)
    ```

    - ``num_balls``: number of balls ``k`` (``n = 2k`` latents).
    - ``image_size``, ``ball_radius``, ``colors``, ``background``: the picture (RGB triples).
    - ``graph``: an ``(n, n)`` DAG adjacency to use instead of a random one; entries other than 0
      and 1 make it a weighted adjacency (those weights and the noise stds ``noise_std``, default 1,
      then standardised).
    - ``expected_degree``, ``graph_seed``: the random DAG and SCM weights (fixed by ``graph_seed``,
      not by the reset seed).
    - ``keep_in_view``: ``"squash"`` or ``"truncate"`` (see above); ``squash_scale`` (latent units)
      for the first, ``box`` (half-width ``b`` for ``[-b, b]^n``, or a ``(low, high)`` pair) for the
      second.
    - ``persistence``: ``rho`` in ``[0, 1)`` of the AR(1) exogenous noise.
    - ``hard_interventions``: ``"shift"`` (mean-shift pair), ``"scale"`` (the published variance
      pair: noise std x0.5 and x2) or ``"both"``.
    - ``do_values``, ``do_std``: the do entries per node (``()`` removes them).
    - ``multi_node``: extra entries: a tuple of targets gives one hard mean-shift ``N(+1, 0.7^2)`` on
      all of them; ``Intervention`` objects or their dicts are used as given.
    - ``task``: ``None`` or ``"reach"``; ``goal_node`` (default: the node with the most ancestors,
      ties to the highest index; it must have a parent), ``goal_value`` (default 1.0),
      ``allow_goal_interventions`` (default False for ``"reach"``).
    - ``distractors``: number of grey discs outside the SCM that wander behind the balls (never
      intervened on); ``distractor_shift=True`` draws them saturated, larger and faster than in
      training.
    - ``mechanism_shift``: ``{node: factor}`` multiplies the mechanism of each such node (index or
      name, factor a number or ``"negate"``): a changed mechanism at test time.
    - ``render_mode``: None or ``"rgb_array"``; ``render()`` returns the current frame.

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, num_balls: int = 3, image_size: int = 64, ball_radius: float = 5.0,
                 colors: Sequence[Sequence[int]] | None = None, background: Sequence[int] = (255, 255, 255),
                 graph: np.ndarray | None = None, expected_degree: float = 2.0, graph_seed: int = 0,
                 noise_std: Sequence[float] | None = None, keep_in_view: str = "squash", squash_scale: float = 2.5,
                 box: float | tuple[np.ndarray | float, np.ndarray | float] = 2.0, persistence: float = 0.0,
                 hard_interventions: str = "shift", do_values: Sequence[float] = DEFAULT_DO_VALUES,
                 do_std: float = 0.05, multi_node: Sequence[MultiNodeSpec] = (), task: str | None = None,
                 goal_node: int | None = None, goal_value: float | None = None,
                 allow_goal_interventions: bool | None = None, distractors: int = 0,
                 distractor_shift: bool = False, mechanism_shift: dict[str | int, Any] | None = None,
                 render_mode: str | None = None) -> None:
        if isinstance(num_balls, bool) or not isinstance(num_balls, int | np.integer) or num_balls < 1:
            raise ValueError(f"num_balls must be a positive int, got {num_balls!r}")
        if not (isinstance(expected_degree, int | float) and expected_degree >= 0):
            raise ValueError(f"expected_degree must be a number >= 0, got {expected_degree!r}")
        if isinstance(graph_seed, bool) or not isinstance(graph_seed, int | np.integer) or graph_seed < 0:
            raise ValueError(f"graph_seed must be a non-negative int, got {graph_seed!r}")
        scm_box = None
        if keep_in_view == "truncate":
            if isinstance(box, int | float):
                if not box > 0:
                    raise ValueError(f"box half-width must be positive, got {box!r}")
                scm_box = (-float(box), float(box))
            else:
                try:
                    low, high = box
                except (TypeError, ValueError) as err:
                    raise ValueError(f"box must be a half-width or a (low, high) pair, got {box!r}") from err
                scm_box = (low, high)
            if isinstance(persistence, int | float) and persistence > 0:
                raise ValueError("keep_in_view='truncate' needs persistence == 0: rejection sampling with "
                                 "persistent noise breaks the stationary per-step marginal; use 'squash'")
        scm = balls_scm(num_balls, graph=graph, expected_degree=expected_degree, graph_seed=graph_seed,
                        box=scm_box, noise_std=noise_std)
        renderer = BallsRenderer(num_balls, image_size, ball_radius, colors, keep_in_view, squash_scale,
                                 scm.box, background)
        super().__init__(scm, renderer, persistence=persistence, hard_interventions=hard_interventions,
                         do_values=do_values, do_std=do_std, multi_node=multi_node, task=task,
                         goal_node=goal_node, goal_value=goal_value,
                         allow_goal_interventions=allow_goal_interventions, distractors=distractors,
                         distractor_shift=distractor_shift, mechanism_shift=mechanism_shift,
                         render_mode=render_mode)
        self.num_balls = num_balls
        self.keep_in_view = keep_in_view
