"""UMNI-CRL reproduction benchmark (SCIENCE.md sections 6 and 7): linear Gaussian latents, linear
mixing, d = 50, n = 4..8, N = 100k per environment, hard and soft unknown multi-node interventions.

Design of the published experiments (and of ``causal_wm.scm.umni_problem``): target matrix =
identity plus upper-triangular fill 0.5 in the causal order, invertible, rows shuffled; graph
Erdős–Rényi p = 0.5 in the order 0..n-1; hard = cut the parents and noise variance x0.25. Soft: in
the published code every intervened node's noise variance is scaled by 0.25 for soft interventions
too, on top of halving the parent weights (without it a soft intervention on a root changes
nothing and the root cannot be found); ``make_problem`` builds that design.

Metrics: Pearson MCC (Hungarian matching) on observational samples; SHD after the MCC matching with
reversal cost 1 and 2 (2 = false positives + false negatives, the convention of the published
UMNI-CRL code and table), edge precision and recall. Hard: against the true DAG; soft: against its
transitive closure (what soft interventions identify), as in the published evaluation.

    python scripts/bench_umni.py                 # full run, writes benchmarks/results/umni.json
    python scripts/bench_umni.py --runs 2 --ns 4 5 --num-samples 20000   # quick check
"""

from __future__ import annotations

import os

# one BLAS thread: the benchmark machine is shared, and threaded BLAS on small products oversubscribes
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from causal_wm.crl import metrics  # noqa: E402
from causal_wm.crl.scores import score_differences, score_error  # noqa: E402
from causal_wm.crl.umni import umni_crl  # noqa: E402
from causal_wm.device import machine_info  # noqa: E402
from causal_wm.scm import (  # noqa: E402
    CRLProblem,
    transitive_closure,
    umni_problem,
)

PUBLISHED = {  # NeurIPS 2024 poster, means over runs; SHD = false positives + false negatives
    4: {"soft": {"shd": 0.77, "mcc": 0.96}, "hard": {"shd": 0.66, "mcc": 0.98}},
    5: {"soft": {"shd": 1.93, "mcc": 0.93}, "hard": {"shd": 1.80, "mcc": 0.98}},
    6: {"soft": {"shd": 3.39, "mcc": 0.92}, "hard": {"shd": 3.05, "mcc": 0.95}},
    7: {"soft": {"shd": 4.62, "mcc": 0.91}, "hard": {"shd": 6.12, "mcc": 0.91}},
    8: {"soft": {"shd": 8.26, "mcc": 0.90}, "hard": {"shd": 9.01, "mcc": 0.88}},
}


def make_problem(n: int, d: int, num_samples: int, *, hard: bool, seed: int, variance_factor: float = 0.25,
                 parent_scale: float = 0.5) -> CRLProblem:
    """One problem of the published design (``umni_problem``): hard interventions scale the noise
    variance by ``variance_factor``; soft ones also multiply the parent weights by ``parent_scale``."""
    return umni_problem(n, d, num_samples, hard=hard, hard_variance_factor=variance_factor,
                        soft_parent_scale=parent_scale, soft_variance_factor=variance_factor, seed=seed)


