"""Markdown tables of the benchmark results in ``benchmarks/results/*.json`` next to the published
numbers: every table in ``docs/results.md``, and a short headline table in the README's "Results"
block (both are this script's output).

    python scripts/results_tables.py            # print
    python scripts/results_tables.py --readme   # rewrite docs/results.md and the block between the markers in README.md
    python scripts/results_tables.py --out T    # also write T/tables.md and T/tables.json
    python scripts/results_tables.py --quick    # the whole path, README.md and docs untouched: the
                                                # tables, README and results page go to ./bench_out/results_tables/
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from causal_wm.benchmarking import REPO_ROOT, RESULTS_DIR, parse_config, quick_dir, write_json

README = REPO_ROOT / "README.md"
RESULTS_PAGE = REPO_ROOT / "docs" / "results.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# docs/science.md section 8: the official code on this machine (LSCALE-I, gaussian scores, SHD reversal = 1)
OFFICIAL_LSCALE = {(5, 50_000): (0.993, 0.87), (8, 50_000): (0.984, 3.81), (8, 10_000): (0.945, 10.8)}


@dataclass
class Config:
    """Settings of the tables."""

    results: str = str(RESULTS_DIR)
    """folder of the benchmark results (*.json) the tables are made of"""
    readme: bool = False
    """rewrite docs/results.md and the results block of README.md (with --quick: write both into --out instead)"""
    out: str = ""
    """folder to write tables.md and tables.json to (empty: print the tables only)"""
    quick: bool = False
    """smoke test: the tables and the rewritten README go to ./bench_out/results_tables/, README.md is untouched"""


QUICK = {"readme": True, "out": str(quick_dir("results_tables"))}


def _load_from(name: str, folder: Path) -> dict | None:
    path = Path(folder) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ms(stat: dict, digits: int = 3) -> str:
    spread = stat.get("se", stat.get("std"))
    return f"{stat['mean']:.{digits}f}" if not spread else f"{stat['mean']:.{digits}f} ± {spread:.{digits}f}"


def render(folder: str | Path = RESULTS_DIR) -> str:
    """The markdown tables of the results in ``folder``."""

    def _load(name: str) -> dict | None:
        return _load_from(name, Path(folder))

    out: list[str] = []
    data = _load("render")
    if data:
        r = data["results"]
        out += ["### Scenes and data (this 2-core CPU)", "",
                "| measurement | value | goal |", "|---|---|---|",
                f"| Balls-v0 steps/s through `gym.make` | {r['balls_env_steps_per_s']:,.0f} | >= 10,000 |",
                f"| Balls batch renderer frames/s | {r['balls_batch_frames_per_s']:,.0f} | >= 50,000 |",
                f"| same scene with matplotlib frames/s | {r['balls_matplotlib_frames_per_s']:,.0f} | "
                f"({r['batch_over_matplotlib']:.0f}x slower) |",
                f"| Shadow-v0 steps/s | {r['shadow_env_steps_per_s']:,.0f} | |"]
    data = _load("collect")
    if data:
        rows = data.get("collect", {})
        for key, label in (("1 process (", "collector, 1 process"), ("2 processes", "collector, 2 processes")):
            row = next((v for k, v in rows.items() if k.startswith(key)), None)
            if row:
                out.append(f"| {label}, frames/s written to HDF5 | {row['frames_per_s']:,.0f} | >= 5,000 |")
    out.append("")

    data = _load("linear")
    if data:
        out += ["### LSCALE-I (linear mixing, one intervention per node; 20 runs per row, mean ± s.e.)", "",
                "Soft interventions identify each latent up to mixing with its ancestors and the graph up to its "
                "transitive closure: for soft rows SHD and precision/recall compare transitive closures.", "",
                "| mode | scores | (n, d) | N | MCC | SHD (rev. 1) | precision / recall | s/run "
                "| official code MCC / SHD |",
                "|---|---|---|---|---|---|---|---|---|"]
        for entry in data["lscale"].values():
            s = dict(entry["summary"])
            if entry["mode"] == "soft" and "shd_closure" in s:
                s.update(shd=s["shd_closure"], edge_precision=s["closure_precision"], edge_recall=s["closure_recall"])
            official = OFFICIAL_LSCALE.get((entry["n"], entry["num_samples"])) \
                if entry["mode"] == "hard" and entry["scores"] == "gaussian" else None
            out.append(f"| {entry['mode']} | {entry['scores']} | ({entry['n']}, {entry['d']}) | "
                       f"{entry['num_samples']:,} | "
                       f"{s['mcc_pearson']['mean']:.4f} | {_ms(s['shd'], 2)} | {s['edge_precision']['mean']:.2f} / "
                       f"{s['edge_recall']['mean']:.2f} | {s['seconds']['mean']:.2f} | "
                       f"{f'{official[0]:.3f} / {official[1]:.2f}' if official else ''} |")
        out.append("")
    data = _load("umni")
    if data:
        out += ["### UMNI-CRL (unknown multi-node interventions, d = 50, N = 100k, gaussian scores; 20 runs, "
                "mean ± s.e.; SHD = false positives + false negatives as published)", "",
                "| n | hard MCC (published) | hard SHD (published) | soft MCC (published) | soft SHD (published) |",
                "|---|---|---|---|---|"]
        res = data["results"]["gaussian"]
        for n in sorted(res["hard"], key=int):
            h, s = res["hard"][n], res.get("soft", {}).get(n)
            ph, ps = h.get("published", {}), (s or {}).get("published", {})
            cells = [f"{_ms(h['mcc'])} ({ph.get('mcc', '')})", f"{_ms(h['shd_rev2'], 2)} ({ph.get('shd', '')})"]
            if s:
                cells += [f"{_ms(s['mcc'])} ({ps.get('mcc', '')})", f"{_ms(s['shd_rev2'], 2)} ({ps.get('shd', '')})"]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    data = _load("gscale")
    if data and data.get("vector"):
        v = data["vector"]
        out += [f"### GSCALE-I, vectors (quadratic latents, tanh(G Z), n = 8, estimated scores, pairing found; "
                f"{v['settings']['runs']} runs, mean ± std)", "",
                "| d | Z error (published) | SHD rev. 1 (published) | MCC Pearson / Spearman | pairs found | s/run |",
                "|---|---|---|---|---|---|"]
        for d, s in v["summary"].items():
            pub = s.get("published_estimated", {})
            out.append(f"| {d} | {_ms(s['z_error'])} ({pub.get('z_error', '')}) | {_ms(s['shd'], 1)} "
                       f"({pub.get('shd', '')}) | {s['mcc_pearson']['mean']:.3f} / {s['mcc_spearman']['mean']:.3f} | "
                       f"{s['pair_accuracy']['mean']:.3f} | {s['seconds']['mean']:.0f} |")
        out += ["", f"Goal: Z error <= {v['goal']['z_error']}, SHD <= {v['goal']['shd']}.", ""]
    if data and data.get("images"):
        out += ["### Images: Balls-v0, 3 balls, n = 6 (published development runs: MCC 0.16 to 0.59)", "",
                "| preset | route | Spearman MCC | Pearson MCC | R² diag / sep | SHD rev. 1 / 2 | seconds |",
                "|---|---|---|---|---|---|---|"]
        for preset, entry in data["images"].items():
            for route, m in entry["routes"].items():
                out.append(f"| {preset} | {route} | {m['mcc_spearman']:.3f} | {m['mcc_pearson']:.3f} | "
                           f"{m['r2_diag']:.3f} / {m['r2_sep']:.3f} | {m['shd']} / {m['shd_rev2']} | "
                           f"{m.get('seconds_end_to_end', float('nan')):.0f} |")
            base = entry.get("plain_autoencoder_code")
            if base:
                out.append(f"| {preset} | plain autoencoder code | {base['mcc_spearman']:.3f} | "
                           f"{base['mcc_pearson']:.3f} | | | |")
        out += ["", "Goal (full preset, GPU): Spearman MCC >= 0.95 and SHD <= 1.", ""]
    data = _load("image_crl")
    if data and data.get("scenes"):
        st = data.get("settings", {})
        out += [f"### Image CRL: graphs and scenes ({st.get('preset', '')} preset, "
                f"{st.get('per_regime', '')} frames per regime; supervised ceiling: the same CNN regressing the "
                "true latents)", "",
                "Means over runs (Balls-v0: one run per graph seed) on fresh observational frames; SHD reversal = 1 "
                "after the Pearson-MCC matching; ceiling: mean correlation of the supervised CNN with the true "
                "latents; seconds: one fit on this machine.", "",
                "| scene | route | runs | Spearman MCC mean / min | Pearson MCC | SHD | ceiling | seconds per fit |",
                "|---|---|---|---|---|---|---|---|"]

        def _f(value: float | None, digits: int) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        goals = []
        for scene_name, entry in data["scenes"].items():
            summary = entry.get("summary") or {}
            rows = [(summary.get("route", ""), summary), *(summary.get("routes") or {}).items()]
            for route, s in rows:
                if not s.get("runs"):
                    continue
                out.append(f"| {scene_name} | {route} | {s['runs']} | {_f(s['mcc_spearman_mean'], 3)} / "
                           f"{_f(s['mcc_spearman_min'], 3)} | {_f(s['mcc_pearson_mean'], 3)} | "
                           f"{_f(s['shd_mean'], 2)} | {_f(s.get('ceiling_corr_mean'), 3)} | "
                           f"{_f(s.get('seconds_mean'), 0)} |")
            met = summary.get("goals_met") or {}
            targets = (data.get("goals") or {}).get(scene_name, {})
            if summary.get("runs") and targets:
                goals.append(f"{scene_name}: " + ", ".join(
                    f"{name} {target} ({'met' if met.get(name) else 'not met'})" for name, target in targets.items()))
        if goals:
            out += ["", "Goals: " + "; ".join(goals) + "."]
        out.append("")
    planning = _load("planning")
    for scene_name, data in (planning or {}).get("scenes", {}).items():
        task, cfg = data["task"], data["config"]
        out += [f"### Planning interventions: {scene_name} reach task "
                f"(goal {task['goal_name']} = {task['goal_value']:g}, "
                f"success within {task['tolerance']:g}; {cfg['seeds']} seeds x {cfg['steps']} steps, mean ± s.e.)", "",
                "Same one-step planner, four models. In distribution: the data's menu (mean-shift pairs). Out of "
                "distribution: only do interventions at values and node pairs the data never showed. The models plan "
                "from frames through the learned encoder; the true-latent columns fit the same two model classes "
                "on the data's true latents (the causal one with the true graph: the ablation without "
                "representation error). Prediction error: MMD "
                "between imagined and real (encoded) latents, mean over the scenario's interventions.", "",
                "| scenario | oracle (true SCM) | causal world model | non-causal model | random | "
                "causal / non-causal on true latents | MMD causal / non-causal |",
                "|---|---|---|---|---|---|---|"]
        for scenario, entry in data["results"].items():
            s, pred = entry["planning"]["summary"], entry["prediction"]["mean"]
            cells = [f"{s[p]['success_rate']:.3f} ± {s[p]['success_rate_se']:.3f}"
                     for p in ("oracle", "causal", "noncausal", "random")]
            if "causal_true_latents" in s:
                cells.append(f"{s['causal_true_latents']['success_rate']:.3f} / "
                             f"{s['noncausal_true_latents']['success_rate']:.3f}")
            else:
                cells.append("")
            out.append(f"| {scenario.replace('_', ' ')} | " + " | ".join(cells)
                       + f" | {pred['causal']['mmd']:.4f} / {pred['noncausal']['mmd']:.4f} |")
        g = data["goals"]
        out += ["", f"Causal / oracle success: {g['in_distribution_causal_over_oracle']:.2f} in distribution "
                f"(goal >= 0.9), "
                f"{g['out_of_distribution_causal_over_oracle']:.2f} out of distribution (goal >= 0.8); causal / "
                f"non-causal out of distribution {g['out_of_distribution_causal_over_noncausal']:.2f} (goal >= 2).", ""]
    out += _causal_suite_table(_load("causal_suite"))
    agents = _load("agents")
    if agents and agents.get("summary"):
        st = agents["settings"]
        rho = st["env_kwargs"].get("persistence")
        out += [f"### Agents: PPO on four observation types (reach task, persistence {rho}; "
                f"{st['seeds']} seeds x {st['total_timesteps']:,} env steps)", "",
                "Steps to threshold: first point where the smoothed mean curve reaches random + 0.9 x (true-latent "
                "agent's final return - random); '-' = not reached. Steps/s: training throughput on this CPU.", "",
                "| scene | observation | steps to threshold | final return | steps/s |",
                "|---|---|---|---|---|"]
        for scene_name, entry in agents["summary"].items():
            for obs, row in entry.get("obs_types", {}).items():
                steps = row["steps_to_threshold_mean_curve"]
                out.append(f"| {scene_name} | {obs} | {'-' if steps is None else f'{steps:,}'} | "
                           f"{row['final_smoothed_return_mean']:.1f} | {row['steps_per_s_mean']:,.0f} |")
        goal = agents["summary"].get("Balls-v0", {}).get("goal")
        if goal:
            out += ["", "Goal (Balls-v0): the causal encoder reaches the threshold in <= 1/5 of the pixel agent's "
                    "steps "
                    f"and before the plain autoencoder: causal / pixels = {goal['causal_over_pixels']:.2f}, "
                    f"{'met' if goal['met'] else 'not met'}."]
        out.append("")
    return "\n".join(out)


def _causal_suite_table(suite: dict | None) -> list[str]:
    """The causal suite: planning success per scene, scenario, half and model; the summary against its goals."""
    if not suite or not suite.get("scenes"):
        return []
    cfg = suite["config"]
    out = [f"### Causal suite: where causality decides (success within {cfg['tolerance']:g} of the goal; "
           f"{cfg['seeds']} seeds x {cfg['steps']} steps, mean ± s.e.)", "",
           "Chemistry-v0 (c = a * b, d -> e -> goal, goal = c * e) and Balls-v0 on a weighted DAG with a mediator "
           f"chain; {cfg['distractors']} distractors, persistence {cfg['persistence']:g}. Each cell: oracle (true "
           "SCM) / causal world model / non-causal action-conditioned model / PETS ensemble (5 members) / random. "
           "True latents: the models read the true latents (the causal one with the true graph); learned: every "
           "model reads the image CRL encoder's latents of the same frames. Mechanism shift: success after "
           f"K = {max(cfg['adapt_k'])} new transitions.", "",
           "| scene | scenario | true latents | learned from images |", "|---|---|---|---|"]

    def cell(entry: dict, half: str) -> str:
        plan = entry.get("planning", {})
        if half not in plan:
            return "-"
        values = [plan["oracle"]] + [plan[half].get(m) for m in ("causal", "noncausal", "pets")] + [plan["random"]]
        return " / ".join("-" if v is None else f"{v['success_rate']:.2f}" for v in values)

    for scene, payload in suite["scenes"].items():
        res = payload["results"]
        for scenario in ("in_distribution", "ood_values", "ood_joint", "distractor_shift"):
            if scenario in res:
                out.append(f"| {scene} | {scenario.replace('_', ' ')} | {cell(res[scenario], 'true_latents')} | "
                           f"{cell(res[scenario], 'learned')} |")
        shift = res.get("mechanism_shift")
        if shift:
            k = str(max(cfg["adapt_k"]))
            cells = []
            for half in ("true_latents", "learned"):
                h = shift["halves"].get(half)
                if h is None:
                    cells.append("-")
                    continue
                s = h["per_k"][k]["success"]
                need = h["samples_to_90pct_oracle"]
                values = [shift["oracle"]["success_rate"], *(s[m] for m in ("causal", "noncausal", "pets")),
                          shift["random"]["success_rate"]]
                cells.append(" / ".join(f"{v:.2f}" for v in values)
                             + f" (K to 90 % of oracle: causal {need['causal']}, non-causal {need['noncausal']}, "
                               f"PETS {need['pets']})")
            out.append(f"| {scene} | mechanism shift | {cells[0]} | {cells[1]} |")
    goals = suite["summary"]["goals"]
    parts = []
    for key, v in goals.items():
        value = "-" if v["value"] is None else f"{v['value']:.2f}"
        parts.append(f"{key} = {value} (goal >= {v['goal']:g}, {'met' if v['met'] else 'not met'})")
    out += ["", "Summary: " + "; ".join(parts) + ".", ""]
    return out


def headline(folder: str | Path = RESULTS_DIR) -> str:
    """The README's short table: one line per benchmark that has results, with its goal."""

    def _load(name: str) -> dict | None:
        return _load_from(name, Path(folder))

    rows: list[str] = []
    image = _load("image_crl")
    if image:
        for scene, data in image.get("scenes", {}).items():
            m = data.get("summary", {})
            if "mcc_spearman_mean" in m:
                runs = m.get("runs", 1)
                reference = "published development runs 0.16 to 0.59" if scene.startswith("Balls") else "-"
                rows.append(f"| image CRL, {scene} ({runs} run{'s' if runs != 1 else ''}) | Spearman MCC "
                            f"{m['mcc_spearman_mean']:.3f} (worst {m['mcc_spearman_min']:.3f}), Pearson "
                            f"{m['mcc_pearson_mean']:.3f}, SHD {m['shd_mean']:.1f} | {reference} |")
    suite = _load("causal_suite")
    if suite and suite.get("summary"):
        g = suite["summary"]["goals"]

        def value(key: str) -> str:
            v = g[key]["value"]
            return "-" if v is None else f"{v:.2f}"

        rows.append("| causal suite, true latents: causal / best non-causal success on unseen joint interventions "
                    f"(min over scenes) | {value('true_causal_over_noncausal_ood_joint_min')} | >= 2 |")
        rows.append("| causal suite, true latents: transitions the best non-causal model needs after a mechanism "
                    f"shift / the causal model's | {value('adaptation_sample_ratio_min')} | >= 5 |")
        rows.append("| causal suite, from images: learned / true-latent causal success out of distribution | "
                    f"{value('learned_over_true_causal_ood_min')} | >= 0.8 |")
        rows.append("| causal suite, from images: causal / best non-causal on unseen joint interventions | "
                    f"{value('learned_causal_over_noncausal_ood_joint_min')} | >= 1.5 |")
    linear = _load("linear")
    if linear and linear.get("lscale"):
        rows.append("| LSCALE-I and UMNI-CRL on the published protocol | see docs/results.md | the published "
                    "numbers |")
    if not rows:
        return "No benchmark results yet: run the scripts in scripts/ (docs/results.md lists them)."
    return "\n".join(["| benchmark | result (this 2-core CPU) | goal or reference |", "|---|---|---|", *rows, "",
                      "Every table, with settings, error bars and the published numbers: "
                      "[docs/results.md](docs/results.md)."])


