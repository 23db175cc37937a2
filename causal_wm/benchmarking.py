"""What the scripts in ``scripts/`` share (the benchmarks, ``train_agent.py``, ``results_tables.py``).

- ``parse_config``: a script's settings are one dataclass with a docstring under every field; its
  parser has one ``--field-name`` option per field (``causal_wm.config.add_config_arguments``: the
  docstring is the help), a field ``tuple[int, ...]`` (or of ``float``/``str``) takes one or more
  values (``--dims 8 25``), and ``--quick`` (every script's bool field ``quick``) switches the
  defaults to tiny budgets and to outputs under ``./bench_out/<script>/`` of the current folder.
  Options given explicitly win over the quick defaults; a quick run refuses to write into
  ``benchmarks/results/`` or ``benchmarks/cache/``.
- ``write_json`` (atomic) and ``update_json`` (one entry of a results file that several scripts
  write, under a lock).
- The UMNI-CRL benchmark (``umni_benchmark``, ``umni_merge``, ``umni_table``), run by
  ``scripts/bench_umni.py`` and by ``scripts/bench_linear.py --only umni``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from causal_wm.config import add_config_arguments, config_from_args, field_docs

__all__ = [
    "CACHE_DIR",
    "QUICK_ROOT",
    "REPO_ROOT",
    "RESULTS_DIR",
    "UMNI_PUBLISHED",
    "add_script_arguments",
    "make_umni_problem",
    "parse_config",
    "quick_dir",
    "umni_benchmark",
    "umni_merge",
    "umni_run_one",
    "umni_table",
    "update_json",
    "write_json",
]

C = TypeVar("C")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CACHE_DIR = REPO_ROOT / "benchmarks" / "cache"
QUICK_ROOT = "bench_out"
_ITEM_TYPES = {"int": int, "float": float, "str": str}


def quick_dir(name: str) -> Path:
    """``bench_out/<name>``, relative to the current folder: where a ``--quick`` run of script ``name``
    writes unless an option says otherwise (never the source tree's ``benchmarks/``)."""
    return Path(QUICK_ROOT) / name


# --- command lines ----------------------------------------------------------------------------------
def _list_item_type(annotation: Any) -> type | None:
    """``tuple[int, ...]`` (also ``list[int]``) -> ``int``: a field given as one or more values;
    None for every other annotation (nested tuples stay JSON options of ``add_config_arguments``)."""
    match = re.fullmatch(r"(?:tuple\[(\w+),\.\.\.\]|list\[(\w+)\])", str(annotation).replace(" ", ""))
    if not match:
        return None
    return _ITEM_TYPES.get(match.group(1) or match.group(2))


def _field_default(f: dataclasses.Field, defaults: Any) -> Any:
    if defaults is not None:
        return getattr(defaults, f.name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def _scalar_kwargs(annotation: Any) -> dict[str, Any]:
    """``add_argument`` keywords of a hidden alias of a scalar field (the types of ``add_config_arguments``)."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    if kinds == {"bool"}:
        return {"action": "store_true"}
    if any(k.startswith(("dict", "list", "tuple")) for k in kinds):
        return {"type": json.loads}
    if "int" in kinds and "float" not in kinds and "str" not in kinds:
        return {"type": int}
    if "float" in kinds and "str" not in kinds:
        return {"type": float}
    return {"type": str}


def add_script_arguments(parser: argparse.ArgumentParser, cls: type, *, defaults: Any = None,
                         aliases: Mapping[str, str] | None = None) -> None:
    """The options of the dataclass ``cls``: ``add_config_arguments`` for every field, except that a
    ``tuple[int, ...]`` (``float``, ``str``) field takes one or more values (``--dims 8 25 40``).
    ``defaults``: an instance whose values are the defaults. ``aliases``: extra option strings of a
    field, hidden from ``--help`` (``{"--debug": "quick"}`` keeps an old name working)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    lists = {name: item for name, f in fields.items() if (item := _list_item_type(f.type)) is not None}
    docs = field_docs(cls)
    for name in fields:  # one field at a time: the options keep the order of the fields
        if name not in lists:
            add_config_arguments(parser, cls, skip=tuple(n for n in fields if n != name), defaults=defaults)
            continue
        default = tuple(_field_default(fields[name], defaults))
        shown = " ".join(str(v) for v in default) or "none"
        parser.add_argument(f"--{name.replace('_', '-')}", nargs="+", type=lists[name], default=default,
                            help=f"{docs.get(name, '')} (one or more values; default: {shown})".replace("%", "%%"))
    for option, name in (aliases or {}).items():
        if name not in fields:
            raise ValueError(f"alias {option!r} names no field of {cls.__name__}: {name!r}")
        kwargs = {"nargs": "+", "type": lists[name]} if name in lists else _scalar_kwargs(fields[name].type)
        parser.add_argument(option, dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def parse_config(cls: type[C], argv: Sequence[str] | None = None, *, description: str | None = None,
                 quick: Mapping[str, Any] | None = None, outputs: Sequence[str] = (),
                 aliases: Mapping[str, str] | None = None) -> C:
    """The script's config ``cls`` (a dataclass with a bool field ``quick``) from the command line.

    ``quick``: the fields a ``--quick`` run changes (tiny budgets; outputs under ``quick_dir(name)``);
    they become the defaults of the parser, so options given explicitly still win (``--quick --help``
    shows them). ``outputs``: the fields that are paths the script writes to; a quick run exits with
    an error when one of them lies in ``benchmarks/results/`` or ``benchmarks/cache/``. ``aliases``:
    see ``add_script_arguments``. ``description``: the help text above the options (the script's
    docstring), shown verbatim.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if "quick" not in names:
        raise TypeError(f"{cls.__name__} needs a bool field 'quick'")
    argv = None if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False)
    for option, name in (aliases or {}).items():
        if name == "quick":
            pre.add_argument(option, dest="quick", action="store_true")
    known, _ = pre.parse_known_args(argv)
    defaults = cls()
    if known.quick:
        defaults = dataclasses.replace(defaults, quick=True, **dict(quick or {}))  # type: ignore[type-var]
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_script_arguments(parser, cls, defaults=defaults, aliases=aliases)
    args = parser.parse_args(argv)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, f in fields.items():
        if _list_item_type(f.type) is not None and isinstance(getattr(args, name, None), list):
            setattr(args, name, tuple(getattr(args, name)))
    config = config_from_args(cls, args)
    if config.quick:  # type: ignore[attr-defined]
        for name in outputs:
            value = getattr(config, name)
            if value and (_inside(value, RESULTS_DIR) or _inside(value, CACHE_DIR)):
                parser.error(f"a --quick run writes nothing into {RESULTS_DIR} or {CACHE_DIR}: "
                             f"--{name.replace('_', '-')} {value} (leave it out to write under ./{QUICK_ROOT}/)")
    return config


# --- results files ----------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, data: Any, **dumps: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file, then a rename); parent folders
    are created. ``dumps``: keywords of ``json.dumps`` (default ``indent=1``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dumps.setdefault("indent", 1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, **dumps) + "\n")
    os.replace(tmp, path)
    return path


def update_json(path: str | os.PathLike, keys: Sequence[str], value: Any, *,
                initial: Mapping[str, Any] | None = None, **dumps: Any) -> dict[str, Any]:
    """Set ``data[keys[0]][keys[1]]... = value`` in the JSON file ``path`` and keep everything else:
    read, modify and atomic write under an exclusive lock (another script may write other entries of
    the same file). A missing or unreadable file starts from ``initial``. Returns the written data."""
    import fcntl

    if not keys:
        raise ValueError("update_json needs at least one key")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock file lives outside the results folder so that nothing but results lands there
    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = dict(initial or {})
        if path.exists() and path.stat().st_size:
            try:
                data.update(json.loads(path.read_text()))
            except json.JSONDecodeError:
                pass
        here = data
        for key in keys[:-1]:
            nxt = here.get(key)
            here[key] = nxt = dict(nxt) if isinstance(nxt, dict) else {}
            here = nxt
        here[keys[-1]] = value
        write_json(path, data, **dumps)
    return data


# --- the UMNI-CRL benchmark -------------------------------------------------------------------------
UMNI_PUBLISHED = {  # NeurIPS 2024 poster, means over runs; SHD = false positives + false negatives
    4: {"soft": {"shd": 0.77, "mcc": 0.96}, "hard": {"shd": 0.66, "mcc": 0.98}},
    5: {"soft": {"shd": 1.93, "mcc": 0.93}, "hard": {"shd": 1.80, "mcc": 0.98}},
    6: {"soft": {"shd": 3.39, "mcc": 0.92}, "hard": {"shd": 3.05, "mcc": 0.95}},
    7: {"soft": {"shd": 4.62, "mcc": 0.91}, "hard": {"shd": 6.12, "mcc": 0.91}},
    8: {"soft": {"shd": 8.26, "mcc": 0.90}, "hard": {"shd": 9.01, "mcc": 0.88}},
}


def make_umni_problem(n: int, d: int, num_samples: int, *, hard: bool, seed: int, variance_factor: float = 0.25,
                      parent_scale: float = 0.5):
    """One problem of the published UMNI-CRL design (``causal_wm.scm.umni_problem``): hard
    interventions scale the noise variance by ``variance_factor``; soft ones also multiply the parent
    weights by ``parent_scale`` (as the published code does: without the variance change a soft
    intervention on a root changes nothing)."""
    from causal_wm.scm import umni_problem

    return umni_problem(n, d, num_samples, hard=hard, hard_variance_factor=variance_factor,
                        soft_parent_scale=parent_scale, soft_variance_factor=variance_factor, seed=seed)


def _mean_se(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else float("nan")
    return {"mean": float(a.mean()), "se": se}


def umni_run_one(n: int, d: int, num_samples: int, *, hard: bool, scores: str, seed: int) -> dict[str, Any]:
    """One seeded UMNI-CRL run: data, score differences, the algorithm, metrics. Pearson MCC (Hungarian
    matching) on observational samples; SHD after the MCC matching with reversal cost 1 and 2; edge
    precision and recall; hard: against the true DAG, soft: against its transitive closure."""
    from causal_wm.crl import metrics
    from causal_wm.crl.scores import score_differences, score_error
    from causal_wm.crl.umni import umni_crl
    from causal_wm.scm import transitive_closure

    problem = make_umni_problem(n, d, num_samples, hard=hard, seed=seed)
    envs = problem.observations
    if scores == "oracle":
        result = umni_crl(envs, score_diffs=problem.oracle_score_differences(), hard=hard, n=n)
    else:
        result = umni_crl(envs, scores=scores, hard=hard, n=n, seed=seed)
    z, z_hat = problem.latents[0], result.encode(envs[0])
    m = metrics.mcc(z, z_hat)
    true_graph = problem.graph if hard else transitive_closure(problem.graph)
    precision, recall = metrics.edge_precision_recall(true_graph, result.graph, m.permutation)
    targets_ok = bool(np.array_equal(result.target_matrix[:, m.permutation], problem.target_matrix))
    out: dict[str, Any] = {
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


def umni_benchmark(ns: Sequence[int] = (4, 5, 6, 7, 8), runs: int = 20, num_samples: int = 100_000, d: int = 50,
                   scores: Sequence[str] = ("gaussian",), modes: Sequence[str] = ("hard", "soft"), seed: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """Run every (scores, mode, n) setting ``runs`` times (seeds ``seed .. seed + runs - 1``).

    Returns ``{"settings": ..., "results": {scores: {mode: {n: {...}}}}}`` where each leaf holds the
    mean and standard error of every metric, the per-run records and the published row.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    bar = tqdm(total=len(scores) * len(modes) * len(ns) * runs, disable=not progress, desc="umni")
    for method in scores:
        for mode in modes:
            for n in ns:
                records = []
                for r in range(runs):
                    records.append(umni_run_one(n, d, num_samples, hard=mode == "hard", scores=method,
                                                seed=seed + r))
                    bar.update()
                keys = ["mcc", "mcc_spearman", "shd_rev1", "shd_rev2", "edge_precision", "edge_recall",
                        "seconds_scores", "seconds_algorithm", "score_error"]
                summary: dict[str, Any] = {k: _mean_se([rec[k] for rec in records]) for k in keys if k in records[0]}
                summary["targets_exact_rate"] = float(np.mean([rec["targets_exact"] for rec in records]))
                summary["runs"] = runs
                summary["published"] = UMNI_PUBLISHED.get(n, {}).get(mode)
                summary["records"] = records
                results.setdefault(method, {}).setdefault(mode, {})[str(n)] = summary
    bar.close()
    return {
        "settings": {"ns": list(ns), "runs": runs, "num_samples": num_samples, "d": d, "scores": list(scores),
                     "modes": list(modes), "seed": seed,
                     "shd_published_convention": "reversal cost 2 (false positives + false negatives)"},
        "results": results,
    }


def umni_merge(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine the outputs of several ``umni_benchmark`` calls (disjoint settings) into one."""
    out: dict[str, Any] = {"settings": dict(parts[0]["settings"]), "results": {}}
    for key in ("ns", "scores", "modes"):
        out["settings"][key] = sorted({v for p in parts for v in p["settings"][key]}, key=str)
    for p in parts:
        for method, by_mode in p["results"].items():
            for mode, by_n in by_mode.items():
                out["results"].setdefault(method, {}).setdefault(mode, {}).update(by_n)
    return out


def umni_table(out: Mapping[str, Any]) -> str:
    """Markdown table of ``umni_benchmark`` results next to the published numbers."""
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
