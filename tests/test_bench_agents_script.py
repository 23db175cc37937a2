"""Smoke tests of scripts/train_agent.py and scripts/bench_agents.py with tiny budgets (timings and
learning progress are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from causal_wm.agents import training
from causal_wm.config import field_docs

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def test_bench_agents_quick(tmp_path):
    out = tmp_path / "agents.json"
    command = [sys.executable, str(ROOT / "scripts" / "bench_agents.py"), "--quick", "--output", str(out),
               "--runs-dir", str(tmp_path / "runs")]
    subprocess.run(command, check=True, capture_output=True, timeout=300, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert {"cpu_count", "torch", "numpy", "date"} <= set(report["machine"])
    assert set(report["runs"]) == {f"Balls-v0/{t}/0" for t in ("pixels", "causal", "autoencoder", "true")}
    for run in report["runs"].values():
        assert len(run["grid"]) == len(run["smoothed"]) == 10
        assert run["episodes"] > 0 and run["steps_per_s"] > 0
    assert report["encoders"]["causal"]["n"] == report["encoders"]["autoencoder"]["settings"]["n"] == 6
    summary = report["summary"]["Balls-v0"]
    random, oracle = summary["random_return"], summary["oracle_final_return"]
    assert summary["threshold"] == pytest.approx(random + 0.9 * (oracle - random))
    assert set(summary["obs_types"]) == {"pixels", "causal", "autoencoder", "true"}
    assert isinstance(summary["goal"]["met"], bool)
    assert (tmp_path / "agents_curves.png").stat().st_size > 0
    # a second call resumes: every run is already there, nothing is trained again
    before = {k: v["wall_s"] for k, v in report["runs"].items()}
    subprocess.run(command, check=True, capture_output=True, timeout=300, cwd=tmp_path)
    assert {k: v["wall_s"] for k, v in json.loads(out.read_text())["runs"].items()} == before

    # the script's own causal model also serves as a fine-tuned features extractor
    result = training.train(training.TrainConfig(
        obs_type="causal", encoder_mode="extractor", fine_tune=True, model_path=report["encoders"]["causal"]["path"],
        total_timesteps=256, n_envs=2, out=str(tmp_path / "extractor"), device="cpu", save_agent=False))
    assert Path(result["run_dir"]).name == "Balls-v0__causal-finetuned__ppo__0"
    assert result["timesteps"] >= 256


def test_train_agent_help_lists_every_field_with_its_docstring():
    text = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_agent.py"), "--help"], check=True,
                          capture_output=True, text=True, timeout=120).stdout
    for name, doc in field_docs(training.TrainConfig).items():
        assert f"--{name.replace('_', '-')}" in text
        assert doc.split()[0] in text


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_train_true_latents_writes_the_curve_and_the_agent(tmp_path, algo):
    config = training.TrainConfig(obs_type="true", algo=algo, total_timesteps=400, n_envs=2, out=str(tmp_path),
                                     device="cpu")
    result = training.train(config)
    run_dir = Path(result["run_dir"])
    assert run_dir.name == f"Balls-v0__true__{algo}__0"
    assert result["timesteps"] >= 400 and result["episodes"] == len(result["steps"]) == len(result["returns"]) > 0
    assert json.loads((run_dir / "curve.json").read_text())["returns"] == result["returns"]
    assert (run_dir / "monitor.csv").read_text().count("\n") >= 2 + result["episodes"] - 2
    assert (run_dir / "agent.zip").exists()


def test_plain_autoencoder_round_trips_and_has_standardised_codes(tmp_path):
    import gymnasium as gym

    import causal_wm  # noqa: F401

    env = gym.make("causal_wm/Balls-v0", num_balls=2, image_size=32, ball_radius=2.5)
    scene = env.unwrapped
    frames = scene.renderer(scene.scm.sample(256, None, seed=0))
    ae = training.PlainAutoencoder.fit(frames, 4, image_size=16, epochs=1, channels=8, hidden=32, seed=0,
                                          device="cpu", progress=False)
    codes = ae.encode(frames)
    assert codes.shape == (256, 4)
    np.testing.assert_allclose(codes.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(codes.std(0, ddof=1), 1.0, atol=1e-3)
    loaded = training.PlainAutoencoder.load(ae.save(tmp_path / "ae.pt"))
    np.testing.assert_allclose(loaded.encode(frames), codes, atol=1e-6)
    with pytest.raises(ValueError, match="not a plain autoencoder"):
        training.PlainAutoencoder.load(torch.save({"format": "x"}, tmp_path / "x.pt") or tmp_path / "x.pt")


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="obs_type"):
        training.check_config(training.TrainConfig(obs_type="rgb"))
    with pytest.raises(ValueError, match="needs model_path"):
        training.check_config(training.TrainConfig(obs_type="causal"))
    with pytest.raises(ValueError, match="fine_tune"):
        training.check_config(training.TrainConfig(obs_type="causal", model_path="m.pt", fine_tune=True))
