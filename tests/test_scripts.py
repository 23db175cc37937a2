"""Every ``scripts/*.py`` (found with a glob: a new script is covered as soon as it exists): its
``--quick`` run in a subprocess on one thread writes its JSON result where its output option says,
records the quick settings and leaves ``benchmarks/results/`` and ``benchmarks/cache/`` untouched;
``--help`` lists every field of its config dataclass with the field's docstring (CleanRL's smoke tests
are the pattern). Numbers are not checked: the budgets are tiny."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from causal_wm.benchmarking import CACHE_DIR, QUICK_ROOT, RESULTS_DIR
from causal_wm.config import field_docs

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1"}


@dataclass
class Spec:
    """How a script's quick run is pointed at a folder and what its JSON promises."""

    args: list[str]
    """output options; ``{out}`` is the test's folder"""
    result: str
    """the JSON file, relative to ``{out}``"""
    keys: set[str]
    """top-level keys of the JSON"""
    check: Callable[[dict[str, Any]], None] = field(default=lambda report: None)
    """known values of the quick settings"""


def _agents(r: dict) -> None:
    s = r["settings"]
    assert s["quick"] and s["seeds"] == 1 and s["total_timesteps"] == 1024 and s["crl_preset"] == "debug"
    assert set(r["runs"]) == {f"Balls-v0/{t}/0" for t in ("pixels", "causal", "autoencoder", "true")}
    assert all(len(run["smoothed"]) == s["grid_points"] == 10 for run in r["runs"].values())
    assert r["references"]["Balls-v0"]["random_episodes"] == s["random_episodes"] == 4


def _cli(r: dict) -> None:
    assert r["settings"]["quick"] and r["settings"]["repeats"] == 1
    assert len(r["results"]) == 10 and all(len(v["runs"]) == 1 for v in r["results"].values())


def _collect(r: dict) -> None:
    s = r["settings"]
    assert s["quick"] and s["steps"] == 2_000 and s["repeats"] == 1
    assert len(r["bare_env_steps_per_s"]["runs"]) == 1
    assert all(len(v["runs"]) == 1 and v["frames_per_s"] > 0 for v in r["collect"].values())


def _gscale(r: dict) -> None:
    v = r["vector"]
    assert v["complete"] and v["settings"]["quick"] and v["settings"]["preset"] == "debug"
    assert [(run["d"], run["seed"]) for run in v["runs"]] == [(8, 0)]
    assert v["summary"]["8"]["runs"] == v["settings"]["runs"] == 1
    assert r["images"] is None


def _gscale_images(r: dict) -> None:
    entry = r["images"]["debug"]
    s = entry["settings"]
    assert s["quick"] and s["per_regime"] == 60 and s["n"] == 4
    assert set(entry["routes"]) == set(s["routes"]) and entry["best_route"] in entry["routes"]
    assert all(Path(p).exists() for p in entry["plots"])
    assert r["vector"] is None


def _image_crl(r: dict) -> None:
    s = r["settings"]
    assert s["quick"] and s["preset"] == "debug" and s["per_regime"] == 60 and s["graph_seeds"] == [0]
    assert set(r["scenes"]) == {"Balls-v0", "Shadow-v0"} and set(r["goals"]) == set(r["scenes"])
    for scene in r["scenes"].values():
        summary = scene["summary"]
        assert summary["runs"] == len(scene["runs"]) == 1 and summary["route"] == s["routes"][0]
        assert {"mcc_spearman_mean", "mcc_spearman_min", "mcc_pearson_mean", "shd_mean", "ceiling_corr_mean",
                "seconds_mean", "goals_met"} <= set(summary)
        run = scene["runs"][0]
        assert set(run["routes"]) == set(s["routes"]) and "ceiling" in run and "plain_autoencoder_code" in run
        assert all(Path(p).exists() for p in [scene["plot"], *run["plots"]])


def _linear(r: dict) -> None:
    s = r["settings"]
    assert s["quick"] and s["runs"] == 2 and s["samples"] == [5_000]
    assert len(r["lscale"]) == len(s["modes"]) * len(s["sizes"]) * len(s["scores"]) == 8
    assert all(len(row["per_run"]) == 2 for row in r["lscale"].values())
    assert r["umni"]["settings"]["ns"] == [4] and r["umni"]["settings"]["runs"] == 2


def _planning(r: dict) -> None:
    scene = r["scenes"]["Balls-v0"]
    c = scene["config"]
    assert c["quick"] and c["preset"] == "debug" and c["seeds"] == 2 and c["steps"] == 20
    for scenario in ("in_distribution", "out_of_distribution"):
        runs = scene["results"][scenario]["planning"]["runs"]
        assert all(len(v) == c["seeds"] for v in runs.values())


def _render(r: dict) -> None:
    assert r["settings"]["quick"] and r["settings"]["repeats"] == 1 and r["settings"]["frames"] == 500
    assert len(r["results"]["balls_env_steps_per_s_runs"]) == 1


