"""The causal-wm subcommands around the world model: fit, evaluate, plan, bench (debug sizes)."""

from __future__ import annotations

import json

import pytest

from causal_wm.cli import main
from causal_wm.world_model import CausalWorldModel

SCENE = '{"num_balls": 2, "graph_seed": 0}'


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_wm")
    data, model = folder / "balls.h5", folder / "model.pt"
    assert main(["collect", "causal_wm/Balls-v0", "--per-regime", "150", "--out", str(data), "--no-progress",
                 "--env-kwargs", '{"num_balls": 2, "graph_seed": 0, "do_values": []}']) == 0
    assert main(["fit", str(data), "--out", str(model), "--preset", "debug", "--device", "cpu",
                 "--no-progress"]) == 0
    return folder, data, model


def test_fit_writes_a_loadable_model(fitted, capsys):
    _, _, model = fitted
    loaded = CausalWorldModel.load(model)
    assert loaded.n == 4 and sorted(loaded.latent_of_node) == [0, 1, 2, 3]


def test_evaluate_writes_metrics_and_figures(fitted, capsys):
    folder, _, model = fitted
    out = folder / "eval"
    assert main(["evaluate", str(model), "--env-kwargs", SCENE, "--out", str(out), "--frames", "200",
                 "--samples", "100"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["mcc_spearman"] <= 1.0
    # every menu entry of the scene, seen in the data or not, has an interventional error
    assert len(metrics["interventions"]) == 1 + 4 * 5
    assert all(r["mmd"] >= -0.05 for r in metrics["interventions"])
    for path in metrics["figures"].values():
        assert (out / path.split("/")[-1]).stat().st_size > 1000
    assert "Spearman MCC" in capsys.readouterr().out


def test_plan_compares_learned_oracle_and_random(fitted, capsys):
    folder, _, model = fitted
    out = folder / "plan.json"
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--steps", "30", "--samples", "32",
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["planners"]) == {"learned", "oracle", "random"}
    assert all(0.0 <= r["success_rate"] <= 1.0 for r in results["planners"].values())
    text = capsys.readouterr().out
    assert "oracle" in text and "learned" in text


def test_plan_with_cem(fitted):
    _, _, model = fitted
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--steps", "5", "--samples", "64",
                 "--planner", "cem", "--horizon", "2"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["fit", "missing.h5", "--out", "m.pt"], "no collection"),
    (["evaluate", "missing.pt", "--out", "x"], "no model file"),
    (["plan", "missing.pt"], "no model file"),
    (["bench", "nonexistent"], "unknown benchmark"),
    (["plan", "--planner", "magic", "m.pt"], "invalid choice"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_evaluate_rejects_a_scene_of_another_size(fitted, capsys):
    folder, _, model = fitted
    assert main(["evaluate", str(model), "--out", str(folder / "e2")]) == 2
    assert "latents" in capsys.readouterr().err


def test_bench_lists_the_scripts(capsys):
    assert main(["bench", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"planning", "linear", "render"} <= set(names)


@pytest.mark.parametrize("command", ["fit", "evaluate", "plan", "bench", "train-agent", "demo"])
def test_every_subcommand_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert command in capsys.readouterr().out
