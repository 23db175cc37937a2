"""The causal-wm command line: collect, help, and exit status 2 for bad arguments."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from causal_wm.cli import main
from causal_wm.data import Dataset


def test_collect_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "balls.h5"
    code = main(["collect", "causal_wm/Balls-v0", "--steps", "60", "--out", str(out), "--seed", "3",
                 "--policy", "mix:0.5", "--no-progress"])
    assert code == 0
    ds = Dataset(out)
    assert len(ds) == 60 and ds.seed == 3 and ds.attrs["policy"] == "mix:0.5"
    assert "60 rows" in capsys.readouterr().out


def test_collect_balanced_and_vectorized(tmp_path):
    out = tmp_path / "balanced.h5"
    code = main(["collect", "causal_wm/Balls-v0", "--per-regime", "2", "--out", str(out), "--num-envs", "2",
                 "--vectorization", "sync", "--compression", "lzf", "--no-progress"])
    assert code == 0
    assert set(Dataset(out).regime_counts().values()) == {2}


@pytest.mark.parametrize("argv", [["--help"], ["collect", "--help"], ["export", "--help"], ["--version"]])
def test_help_exits_zero(argv, capsys):
    assert main(argv) == 0
    assert "causal-wm" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    ([], "COMMAND"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10"], "--out"),
    (["collect", "causal_wm/Balls-v0", "--steps", "-5", "--out", "x.h5"], "positive integer"),
    (["collect", "causal_wm/Balls-v0", "--steps", "ten", "--out", "x.h5"], "positive integer"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10", "--out", "x.h5", "--policy", "wander"], "unknown policy"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10", "--out", "x.h5", "--policy", "mix:2"], "seeing fraction"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10", "--out", "x.h5", "--vectorization", "gpu"], "invalid choice"),
    (["collect", "causal_wm/Balls-v0", "--out", "x.h5"], "--steps"),
    (["collect", "causal_wm/Balls-v0", "--per-regime", "3", "--policy", "seeing", "--out", "x.h5"], "balanced"),
    (["collect", "causal_wm/Nope-v0", "--steps", "10", "--out", "x.h5"], "unknown env id"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10", "--out", "/no/such/folder/x.h5"], "does not exist"),
    (["collect", "causal_wm/Balls-v0", "--steps", "10", "--out", "x.h5", "--env-kwargs", "[1]"], "JSON object"),
    (["bogus"], "invalid choice"),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err + captured.out


def test_console_script_is_installed():
    exe = shutil.which("causal-wm")
    command = [exe] if exe else [sys.executable, "-m", "causal_wm.cli"]
    done = subprocess.run([*command, "collect", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--per-regime" in done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["train-agent", "--help"], ["fit", "--help"], ["demo", "--help"]])
def test_help_imports_neither_torch_nor_stable_baselines3(argv):
    # the help of every command is built from light modules only (torch alone takes about a second)
    code = ("import sys\nfrom causal_wm.cli import main\ntry:\n    main(" + repr(argv) + ")\nexcept SystemExit:\n"
            "    pass\nheavy = sorted(m for m in ('torch', 'stable_baselines3', 'cv2') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout, done.stdout[-500:]