def _scores(r: dict) -> None:
    s = r["settings"]
    assert r["complete"] and s["quick"] and s["seeds"] == 1
    assert {row["num_samples"] for row in r["rows"]} == {300}
    assert {row["method"] for row in r["rows"]} == set(s["methods"])


def _umni(r: dict) -> None:
    assert r["config"]["quick"] and r["settings"]["ns"] == [4] and r["settings"]["num_samples"] == 5_000
    leaves = [s for by_mode in r["results"].values() for by_n in by_mode.values() for s in by_n.values()]
    assert len(leaves) == 2 and all(len(s["records"]) == s["runs"] == 2 for s in leaves)


def _storage(r: dict) -> None:
    s = r["settings"]
    assert s["quick"] and s["frames"] == 2_000 and s["repeats"] == 1 and s["read_batches"] == 5
    assert set(r["results"]) == {"none", "lzf", "gzip", "lzf, 64-frame chunks"}
    assert all(len(v["random_runs"]) == 1 and v["file_bytes"] > 0 for v in r["results"].values())
    assert r["results"]["lzf"]["file_bytes"] < r["results"]["none"]["file_bytes"]


def _tables(r: dict) -> None:
    assert r["config"]["quick"] and r["config"]["readme"]
    readme, page = Path(r["readme"]).read_text(), Path(r["results_page"]).read_text()
    assert r["headline"] in readme and "docs/results.md" in readme and r["tables"] in page
    assert Path(r["readme"]).resolve() != (ROOT / "README.md").resolve()
    assert Path(r["results_page"]).resolve() != (ROOT / "docs" / "results.md").resolve()
    assert len(r["sections"]) == r["tables"].count("\n### ") + r["tables"].startswith("### ")


def _causal_suite(r: dict) -> None:
    c = r["config"]
    assert c["quick"] and c["preset"] == "debug" and c["seeds"] == 2 and list(c["adapt_k"]) == [0, 40]
    assert set(r["scenes"]) == {"chemistry", "balls"}
    for payload in r["scenes"].values():
        res = payload["results"]
        assert set(res) == {"in_distribution", "ood_values", "ood_joint", "mechanism_shift", "distractor_shift"}
        for scenario in ("in_distribution", "ood_values", "ood_joint"):
            planning = res[scenario]["planning"]
            assert {"oracle", "random", "true_latents", "learned"} <= set(planning)
            for half in ("true_latents", "learned"):
                assert set(planning[half]) == {"causal", "noncausal", "pets"}
                assert all(len(v["runs"]) == 2 for v in planning[half].values())
                assert set(res[scenario]["ranking"][half]["causal"]) == {"1", "5"}
        assert set(res["mechanism_shift"]["halves"]) == {"true_latents", "learned"}
    summary = r["summary"]
    for key in ("true_causal_over_noncausal_ood_joint_min", "adaptation_sample_ratio_min",
                "learned_over_true_causal_ood_min", "learned_causal_over_noncausal_ood_joint_min"):
        assert key in summary and key in summary["goals"]
    assert set(r["figures"]) == {"success", "adaptation", "ranking"}


def _train_agent(r: dict) -> None:
    c = r["config"]
    assert c["quick"] and c["total_timesteps"] == 256 and c["n_envs"] == 2 and c["obs_type"] == "true"
    assert r["timesteps"] >= 256 and r["episodes"] == len(r["returns"]) == len(r["steps"])


SPECS: dict[str, Spec] = {
    "bench_agents": Spec(["--output", "{out}/agents.json", "--runs-dir", "{out}/runs"], "agents.json",
                         {"benchmark", "settings", "machine", "runs", "references", "encoders", "summary"}, _agents),
    "bench_causal_suite": Spec(["--out", "{out}", "--cache", "{out}/cache"], "causal_suite_quick.json",
                               {"benchmark", "config", "machine", "summary", "scenes", "figures"}, _causal_suite),
    "bench_cli": Spec(["--out", "{out}/cli.json"], "cli.json", {"benchmark", "settings", "machine", "results",
                                                                 "summary"}, _cli),
    "bench_collect": Spec(["--out", "{out}/collect.json"], "collect.json",
                          {"benchmark", "machine", "settings", "bare_env_steps_per_s", "hdf5_write_path_MB_per_s",
                           "collect"}, _collect),
    "bench_gscale": Spec(["--out", "{out}/gscale.json"], "gscale.json", {"vector", "images"}, _gscale),
    "bench_gscale_images": Spec(["--out", "{out}/gscale.json"], "gscale.json", {"vector", "images"}, _gscale_images),
    "bench_image_crl": Spec(["--out", "{out}/image_crl.json"], "image_crl.json",
                            {"description", "settings", "machine", "goals", "scenes"}, _image_crl),
    "bench_linear": Spec(["--out", "{out}/linear.json"], "linear.json", {"settings", "lscale", "umni", "machine"},
                         _linear),
    "bench_planning": Spec(["--out", "{out}", "--cache", "{out}/cache"], "planning_quick.json",
                           {"benchmark", "scenes"}, _planning),
    "bench_render": Spec(["--output", "{out}/render.json"], "render.json",
                         {"benchmark", "machine", "settings", "scene", "results"}, _render),
    "bench_scores": Spec(["--out", "{out}/scores.json"], "scores.json",
                         {"benchmark", "complete", "settings", "rows", "summary", "machine"}, _scores),
    "bench_umni": Spec(["--out", "{out}/umni.json"], "umni.json", {"settings", "results", "config", "machine", "table"},
                       _umni),
    "bench_storage": Spec(["--out", "{out}/storage.json"], "storage.json",
                          {"benchmark", "machine", "settings", "results"}, _storage),
    "results_tables": Spec(["--out", "{out}"], "tables.json", {"config", "sources", "sections", "tables", "readme"},
                           _tables),
    "train_agent": Spec(["--out", "{out}"], "Balls-v0__true__ppo__0/curve.json",
                        {"config", "steps", "returns", "episodes", "timesteps", "run_dir"}, _train_agent),
}


