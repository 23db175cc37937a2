"""Smoke test of scripts/bench_planning.py with its tiny budget (numbers mean nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_every_planner_and_scenario(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_planning.py"), "--quick", "--out", str(out),
                           "--cache", str(cache), "--steps", "10", "--num-balls", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "planning_quick.json").read_text())["scenes"]["Balls-v0"]
    for scenario in ("in_distribution", "out_of_distribution"):
        summary = result["results"][scenario]["planning"]["summary"]
        assert set(summary) == {"oracle", "causal", "noncausal", "random", "causal_true_latents",
                                "noncausal_true_latents"}
        assert all(0.0 <= s["success_rate"] <= 1.0 for s in summary.values())
        assert result["results"][scenario]["prediction"]["per_intervention"]
    # out of distribution, the planners may only use interventions the data never showed
    assert all(a == "seeing" or a.startswith("do(") for a in result["results"]["out_of_distribution"]["actions"])
    for path in result["figures"].values():
        assert Path(path).stat().st_size > 1000
