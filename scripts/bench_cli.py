"""How long the command line takes to answer ``--help`` (the first thing a newcomer runs): every
subcommand's help in a fresh process, several times, wall clock (median and max).

    python scripts/bench_cli.py              # writes benchmarks/results/cli.json
    python scripts/bench_cli.py --quick      # one repeat, writes under ./bench_out/cli/
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from causal_wm.benchmarking import RESULTS_DIR, parse_config, quick_dir, write_json
from causal_wm.device import machine_info

COMMANDS = ("", "collect", "repair", "export", "fit", "evaluate", "plan", "train-agent", "bench", "demo")


@dataclass
class Config:
    """Settings of the command-line benchmark."""

    out: str = str(RESULTS_DIR / "cli.json")
    """the JSON result"""
    repeats: int = 5
    """fresh processes per command"""
    quick: bool = False
    """one repeat (a smoke test); writes under ./bench_out/cli/"""


QUICK = {"repeats": 1, "out": str(quick_dir("cli") / "cli.json")}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv, description=__doc__, quick=QUICK, outputs=("out",))
    results = {}
    for command in COMMANDS:
        args = [sys.executable, "-m", "causal_wm", *([command] if command else []), "--help"]
        times = []
        for _ in range(cfg.repeats):
            t0 = time.perf_counter()
            done = subprocess.run(args, capture_output=True, text=True, timeout=120)
            times.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(args)} failed: {done.stderr[-1000:]}")
        results[command or "(top level)"] = {"median_s": statistics.median(times), "max_s": max(times),
                                             "runs": times}
        print(f"causal-wm {command} --help: median {statistics.median(times):.3f} s", flush=True)
    worst = max(v["median_s"] for v in results.values())
    payload = {"benchmark": "cli", "settings": dataclasses.asdict(cfg), "machine": machine_info(),
               "results": results, "summary": {"help_median_max_s": worst, "goal_s": 1.0, "met": worst < 1.0}}
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(cfg.out), payload)
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    main()
