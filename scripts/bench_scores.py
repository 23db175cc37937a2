"""Benchmark of the score-difference estimators against the exact oracle.

For every problem, sample size, seed and estimator: the relative score error
``sum ||D_hat - D||^2 / sum ||D||^2`` of ``D^m = s^0 - s^m`` at the observational samples (all
interventional envs pooled), the same error after mapping both to the latent space with the true
mixing Jacobian (``J^T D``: what the latent-space algorithms consume; for nonlinear mixing it ignores
the components normal to the data manifold, where no density exists), for two-interventions-per-node
problems the error of the pair differences ``s^m - s^m'``, and seconds per fit.

Problems: LSCALE-I linear ``(n, d) = (5, 100)``, LSCALE-I quadratic latents ``(5, 100)`` and GSCALE-I
(quadratic latents, ``tanh(G z)`` mixing, ``(5, 8)``). For GSCALE-I the learned estimators run both on
the 5-dim principal support (``n = 5``) and on the full 8-dim space (``n = d``), since the data fill a
curved 5-dim manifold that no 5-dim linear projection keeps.

    python scripts/bench_scores.py                 # full run -> benchmarks/results/scores.json (+ .png)
    python scripts/bench_scores.py --resume        # continue an interrupted run
    python scripts/bench_scores.py --quick         # seconds, for smoke tests (-> ./bench_out/scores/)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir
from causal_wm.crl.scores import OracleScores, make_estimator, score_error
from causal_wm.device import machine_info
from causal_wm.scm import CRLProblem, LinearMixing, gscale_problem, lscale_problem


@dataclass
class Config:
    """Settings of the benchmark (every field is a command-line flag)."""

    sizes: tuple[int, ...] = (5000, 50000)
    """samples per environment (LSCALE-I problems)"""
    gscale_sizes: tuple[int, ...] = (5000, 20000)
    """samples per environment (GSCALE-I: 11 environments and 15 classifier pairs, so smaller)"""
    full_space_methods: tuple[str, ...] = ("classifier",)
    """learned estimators that also run on the full d-dim space of the GSCALE-I problem"""
    seeds: int = 2
    """seeded problem draws per setting (seeds 0..seeds-1)"""
    methods: tuple[str, ...] = ("gaussian", "ssm", "dsm", "classifier")
    """estimators to run"""
    problems: tuple[str, ...] = ("lscale_linear", "lscale_quadratic", "gscale")
    """problems to run"""
    epochs: int = 100
    """maximum epochs of the learned estimators (early stopping on a held-out split)"""
    hidden: int = 64
    """hidden width of the learned estimators"""
    device: str = "auto"
    """torch device"""
    out: str = str(RESULTS_DIR / "scores.json")
    """where the JSON goes (a PNG plot is written next to it)"""
    resume: bool = False
    """keep the rows already in ``out`` and run only the missing settings"""
    quick: bool = False
    """tiny sizes and budgets, runs in seconds (smoke test; --debug is an old name of it); writes under
    ./bench_out/scores/"""


QUICK = {"sizes": (300,), "gscale_sizes": (300,), "seeds": 1, "epochs": 2, "hidden": 16,
         "out": str(quick_dir("scores") / "scores.json")}
# the options' names before they were built by causal_wm.benchmarking (tests and notes use them)
ALIASES = {"--debug": "quick", "--gscale_sizes": "gscale_sizes", "--full_space_methods": "full_space_methods"}


def make_problem(name: str, num: int, seed: int) -> CRLProblem:
    if name == "lscale_linear":
        return lscale_problem(5, 100, num, seed=seed)
    if name == "lscale_quadratic":
        return lscale_problem(5, 100, num, latent="quadratic", seed=seed)
    if name == "gscale":
        return gscale_problem(5, 8, num, seed=seed)
    raise ValueError(f"unknown problem {name!r}")


def median_sample_error(estimated: list[np.ndarray], oracle: list[np.ndarray]) -> float:
    """Median over samples of ``sum_m ||D_hat^m - D^m||^2 / sum_m ||D^m||^2``: insensitive to the few
    samples where a saturating mixing makes the observation-space scores explode."""
    num = sum(np.sum((e - o) ** 2, axis=1) for e, o in zip(estimated, oracle, strict=True))
    den = sum(np.sum(o**2, axis=1) for o in oracle)
    return float(np.median(num / np.maximum(den, 1e-300)))


def latent_error(estimated: list[np.ndarray], oracle: list[np.ndarray], jacobian: np.ndarray) -> float:
    """Relative error of ``J^T D`` (``jacobian`` ``(N, d, n)`` at the reference latents)."""
    return score_error([np.einsum("ndk,nd->nk", jacobian, e) for e in estimated],
                       [np.einsum("ndk,nd->nk", jacobian, o) for o in oracle])


def row_key(row: dict) -> tuple:
    return row["problem"], row["num_samples"], row["seed"], row["method"], row["support_dim"]


def run(cfg: Config, out: Path) -> None:
    """Run every missing setting, rewriting ``out`` after each fit (so an interrupted run keeps its
    rows and ``--resume`` continues it). Seeds are the outer loop: partial runs cover every setting."""
    torch.set_num_threads(1)
    rows: list[dict] = []
    history: list[dict] = []
    if cfg.resume and out.exists():
        previous = json.loads(out.read_text())
        rows = previous["rows"]
        history = [*previous.get("previous_settings", []), previous["settings"]]
    done = {row_key(r) for r in rows}
    start = time.perf_counter()
    jobs = [(p, num, s) for s in range(cfg.seeds) for p in cfg.problems
            for num in (cfg.gscale_sizes if p == "gscale" else cfg.sizes)]
    for name, num, seed in tqdm(jobs, desc="problems"):
        problem = make_problem(name, num, seed)
        plan = []
        for method in cfg.methods:
            plan.append((method, problem.n))
            if problem.d > problem.n and not isinstance(problem.mixing, LinearMixing) \
                    and method in cfg.full_space_methods:
                plan.append((method, problem.d))
        plan = [(m, n) for m, n in plan if (name, num, seed, m, n) not in done]
        if not plan:
            continue
        x0 = problem.observations[0]
        oracle = problem.oracle_score_differences()
        jac = problem.mixing.jacobian(problem.latents[0])
        oracle_pairs = None
        if problem.pairs:
            exact = OracleScores(problem)
            oracle_pairs = [exact.pair_difference(x0, a, b) for a, b in problem.pairs]
        for method, n in plan:
            options = {} if method == "gaussian" else dict(epochs=cfg.epochs, hidden=cfg.hidden)
            if method == "classifier" and problem.pairs:
                options["pairs"] = [(0, m) for m in range(1, len(problem.observations))] + problem.pairs
            fit_start = time.perf_counter()
            est = make_estimator(method, n=n, seed=seed, device=cfg.device, **options).fit(problem.observations)
            fit_s = time.perf_counter() - fit_start
            estimated = est(x0)
            row = dict(problem=name, num_samples=num, seed=seed, method=method, support_dim=est.support.n,
                       n=problem.n, d=problem.d, fit_seconds=fit_s, load_average=os.getloadavg()[0],
                       error=score_error(estimated, oracle),
                       latent_error=latent_error(estimated, oracle, jac),
                       median_sample_error=median_sample_error(estimated, oracle))
            if oracle_pairs is not None:
                pairs = est.differences_between(x0, problem.pairs)
                row["pair_error"] = score_error(pairs, oracle_pairs)
                row["pair_latent_error"] = latent_error(pairs, oracle_pairs, jac)
            results = getattr(est, "train_results", {})
            if results:
                row["epochs_run"] = float(np.mean([r.epochs_run for r in results.values()]))
                row["best_epoch"] = float(np.mean([r.best_epoch for r in results.values()]))
            rows.append(row)
            write(cfg, out, rows, history, time.perf_counter() - start, complete=False)
            tqdm.write(f"{name:17s} N={num:6d} seed={seed} {method:10s} n={est.support.n} "
                       f"err={row['error']:.4f} latent={row['latent_error']:.4f} "
                       + (f"pair={row['pair_error']:.4f} " if "pair_error" in row else "")
                       + f"{fit_s:.1f}s")
    write(cfg, out, rows, history, time.perf_counter() - start, complete=True)


def write(cfg: Config, out: Path, rows: list[dict], history: list[dict], seconds: float, *,
          complete: bool) -> None:
    """Write the JSON; ``complete`` means this invocation ran all its settings, ``previous_settings``
    lists the settings of earlier invocations whose rows a ``--resume`` kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(
        benchmark="score differences vs oracle",
        complete=complete,
        error_definition="error: sum ||D_hat - D||^2 / sum ||D||^2 over all interventional envs and "
                         "observational samples, D^m = s^0 - s^m (observation space); latent_error: the "
                         "same after J^T with the true mixing Jacobian J; median_sample_error: median over "
                         "samples of the per-sample ratio; pair_*: s^m - s^m' for the two interventions on "
                         "each node (GSCALE-I)",
        machine=machine_info(note="fit_seconds are wall-clock on a shared machine; load_average (1 min) is "
                                  "recorded with every row"),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        settings=dataclasses.asdict(cfg),
        previous_settings=history,
        seconds_this_invocation=seconds,
        rows=rows,
        summary=summarise(rows),
    )
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(out)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard error over seeds of every metric, per (problem, N, method, support)."""
    keys = sorted({(r["problem"], r["num_samples"], r["method"], r["support_dim"]) for r in rows})
    out = []
    for key in keys:
        group = [r for r in rows if (r["problem"], r["num_samples"], r["method"], r["support_dim"]) == key]
        entry = dict(zip(("problem", "num_samples", "method", "support_dim"), key, strict=True))
        entry["runs"] = len(group)
        for metric in ("error", "latent_error", "median_sample_error", "pair_error", "pair_latent_error",
                       "fit_seconds"):
            values = np.array([r[metric] for r in group if metric in r])
            if len(values):
                entry[metric] = float(values.mean())
                entry[metric + "_se"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({s["problem"] for s in summary})
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, name in zip(axes[0], problems, strict=True):
        entries = [s for s in summary if s["problem"] == name]
        labels = sorted({(s["method"], s["support_dim"]) for s in entries})
        sizes = sorted({s["num_samples"] for s in entries})
        width = 0.8 / max(len(sizes), 1)
        for i, num in enumerate(sizes):
            vals = [next((s["latent_error"] for s in entries if (s["method"], s["support_dim"]) == lab
                          and s["num_samples"] == num), np.nan) for lab in labels]
            ax.bar(np.arange(len(labels)) + i * width, vals, width, label=f"N={num}")
        ax.set_xticks(np.arange(len(labels)) + width * (len(sizes) - 1) / 2)
        ax.set_xticklabels([f"{m}\nn={k}" for m, k in labels], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_ylabel("relative latent score error")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> Config:
    return parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",), aliases=ALIASES)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    out = Path(cfg.out)
    run(cfg, out)
    summary = json.loads(out.read_text())["summary"]
    plot(summary, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    for s in summary:
        print(f"{s['problem']:17s} N={s['num_samples']:6d} {s['method']:10s} n={s['support_dim']} "
              f"err={s['error']:.4f} latent={s['latent_error']:.4f} median={s['median_sample_error']:.4f} "
              + (f"pair_latent={s['pair_latent_error']:.4f} " if "pair_latent_error" in s else "")
              + f"{s['fit_seconds']:.1f}s  ({s['runs']} runs)")


if __name__ == "__main__":
    main()
