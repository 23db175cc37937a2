"""Smoke test of scripts/bench_render.py with tiny budgets (timings are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_render_quick(tmp_path):
    out = tmp_path / "render.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_render.py"), "--quick", "--output", str(out)],
                   check=True, capture_output=True, timeout=120)
    report = json.loads(out.read_text())
    results = report["results"]
    for key in ("balls_env_steps_per_s", "balls_batch_frames_per_s", "balls_matplotlib_frames_per_s",
                "shadow_env_steps_per_s", "shadow_batch_frames_per_s"):
        assert results[key] > 0
    assert results["batch_over_matplotlib"] == results["balls_batch_frames_per_s"] / results[
        "balls_matplotlib_frames_per_s"]
    # the OpenCV and matplotlib renderings of the same latents agree up to anti-aliasing
    assert results["opencv_vs_matplotlib_mean_abs_pixel_diff"] < 5.0
    assert {"cpu_count", "numpy", "date"} <= set(report["machine"])
    assert (tmp_path / "render_samples.png").stat().st_size > 0
