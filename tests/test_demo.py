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
    report = (tmp_path / "report.md").read_text()
    for name in summary["figures"].values():
        assert (tmp_path / name).stat().st_size > 1000
        assert name in report
    # a second run resumes the collection and the checkpoints and gives the same model
    again = run_demo(tmp_path, preset="debug", progress=False)
    assert again["metrics"]["mcc_spearman"] == pytest.approx(summary["metrics"]["mcc_spearman"])


def test_demo_command_rejects_bad_arguments(capsys):
    assert main(["demo", "--preset", "huge"]) == 2
    assert "invalid choice" in capsys.readouterr().err