def _snapshot() -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under benchmarks/results and benchmarks/cache."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for folder in (RESULTS_DIR, CACHE_DIR)
            if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(script: Path, args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _records_quick(value: Any) -> bool:
    """Whether a result records ``"quick": true`` somewhere (the script's settings)."""
    if isinstance(value, dict):
        return value.get("quick") is True or any(_records_quick(v) for v in value.values())
    if isinstance(value, list):
        return any(_records_quick(v) for v in value)
    return False


def test_every_script_is_described():
    assert {p.stem for p in SCRIPTS} == set(SPECS), "describe the quick run of a new script in SPECS"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_run_writes_its_result(script, tmp_path):
    spec = SPECS.get(script.stem)
    out = tmp_path / "out"
    before = _snapshot()
    # a script without a SPECS entry still runs, with its quick defaults (./bench_out/<name>/ in tmp_path)
    args = [a.format(out=out) for a in spec.args] if spec else []
    done = _run(script, ["--quick", *args], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _snapshot() == before, "a --quick run wrote into benchmarks/results or benchmarks/cache"
    if spec is None:
        results = sorted((tmp_path / QUICK_ROOT).rglob("*.json"))
        assert results, f"{script.name} --quick wrote no JSON under ./{QUICK_ROOT}/"
        assert any(_records_quick(json.loads(p.read_text())) for p in results)
        pytest.fail(f"describe {script.name} in SPECS of {Path(__file__).name}")
    report = json.loads((out / spec.result).read_text())
    assert spec.keys <= set(report), sorted(spec.keys - set(report))
    assert _records_quick(report)
    spec.check(report)
    assert not (tmp_path / QUICK_ROOT).exists(), "with its output options given, a quick run writes nothing else"


def _config_docs(script: Path) -> dict[str, str]:
    """Field -> docstring of the script's config dataclass (the one with the ``quick`` field), read
    from the source (fields of a library base class from the class itself)."""
    tree = ast.parse(script.read_text())
    imports = {alias.asname or alias.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in imports:
                docs.update(field_docs(getattr(importlib.import_module(imports[base.id]), base.id)))
        for item, after in zip(node.body, node.body[1:], strict=False):
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                docs[item.target.id] = " ".join(str(after.value.value).split())
        if "quick" in docs:
            return docs
    raise AssertionError(f"{script.name} has no config dataclass with a documented bool field 'quick'")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_help_lists_every_config_field(script, tmp_path):
    docs = _config_docs(script)
    done = _run(script, ["--help"], cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    text = " ".join(done.stdout.split())
    unwrapped = "".join(done.stdout.split())  # argparse may wrap a help text at a hyphen
    for name, doc in docs.items():
        assert f"--{name.replace('_', '-')}" in text, name
        assert doc and doc.split()[0] in unwrapped, (name, doc)
    assert "--quick" in text


def test_quick_defaults_stay_in_the_current_folder(tmp_path):
    """Without output options a quick run writes under ./bench_out/<name>/; pointed at the results
    folder it refuses."""
    script = ROOT / "scripts" / "bench_render.py"
    before = _snapshot()
    done = _run(script, ["--quick"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / QUICK_ROOT / "render" / "render.json").read_text())["settings"]["quick"]
    assert (tmp_path / QUICK_ROOT / "render" / "render_samples.png").stat().st_size > 0
    refused = _run(script, ["--quick", "--output", str(RESULTS_DIR / "render.json")], cwd=tmp_path)
    assert refused.returncode == 2 and "--quick" in refused.stderr
    assert _snapshot() == before