def _mean_se(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else float("nan")
    return {"mean": float(a.mean()), "se": se}


def run_one(n: int, d: int, num_samples: int, *, hard: bool, scores: str, seed: int) -> dict:
    """One seeded run: data, score differences, UMNI-CRL, metrics."""
    problem = make_problem(n, d, num_samples, hard=hard, seed=seed)
    envs = problem.observations
    if scores == "oracle":
        result = umni_crl(envs, score_diffs=problem.oracle_score_differences(), hard=hard, n=n)
    else:
        result = umni_crl(envs, scores=scores, hard=hard, n=n, seed=seed)
    z, z_hat = problem.latents[0], result.encode(envs[0])
    m = metrics.mcc(z, z_hat)
    true_graph = problem.graph if hard else transitive_closure(problem.graph)
    precision, recall = metrics.edge_precision_recall(true_graph, result.graph, m.permutation)
    targets_ok = bool(np.array_equal(result.env_targets[:, m.permutation], problem.target_matrix))
    out = {
        "seed": seed,
        "mcc": m.value,
        "mcc_spearman": metrics.mcc(z, z_hat, method="spearman").value,
        "shd_rev1": metrics.shd(true_graph, result.graph, m.permutation, reversal_cost=1),
        "shd_rev2": metrics.shd(true_graph, result.graph, m.permutation, reversal_cost=2),
        "edge_precision": precision,
        "edge_recall": recall,
        "targets_exact": targets_ok,
        "seconds_scores": result.diagnostics["seconds"]["scores"],
        "seconds_algorithm": result.diagnostics["seconds"]["algorithm"],
        "search_levels": [s["level"] for s in result.diagnostics["order"]["steps"]],
    }
    if scores != "oracle":
        diffs = score_differences(envs, method=scores, n=n, seed=seed)
        out["score_error"] = score_error(diffs, problem.oracle_score_differences())
    return out


def run(ns: tuple[int, ...] = (4, 5, 6, 7, 8), runs: int = 20, num_samples: int = 100_000, d: int = 50,
        scores: tuple[str, ...] = ("gaussian",), modes: tuple[str, ...] = ("hard", "soft"), seed: int = 0,
        progress: bool = True) -> dict:
    """Run every (scores, mode, n) setting ``runs`` times (seeds ``seed .. seed + runs - 1``).

    Returns ``{"settings": ..., "results": {scores: {mode: {n: {...}}}}}`` where each leaf holds the
    mean and standard error of every metric, the per-run records and the published row.
    """
    from tqdm import tqdm

    torch.set_num_threads(1)
    results: dict = {}
    total = len(scores) * len(modes) * len(ns) * runs
    bar = tqdm(total=total, disable=not progress, desc="umni")
    for method in scores:
        for mode in modes:
            for n in ns:
                records = []
                for r in range(runs):
                    records.append(run_one(n, d, num_samples, hard=mode == "hard", scores=method,
                                           seed=seed + r))
                    bar.update()
                keys = ["mcc", "mcc_spearman", "shd_rev1", "shd_rev2", "edge_precision", "edge_recall",
                        "seconds_scores", "seconds_algorithm", "score_error"]
                summary = {k: _mean_se([rec[k] for rec in records]) for k in keys if k in records[0]}
                summary["targets_exact_rate"] = float(np.mean([rec["targets_exact"] for rec in records]))
                summary["runs"] = runs
                summary["published"] = PUBLISHED.get(n, {}).get(mode)
                summary["records"] = records
                results.setdefault(method, {}).setdefault(mode, {})[str(n)] = summary
    bar.close()
    return {
        "settings": {"ns": list(ns), "runs": runs, "num_samples": num_samples, "d": d, "scores": list(scores),
                     "modes": list(modes), "seed": seed,
                     "shd_published_convention": "reversal cost 2 (false positives + false negatives)"},
        "results": results,
    }


def merge(parts: list[dict]) -> dict:
    """Combine the outputs of several ``run`` calls (disjoint settings) into one."""
    out: dict = {"settings": dict(parts[0]["settings"]), "results": {}}
    for key in ("ns", "scores", "modes"):
        out["settings"][key] = sorted({v for p in parts for v in p["settings"][key]}, key=str)
    for p in parts:
        for method, by_mode in p["results"].items():
            for mode, by_n in by_mode.items():
                out["results"].setdefault(method, {}).setdefault(mode, {}).update(by_n)
    return out


def table(out: dict) -> str:
    """Markdown table of the results next to the published numbers."""
    lines = ["| scores | mode | n | MCC | published MCC | SHD (rev 2) | published SHD | SHD (rev 1) | "
             "precision / recall | s/run (algorithm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, by_mode in out["results"].items():
        for mode, by_n in by_mode.items():
            for n, s in by_n.items():
                pub = s["published"] or {}
                lines.append(
                    f"| {method} | {mode} | {n} | {s['mcc']['mean']:.4f} ± {s['mcc']['se']:.4f} | "
                    f"{pub.get('mcc', '-')} | {s['shd_rev2']['mean']:.2f} ± {s['shd_rev2']['se']:.2f} | "
                    f"{pub.get('shd', '-')} | {s['shd_rev1']['mean']:.2f} | "
                    f"{s['edge_precision']['mean']:.3f} / {s['edge_recall']['mean']:.3f} | "
                    f"{s['seconds_algorithm']['mean']:.2f} |")
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    """MCC and SHD (reversal cost 2) against n, measured (mean ± s.e.) and published."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, by_mode in out["results"].items():
        for mode, by_n in by_mode.items():
            ns = sorted(int(k) for k in by_n)
            for ax, key, pub_key in ((axes[0], "mcc", "mcc"), (axes[1], "shd_rev2", "shd")):
                mean = [by_n[str(k)][key]["mean"] for k in ns]
                se = [by_n[str(k)][key]["se"] for k in ns]
                ax.errorbar(ns, mean, yerr=se, marker="o", capsize=3,
                            label=f"{mode}, {method} (this project)")
                pub_ns = [k for k in ns if k in PUBLISHED]
                if pub_ns:
                    ax.plot(pub_ns, [PUBLISHED[k][mode][pub_key] for k in pub_ns], ls="--", marker="x",
                            label=f"{mode}, published")
    axes[0].set(xlabel="n", ylabel="MCC (Pearson)", title="UMNI-CRL latents")
    axes[1].set(xlabel="n", ylabel="SHD (false pos. + false neg.)", title="UMNI-CRL graph")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 5, 6, 7, 8], help="numbers of latents")
    parser.add_argument("--runs", type=int, default=20, help="seeded runs per setting")
    parser.add_argument("--num-samples", type=int, default=100_000, help="samples per environment")
    parser.add_argument("--d", type=int, default=50, help="observation dimension")
    parser.add_argument("--scores", nargs="+", default=["gaussian"], help="score estimators")
    parser.add_argument("--modes", nargs="+", default=["hard", "soft"], help="hard and/or soft")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--out", default="benchmarks/results/umni.json", help="output JSON")
    parser.add_argument("--merge", nargs="+", default=None,
                        help="combine these result JSONs (e.g. hard and soft run in parallel) into --out")
    args = parser.parse_args()
    if args.merge:
        out = merge([json.loads(Path(p).read_text()) for p in args.merge])
    else:
        out = run(tuple(args.ns), args.runs, args.num_samples, args.d, tuple(args.scores), tuple(args.modes),
                  args.seed)
    out["machine"] = machine_info()
    out["table"] = table(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    plot(out, Path(args.out).with_suffix(".png"))
    print(out["table"])


if __name__ == "__main__":
    main()
