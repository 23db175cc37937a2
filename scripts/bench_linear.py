"""Reproduction benchmark for linear mixing: LSCALE-I (and UMNI-CRL, the benchmark of scripts/bench_umni.py).

Published LSCALE-I settings (docs/science.md section 6): hard and soft single-node interventions,
(n, d) = (5, 100) and (8, 100), N = 5k, 10k, 50k samples per environment, oracle and Gaussian
score differences, Erdős–Rényi graphs with edge probability 0.5, linear Gaussian SCMs, mixing
``G = Q R``. Every run draws a new problem (seed ``--seed + run``); oracle and Gaussian scores share
the data of a run. Times are of ``lscale_i`` alone (score estimation included for Gaussian scores,
data generation and oracle scores excluded).

Soft interventions halve the parent weights *and* multiply the noise variance by 5, as the published
code does (``var_change`` applies to both intervention types there); ``lscale_problem(hard=False)``
only halves the weights, which leaves soft interventions on root nodes without any effect, so the
soft problems are built here from the same protocol pieces. Soft interventions identify the graph up
to transitive closure: soft rows report SHD between closures and between transitive reductions too.

Metric conventions (causal_wm.crl.metrics): MCC Pearson and Spearman with Hungarian matching on
observational samples; SHD after that matching, reversed edge = 1 (``shd``) and = 2 (``shd_rev2``);
directed-edge precision and recall; incorrect-mixing norm = spectral norm of the row-normalised
``H G`` outside the identity (hard) or identity plus parents (soft); Z error =
``||Z_aligned - Z||_F / ||Z||_F`` after permutation and per-coordinate least-squares scaling;
R^2 diag/sep of a binned 1-d probe. Means with standard errors (std / sqrt(runs)).

Usage:
    nice python scripts/bench_linear.py                 # everything LSCALE-I, 20 runs per setting
    python scripts/bench_linear.py --quick              # smoke test in seconds (LSCALE-I and UMNI-CRL),
                                                        # writes ./bench_out/linear/linear.json
    python scripts/bench_linear.py --only umni          # add UMNI-CRL results (causal_wm.benchmarking,
                                                        # as scripts/bench_umni.py)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, umni_benchmark, umni_table, write_json
from causal_wm.crl.dag import transitive_reduction
from causal_wm.crl.lscale import lscale_i
from causal_wm.crl.metrics import edge_precision_recall, evaluate, incorrect_mixing_norm, shd
from causal_wm.device import machine_info
from causal_wm.scm import (
    CRLProblem,
    lscale_problem,
    transitive_closure,
)

# Official code (acarturk-e/score-based-crl at abb5a09) measured on this machine, docs/science.md section 8
# (100 runs per row, SHD with reversal = 1, hard interventions).
REFERENCE = {
    "hard/gaussian/n5_d100_N50000": {"mcc_pearson": 0.993, "shd": 0.87, "edge_precision": 0.91,
                                     "edge_recall": 0.94, "seconds": 0.24},
    "hard/gaussian/n8_d100_N50000": {"mcc_pearson": 0.984, "shd": 3.81, "edge_precision": 0.84,
                                     "edge_recall": 0.92, "seconds": 1.45},
    "hard/gaussian/n8_d100_N10000": {"mcc_pearson": 0.945, "shd": 10.8, "edge_precision": 0.58,
                                     "edge_recall": 0.80, "seconds": 1.13},
    "hard/oracle/n8_d100_N50000": {"mcc_pearson": 0.968, "shd": 2.26, "edge_precision": 0.95,
                                   "edge_recall": 0.90, "seconds": 1.53},
}


@dataclass
class Config:
    """Benchmark settings (each one a command-line flag)."""

    runs: int = 20
    """seeded runs per setting"""
    sizes: tuple[tuple[int, int], ...] = ((5, 100), (8, 100))
    """(n, d) pairs"""
    samples: tuple[int, ...] = (5_000, 10_000, 50_000)
    """samples per environment"""
    modes: tuple[str, ...] = ("hard", "soft")
    """intervention types"""
    scores: tuple[str, ...] = ("oracle", "gaussian")
    """score-difference sources"""
    seed: int = 10_000
    """seed of run 0 (run r uses seed + r)"""
    out: str = str(RESULTS_DIR / "linear.json")
    """output JSON (a PNG is written next to it); an existing file is resumed (its finished settings kept)"""
    only: str = "lscale"
    """which algorithms to run: lscale, umni or all; results of the others in the output file are kept"""
    fresh: bool = False
    """ignore an existing output file (no resume)"""
    umni_ns: tuple[int, ...] = (4, 5, 6, 7, 8)
    """numbers of latents of the UMNI-CRL runs (--only umni or all; d = 50, hard and soft)"""
    umni_samples: int = 100_000
    """samples per environment of the UMNI-CRL runs"""
    quick: bool = False
    """smoke test in seconds: 2 runs, N = 5k, LSCALE-I and a small UMNI-CRL; writes under ./bench_out/linear/"""


QUICK = {"runs": 2, "samples": (5_000,), "only": "all", "umni_ns": (4,), "umni_samples": 5_000,
         "out": str(quick_dir("linear") / "linear.json")}


def true_permutation(problem: CRLProblem, env_targets: np.ndarray) -> np.ndarray:
    """Learned latent matched to each true latent through the environments (ground truth of which
    env hit which node): used for the soft rows, where latents mix with their parents and the MCC
    matching can pick a parent."""
    perm = np.empty(problem.n, dtype=np.int64)
    perm[[t[0] for t in problem.targets]] = env_targets
    return perm


def run_one(problem: CRLProblem, *, hard: bool, scores: str, oracle: list[np.ndarray] | None) -> dict:
    envs = problem.observations
    start = time.perf_counter()
    if scores == "oracle":
        res = lscale_i(envs, score_diffs=oracle, hard=hard)
    else:
        res = lscale_i(envs, scores=scores, hard=hard)
    seconds = time.perf_counter() - start
    z0 = problem.latents[0]
    G = problem.mixing.G
    out = evaluate(z0, res.encode(envs[0]), true_graph=problem.graph, learned_graph=res.graph,
                   encoder=res.encoder, mixing_matrix=G, hard=hard, r2=True)
    perm_env = true_permutation(problem, res.target_latents)
    out["targets_correct"] = float(np.mean(perm_env == np.asarray(out["permutation"])))
    if not hard:
        # soft: graph up to transitive closure; mixing allowed with parents (and ancestors)
        closure_true = transitive_closure(problem.graph)
        closure_learned = transitive_closure(res.graph_soft)
        out["shd_closure"] = shd(closure_true, closure_learned, perm_env)
        out["shd_reduction"] = shd(transitive_reduction(problem.graph), transitive_reduction(res.graph_soft),
                                   perm_env)
        out["closure_precision"], out["closure_recall"] = edge_precision_recall(closure_true, closure_learned,
                                                                                perm_env)
        out["incorrect_mixing"] = incorrect_mixing_norm(res.encoder, G, problem.graph, hard=False,
                                                        permutation=perm_env)
        out["incorrect_mixing_ancestors"] = incorrect_mixing_norm(res.encoder, G, problem.graph, hard=False,
                                                                  permutation=perm_env, soft_pattern="ancestors")
    out["seconds"] = seconds
    out["score_seconds"] = float(res.diagnostics["score_seconds"])
    out["true_edges"] = int(problem.graph.sum())
    out.pop("permutation")
    return out


def summarise(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, int | float)]
    summary = {}
    for k in keys:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        summary[k] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None}
    summary["shd_zero_fraction"] = float(np.mean([r["shd"] == 0 for r in rows]))
    return summary


def run_lscale(cfg: Config, results: dict) -> dict:
    settings = results.setdefault("lscale", {})
    combos = [(mode, n, d, N) for mode in cfg.modes for (n, d) in cfg.sizes for N in cfg.samples]
    for mode, n, d, N in tqdm(combos, desc="LSCALE-I settings"):
        keys = {s: f"{mode}/{s}/n{n}_d{d}_N{N}" for s in cfg.scores}
        if all(k in settings and settings[k]["runs"] >= cfg.runs for k in keys.values()):
            continue  # resume: already done
        rows: dict[str, list[dict]] = {s: [] for s in cfg.scores}
        for r in tqdm(range(cfg.runs), desc=f"{mode} n={n} N={N}", leave=False):
            seed = cfg.seed + r
            problem = (lscale_problem(n, d, N, hard=True, seed=seed) if mode == "hard"
                       else lscale_problem(n, d, N, hard=False, seed=seed))
            oracle = problem.oracle_score_differences() if "oracle" in cfg.scores else None
            for s in cfg.scores:
                rows[s].append(run_one(problem, hard=mode == "hard", scores=s, oracle=oracle))
            del problem, oracle
        for s, key in keys.items():
            settings[key] = {"mode": mode, "scores": s, "n": n, "d": d, "num_samples": N, "runs": cfg.runs,
                             "seeds": [cfg.seed, cfg.seed + cfg.runs - 1], "summary": summarise(rows[s]),
                             "per_run": rows[s], "reference_official_code": REFERENCE.get(key)}
        write(cfg, results)
    return settings


def run_umni(cfg: Config, results: dict) -> None:
    """UMNI-CRL (``causal_wm.benchmarking.umni_benchmark``, as scripts/bench_umni.py runs it)."""
    results["umni"] = umni_benchmark(ns=cfg.umni_ns, runs=cfg.runs, num_samples=cfg.umni_samples,
                                     progress=not cfg.quick)
    print(umni_table(results["umni"]))


def write(cfg: Config, results: dict) -> None:
    results["machine"] = machine_info()
    write_json(cfg.out, results)


def table(results: dict) -> str:
    lines = ["| mode | scores | (n, d) | N | runs | MCC | SHD (rev 1) | SHD (rev 2) | precision / recall | "
             "incorrect mixing | Z error | s/run | official code: MCC / SHD |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(s: dict, k: str, digits: int = 3) -> str:
        return f"{s[k]['mean']:.{digits}f} ± {s[k]['se']:.{digits}f}" if s[k]["se"] is not None \
            else f"{s[k]['mean']:.{digits}f}"

    for row in results.get("lscale", {}).values():
        s = row["summary"]
        ref = row.get("reference_official_code")
        ref_txt = f"{ref['mcc_pearson']:.3f} / {ref['shd']:.2f}" if ref else ""
        shd_txt = fmt(s, "shd", 2)
        if row["mode"] == "soft":
            shd_txt += f" (closure {s['shd_closure']['mean']:.2f}, reduction {s['shd_reduction']['mean']:.2f})"
        lines.append(f"| {row['mode']} | {row['scores']} | ({row['n']}, {row['d']}) | {row['num_samples']} | "
                     f"{row['runs']} | {fmt(s, 'mcc_pearson', 4)} | {shd_txt} | {fmt(s, 'shd_rev2', 2)} | "
                     f"{s['edge_precision']['mean']:.3f} / {s['edge_recall']['mean']:.3f} | "
                     f"{fmt(s, 'incorrect_mixing')} | {fmt(s, 'z_error')} | {s['seconds']['mean']:.3f} | {ref_txt} |")
    return "\n".join(lines)


def plot(cfg: Config, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results.get("lscale", {}).values())
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["scores"], row["n"]), []).append(row)
    for (mode, scores, n), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["num_samples"])
        N = [r["num_samples"] for r in rs]
        style = "-" if mode == "hard" else "--"
        marker = "o" if scores == "gaussian" else "s"
        label = f"{mode}, {scores}, n={n}"
        shd_key = "shd" if mode == "hard" else "shd_closure"
        for ax, metric, key in ((axes[0], "MCC (Pearson)", "mcc_pearson"), (axes[1], "SHD (reversal = 1)", shd_key)):
            mean = [r["summary"][key]["mean"] for r in rs]
            se = [r["summary"][key]["se"] or 0.0 for r in rs]
            ax.errorbar(N, mean, yerr=se, linestyle=style, marker=marker, label=label, capsize=3)
            ax.set_xscale("log")
            ax.set_xlabel("samples per environment")
            ax.set_ylabel(metric)
    axes[0].set_title("LSCALE-I latent recovery")
    axes[1].set_title("LSCALE-I graph recovery (soft: between transitive closures)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(cfg.out).with_suffix(".png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    if cfg.only not in ("lscale", "umni", "all"):
        raise SystemExit(f"--only must be lscale, umni or all, got {cfg.only!r}")
    torch.set_num_threads(1)
    out = Path(cfg.out)
    results: dict = {}
    if out.exists() and not cfg.fresh:
        results = json.loads(out.read_text())
    if cfg.only in ("lscale", "all"):
        results["settings"] = {"runs": cfg.runs, "sizes": cfg.sizes, "samples": cfg.samples, "modes": cfg.modes,
                               "scores": cfg.scores, "seed": cfg.seed, "quick": cfg.quick,
                               "soft_interventions": "parent weights x0.5 and noise variance x5",
                               "hard_interventions": "parents cut, noise variance x5",
                               "timing": "lscale_i only (Gaussian score estimation included)"}
        run_lscale(cfg, results)
    if cfg.only in ("umni", "all"):
        run_umni(cfg, results)
    write(cfg, results)
    plot(cfg, results)
    print(table(results))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
