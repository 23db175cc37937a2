"""UMNI-CRL reproduction benchmark (docs/science.md sections 6 and 7): linear Gaussian latents, linear
mixing, d = 50, n = 4..8, N = 100k per environment, hard and soft unknown multi-node interventions.

Design of the published experiments (and of ``causal_wm.scm.umni_problem``): target matrix =
identity plus upper-triangular fill 0.5 in the causal order, invertible, rows shuffled; graph
Erdős–Rényi p = 0.5 in the order 0..n-1; hard = cut the parents and noise variance x0.25. Soft: in
the published code every intervened node's noise variance is scaled by 0.25 for soft interventions
too, on top of halving the parent weights (without it a soft intervention on a root changes
nothing and the root cannot be found); ``causal_wm.benchmarking.make_umni_problem`` builds that design.

Metrics: Pearson MCC (Hungarian matching) on observational samples; SHD after the MCC matching with
reversal cost 1 and 2 (2 = false positives + false negatives, the convention of the published
UMNI-CRL code and table), edge precision and recall. Hard: against the true DAG; soft: against its
transitive closure (what soft interventions identify), as in the published evaluation.

    python scripts/bench_umni.py                 # full run, writes benchmarks/results/umni.json
    python scripts/bench_umni.py --runs 2 --ns 4 5 --num-samples 20000   # a smaller check
    python scripts/bench_umni.py --quick         # smoke test in seconds, writes ./bench_out/umni/

The benchmark itself (``umni_benchmark``, ``umni_table``) lives in ``causal_wm.benchmarking``:
``scripts/bench_linear.py --only umni`` runs it too.
"""

from __future__ import annotations

import os

# one BLAS thread: the benchmark machine is shared, and threaded BLAS on small products oversubscribes
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from causal_wm.benchmarking import (  # noqa: E402
    RESULTS_DIR,
    UMNI_PUBLISHED,
    parse_config,
    quick_dir,
    umni_benchmark,
    umni_merge,
    umni_table,
    write_json,
)
from causal_wm.device import machine_info  # noqa: E402


@dataclass
class Config:
    """Settings of the UMNI-CRL benchmark (every field is a command-line option)."""

    ns: tuple[int, ...] = (4, 5, 6, 7, 8)
    """numbers of latents"""
    runs: int = 20
    """seeded runs per setting (seeds seed .. seed + runs - 1)"""
    num_samples: int = 100_000
    """samples per environment"""
    d: int = 50
    """observation dimension"""
    scores: tuple[str, ...] = ("gaussian",)
    """score estimators"""
    modes: tuple[str, ...] = ("hard", "soft")
    """hard and/or soft"""
    seed: int = 0
    """first seed"""
    out: str = str(RESULTS_DIR / "umni.json")
    """output JSON (a PNG is written next to it)"""
    merge: tuple[str, ...] = ()
    """combine these result JSONs (e.g. hard and soft run in parallel) into --out instead of running"""
    quick: bool = False
    """smoke test in seconds: n = 4, 2 runs, 5k samples; writes under ./bench_out/umni/"""


QUICK = {"ns": (4,), "runs": 2, "num_samples": 5_000, "out": str(quick_dir("umni") / "umni.json")}


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
                pub_ns = [k for k in ns if k in UMNI_PUBLISHED]
                if pub_ns:
                    ax.plot(pub_ns, [UMNI_PUBLISHED[k][mode][pub_key] for k in pub_ns], ls="--", marker="x",
                            label=f"{mode}, published")
    axes[0].set(xlabel="n", ylabel="MCC (Pearson)", title="UMNI-CRL latents")
    axes[1].set(xlabel="n", ylabel="SHD (false pos. + false neg.)", title="UMNI-CRL graph")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    if cfg.merge:
        out = umni_merge([json.loads(Path(p).read_text()) for p in cfg.merge])
    else:
        out = umni_benchmark(cfg.ns, cfg.runs, cfg.num_samples, cfg.d, cfg.scores, cfg.modes, cfg.seed,
                             progress=not cfg.quick)
    out["config"] = asdict(cfg)
    out["machine"] = machine_info()
    out["table"] = umni_table(out)
    path = write_json(cfg.out, out)
    plot(out, path.with_suffix(".png"))
    print(out["table"])
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
