import json

import pytest

from causal_wm.cli import main
from causal_wm.demo import run_demo


def test_demo_debug_preset_writes_report_and_summary(tmp_path):
    summary = run_demo(tmp_path, preset="debug", progress=False)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["metrics"]["mcc_spearman"] == pytest.approx(summary["metrics"]["mcc_spearman"])
    assert 0.0 <= summary["metrics"]["mcc_spearman"] <= 1.0
    assert summary["dataset"]["regimes"] == 13 and summary["dataset"]["rows"] == 13 * 150
    assert sorted(summary["permutation"]) == list(range(6))
    # the world model, the planner and the agent ran and are reported
    assert set(summary["planning"]) >= {"learned", "oracle", "random", "settings"}
    assert summary["world_model"]["imagined_interventions"]["unseen"]["count"] > 0
    assert summary["agent"]["steps"] == 512 and summary["agent"]["episodes"] > 0
    assert (tmp_path / "world_model.pt").exists()
    report = (tmp_path / "report.md").read_text()
    for section in ("Causal world model", "Planning interventions", "An agent on the learned causal features"):
        assert section in report
    for name in summary["figures"].values():
        assert (tmp_path / name).stat().st_size > 1000
        assert name in report
    # a second run resumes the collection and the checkpoints and gives the same model
    again = run_demo(tmp_path, preset="debug", progress=False)
    assert again["metrics"]["mcc_spearman"] == pytest.approx(summary["metrics"]["mcc_spearman"])


def test_demo_command_rejects_bad_arguments(capsys):
    assert main(["demo", "--preset", "huge"]) == 2
    assert "invalid choice" in capsys.readouterr().err