def results_page(tables: str) -> str:
    """``docs/results.md``: every table."""
    return ("# Results\n\nGenerated by `python scripts/results_tables.py --readme` from "
            "`benchmarks/results/*.json` (do not edit by hand). Timings are on a 2-core CPU with one torch "
            "thread; a second job on the same cores slows them several fold.\n\n" + tables + "\n")


def rewrite_readme(text: str, tables: str) -> str:
    """``text`` (the README) with the block between the markers replaced by ``tables``."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{tables}\n{END}{tail}"


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    tables = render(cfg.results)
    report = {"config": dataclasses.asdict(cfg), "results": cfg.results,
              "sources": sorted(p.name for p in Path(cfg.results).glob("*.json")),
              "sections": [line[4:] for line in tables.splitlines() if line.startswith("### ")],
              "tables": tables}
    out = Path(cfg.out) if cfg.out else None
    if cfg.readme:
        if cfg.quick and out is None:
            raise SystemExit("--quick --readme needs --out (README.md is not rewritten by a quick run)")
        short = headline(cfg.results)
        text = rewrite_readme(README.read_text(), short)
        target = out / "README.md" if cfg.quick and out is not None else README
        page = out / "results.md" if cfg.quick and out is not None else RESULTS_PAGE
        for path, content in ((target, text), (page, results_page(tables))):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        report["readme"], report["results_page"], report["headline"] = str(target), str(page), short
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "tables.md").write_text(tables + "\n")
        write_json(out / "tables.json", report)
        print(f"wrote {out / 'tables.md'} and {out / 'tables.json'}" +
              (f"; README: {report['readme']}" if "readme" in report else ""))
    elif not cfg.readme:
        print(tables)
    return report


if __name__ == "__main__":
    main()
