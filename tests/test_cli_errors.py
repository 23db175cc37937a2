"""The causal-wm command line on bad input and failing disks: exit status 2 and one line
``causal-wm CMD: error: ...`` on stderr (no traceback), found before any work starts; nothing
half-written left under a final name; a bug still shows its traceback, with the stage that failed.

The work itself (training, evaluation, planning) is replaced here by stubs that fail the test when
they run too early, so these tests take seconds. Tests run as root, where ``chmod`` read-only
folders stay writable: the read-only case is tested with a monkeypatched ``os.access`` (what the
CLI asks), and the "folder cannot be created" case with an --out below a regular file.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest
import torch

import causal_wm
from causal_wm import cli
from causal_wm.cli import main
from causal_wm.data import Dataset
from causal_wm.persistence import save_state
from causal_wm.world_model import CausalWorldModel

SCENE = '{"num_balls": 2, "graph_seed": 0}'


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A real (tiny) collection: fit checks its arguments before it opens it."""
    path = tmp_path_factory.mktemp("cli_errors") / "balls.h5"
    causal_wm.collect("causal_wm/Balls-v0", 20, path, env_kwargs=json.loads(SCENE), progress=False).close()
    return path


@pytest.fixture
def no_training(monkeypatch):
    """CausalWorldModel.fit fails the test if it is reached."""
    def fit(cls, *args, **kwargs):
        raise AssertionError("the command trained although its arguments were bad")
    monkeypatch.setattr(CausalWorldModel, "fit", classmethod(fit))


class _FakeModel:
    """What fit returns when the training is stubbed out: saves a small state like a real model."""

    def save(self, path):
        return save_state({"weights": torch.zeros(10_000)}, path, format="causal_wm.world_model", version=1)

    def __repr__(self):
        return "FakeModel()"


def _fake_fit(monkeypatch, effect=None):
    def fit(cls, *args, **kwargs):
        if effect is not None:
            effect(kwargs)
        return _FakeModel()
    monkeypatch.setattr(CausalWorldModel, "fit", classmethod(fit))


def _one_error_line(capsys, command):
    """The single stderr line of a refused command (no traceback), returned for more checks."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"causal-wm {command}: error: "), err
    return lines[0]


def _argparse_error(capsys, command, option):
    """argparse's refusal: usage, then one error line naming the option."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"causal-wm {command}: error: argument {option}"), err
    return err


# --- 1. output paths checked before any work ------------------------------------------------------
def test_fit_refuses_an_out_that_is_a_folder(data, tmp_path, no_training, capsys):
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main(["fit", str(data), "--out", str(folder), "--preset", "debug", "--device", "cpu"]) == 2
    assert "is a folder" in _one_error_line(capsys, "fit")


def test_fit_refuses_an_out_whose_folder_cannot_be_created(data, tmp_path, no_training, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["fit", str(data), "--out", str(blocker / "sub" / "model.pt"), "--device", "cpu"]) == 2
    line = _one_error_line(capsys, "fit")
    assert "cannot create the folder" in line and str(blocker) in line


def test_fit_refuses_a_read_only_out_folder(data, tmp_path, no_training, monkeypatch, capsys):
    # root may write anywhere, so "read-only" is what os.access (the CLI's check) says
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != read_only and real_access(p, mode, **kw))
    assert main(["fit", str(data), "--out", str(read_only / "model.pt"), "--device", "cpu"]) == 2
    assert "not writable" in _one_error_line(capsys, "fit")
    # a folder still to be created inside it: its nearest existing ancestor decides
    assert main(["fit", str(data), "--out", str(read_only / "new" / "model.pt"), "--device", "cpu"]) == 2
    assert "not writable" in _one_error_line(capsys, "fit")
    assert not (read_only / "new").exists()


def test_fit_refuses_a_checkpoint_dir_that_is_a_file(data, tmp_path, no_training, capsys):
    blocker = tmp_path / "ckpt"
    blocker.write_text("")
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--checkpoint-dir", str(blocker)]) == 2
    assert "--checkpoint-dir" in _one_error_line(capsys, "fit")


def test_fit_creates_a_missing_out_folder(data, tmp_path, monkeypatch, capsys):
    _fake_fit(monkeypatch)
    out = tmp_path / "new" / "deeper" / "model.pt"
    assert main(["fit", str(data), "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck"), "--device", "cpu"]) == 0
    assert out.stat().st_size > 0 and not out.with_suffix(".pt.tmp").exists()


def test_evaluate_refuses_an_out_that_is_a_file(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"never read")
    existing = tmp_path / "eval"
    existing.write_text("a file")
    monkeypatch.setattr(cli, "_load_world_model", lambda *a: pytest.fail("loaded the model"))
    assert main(["evaluate", str(model), "--env-kwargs", SCENE, "--out", str(existing)]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys, "evaluate")


def test_plan_refuses_an_out_that_is_a_folder(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"never read")
    monkeypatch.setattr(cli, "_load_world_model", lambda *a: pytest.fail("loaded the model"))
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_error_line(capsys, "plan")


@pytest.mark.parametrize("command", ["demo", "train-agent"])
def test_output_folders_below_a_file_are_refused(command, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.chdir(tmp_path)
    assert main([command, "--out", str(blocker / "out")]) == 2
    assert "cannot create the folder" in _one_error_line(capsys, command)


# --- 2. bad devices, env keywords, representation files, full disks ---------------------------------
@pytest.mark.parametrize("argv", [
    ["fit", "data.h5", "--out", "m.pt"], ["evaluate", "m.pt", "--out", "e"], ["plan", "m.pt"], ["demo"],
    ["train-agent"],
])
def test_an_unknown_device_is_refused_before_any_work(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--device", "banana"]) == 2
    line = _one_error_line(capsys, argv[0])
    assert "--device 'banana'" in line
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused(capsys):
    assert main(["plan", "m.pt", "--device", "cuda"]) == 2
    assert "CUDA is not available" in _one_error_line(capsys, "plan")


@pytest.mark.parametrize("command", ["evaluate", "plan", "train-agent"])
def test_an_unknown_env_keyword_is_refused(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model.pt"
    model.write_bytes(b"never read")
    monkeypatch.setattr(cli, "_load_world_model", lambda *a: pytest.fail("loaded the model"))
    argv = {"evaluate": ["evaluate", str(model), "--out", "e"], "plan": ["plan", str(model)],
            "train-agent": ["train-agent"]}[command]
    assert main([*argv, "--env-kwargs", '{"bogus": 1}']) == 2
    line = _one_error_line(capsys, command)
    assert "--env-kwargs" in line and "'bogus'" in line and "num_balls" in line  # names what it does take


def test_a_missing_representation_is_refused(data, tmp_path, no_training, capsys):
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--representation",
                 str(tmp_path / "missing.pt")]) == 2
    assert "--representation: no file at" in _one_error_line(capsys, "fit")


@pytest.mark.parametrize("content", [b"", b"garbage, not a torch file", b"PK\x03\x04" + b"\x00" * 40])
def test_a_corrupt_representation_is_refused(content, data, tmp_path, no_training, capsys):
    bad = tmp_path / "repr.pt"
    bad.write_bytes(content)
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--representation", str(bad),
                 "--device", "cpu"]) == 2
    assert str(bad) in _one_error_line(capsys, "fit")


def test_a_representation_of_another_kind_is_refused(data, tmp_path, no_training, capsys):
    other = tmp_path / "world_model.pt"
    _FakeModel().save(other)  # a world model file where an image CRL model is expected
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--representation", str(other),
                 "--device", "cpu"]) == 2
    assert "image CRL model" in _one_error_line(capsys, "fit")


def test_a_corrupt_model_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00" * 64)
    assert main(["plan", str(bad), "--env-kwargs", SCENE, "--device", "cpu"]) == 2
    assert "not a readable model file" in _one_error_line(capsys, "plan")


def _disk_full_after_some_bytes(monkeypatch):
    """torch.save writes part of the file, then the disk is full."""
    def save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_at_save_time_leaves_no_file(data, tmp_path, monkeypatch, capsys):
    _fake_fit(monkeypatch)
    _disk_full_after_some_bytes(monkeypatch)
    out = tmp_path / "model.pt"
    assert main(["fit", str(data), "--out", str(out), "--device", "cpu"]) == 2
    line = _one_error_line(capsys, "fit")
    assert f"cannot write {out}" in line and "No space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither model.pt nor model.pt.tmp


def test_a_full_disk_keeps_the_previous_model(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the previous model")
    _fake_fit(monkeypatch)
    _disk_full_after_some_bytes(monkeypatch)
    assert main(["fit", str(data), "--out", str(out), "--device", "cpu"]) == 2
    _one_error_line(capsys, "fit")
    assert out.read_bytes() == b"the previous model"
    assert not out.with_suffix(".pt.tmp").exists()


def test_a_full_disk_writing_plan_results(tmp_path, monkeypatch, capsys):
    import causal_wm.agents.evaluation as evaluation

    model = tmp_path / "model.pt"
    model.write_bytes(b"never read")
    monkeypatch.setattr(cli, "_load_world_model", lambda *a: object())
    monkeypatch.setattr(evaluation, "compare_planners", lambda *a, **k: {"planners": {}, "settings": {}})
    real_write_text = Path.write_text

    def write_text(self, text, *args, **kwargs):
        real_write_text(self, text[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "results" / "plan.json"
    assert main(["plan", str(model), "--env-kwargs", SCENE, "--out", str(out)]) == 2
    line = _one_error_line(capsys, "plan")
    assert f"cannot write {out}" in line and "No space left" in line
    assert list(out.parent.iterdir()) == []  # neither plan.json nor plan.json.tmp


def test_save_atomic_removes_its_temporary_file(tmp_path, monkeypatch):
    from causal_wm._torch import save_atomic

    _disk_full_after_some_bytes(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        save_atomic({"x": 1}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


# --- 3. the library's Python argument names become the CLI's flags ----------------------------------
def test_a_foreign_checkpoint_names_the_checkpoint_dir_flag(data, tmp_path, monkeypatch, capsys):
    from causal_wm.crl.images.pipeline import _load_checkpoint

    checkpoint = tmp_path / "ck" / "stage.pt"
    checkpoint.parent.mkdir()
    torch.save({"fingerprint": "other data"}, checkpoint)
    # the real refusal of the image pipeline (its wording names the Python argument checkpoint_dir)
    _fake_fit(monkeypatch, lambda kwargs: _load_checkpoint(checkpoint, "this data"))
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--checkpoint-dir", str(checkpoint.parent)]) == 2
    line = _one_error_line(capsys, "fit")
    assert "was written for other data or settings" in line
    assert "--checkpoint-dir" in line and "checkpoint_dir" not in line.replace("--checkpoint-dir", "")


def test_the_demo_names_its_out_flag_when_its_collection_differs(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    # a collection made with other settings where the demo keeps its own (the collector's real refusal)
    causal_wm.collect("causal_wm/Balls-v0", None, out / "balls.h5", policy="balanced", per_regime=2,
                      env_kwargs={"num_balls": 3, "graph_seed": 0, "do_values": ()}, progress=False).close()
    assert main(["demo", "--out", str(out), "--preset", "debug", "--set", "per_regime=3", "--no-progress",
                 "--device", "cpu"]) == 2
    line = _one_error_line(capsys, "demo")
    assert "cannot resume" in line and "balanced:2" in line
    assert "resume=False" not in line and "--out" in line


def test_fit_on_a_damaged_collection_names_the_collect_flag(data, tmp_path, no_training, capsys):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # e.g. a copy cut short by a full disk
    assert main(["fit", str(damaged), "--out", str(tmp_path / "m.pt")]) == 2
    line = _one_error_line(capsys, "fit")
    assert str(damaged) in line and "resume=False" not in line
    with pytest.raises(ValueError) as library:  # the library's own advice names the Python argument
        Dataset(damaged)
    if "resume=False" in str(library.value):
        assert "causal-wm collect --no-resume" in line


@pytest.mark.parametrize("command, text, expected", [
    ("fit", "checkpoint c.pt was written for other data or settings; use another checkpoint_dir or delete it",
     "use another --checkpoint-dir or delete it"),
    ("demo", "cannot resume x.h5: it was collected with seed=1, now seed=2; pass resume=False to start over "
             "(replacing it) or choose another path", "now seed=2; delete it or use another --out"),
    ("demo", "checkpoint c.pt was written for other data or settings; use another checkpoint_dir or delete it",
     "delete it or use another --out"),
    ("plan", "pass resume=False to overwrite it", "pass causal-wm collect --no-resume to overwrite it"),
    ("fit", "damaged. Start over with resume=False (causal-wm collect --no-resume), or repair it",
     "damaged. Start over with causal-wm collect --no-resume, or repair it"),
    ("demo", "damaged. Start over with resume=False (causal-wm collect --no-resume), or repair it",
     "damaged. delete it to start over, or repair it"),
    ("collect", "pass resume=False to overwrite it", "pass resume=False to overwrite it"),  # collect's own
])
def test_library_wording_is_translated(command, text, expected):
    assert cli._cli_wording(command, text).endswith(expected)


# --- 4. numeric options checked by argparse -------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--tolerance", "-1"), ("--tolerance", "0"), ("--tolerance", "nan"), ("--tolerance", "inf"),
    ("--tolerance", "wide"), ("--steps", "0"), ("--horizon", "0"), ("--samples", "0"), ("--samples", "-3"),
    ("--seed", "-1"),
])
def test_plan_numbers_are_checked_at_parse_time(option, value, capsys):
    assert main(["plan", "m.pt", option, value]) == 2
    err = _argparse_error(capsys, "plan", option)
    assert "no model file" not in err  # refused before the command ran


@pytest.mark.parametrize("option", ["--frames", "--samples"])
def test_evaluate_numbers_are_checked_at_parse_time(option, capsys):
    assert main(["evaluate", "m.pt", "--out", "e", option, "0"]) == 2
    _argparse_error(capsys, "evaluate", option)


def test_positive_float_accepts_positive_numbers():
    assert cli._positive_float("0.25") == 0.25 and cli._positive_float("1e3") == 1000.0
    assert math.isfinite(cli._positive_float("3"))


# --- 5. the remaining failure types at the CLI boundary ---------------------------------------------
@pytest.mark.parametrize("error, words", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "frames/missing.npy"),
     ["frames/missing.npy", "No such file"]),
    (FileNotFoundError("no file at x.pt (expected an image CRL model)"), ["no file at x.pt"]),
    (PermissionError(errno.EACCES, "Permission denied", "/somewhere/ck.pt"), ["/somewhere/ck.pt", "Permission denied",
                                                                            "while fitting the world model"]),
    (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device"]),
    (FloatingPointError("training loss became nan (diverged); the model was not written"), ["diverged"]),
])
def test_known_failures_are_one_line(error, words, data, tmp_path, monkeypatch, capsys):
    def effect(kwargs):
        raise error
    _fake_fit(monkeypatch, effect)
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt")]) == 2
    line = _one_error_line(capsys, "fit")
    for word in words:
        assert word in line


def test_an_interrupted_fit_names_its_checkpoints(data, tmp_path, monkeypatch, capsys):
    def effect(kwargs):
        raise KeyboardInterrupt
    _fake_fit(monkeypatch, effect)
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and str(tmp_path / "m_checkpoints") in err and "Traceback" not in err
    assert f"interrupted while fitting the world model on {data}" in err


def test_an_interrupted_demo_names_its_stage(tmp_path, monkeypatch, capsys):
    import causal_wm.demo

    def fake_demo(out, **kwargs):
        kwargs["on_stage"]("learning the causal representation from the images")
        raise KeyboardInterrupt

    monkeypatch.setattr(causal_wm.demo, "run_demo", fake_demo)
    assert main(["demo", "--out", str(tmp_path / "d"), "--preset", "debug"]) == 130
    err = capsys.readouterr().err
    assert "interrupted while learning the causal representation from the images" in err
    assert str(tmp_path / "d") in err and "Traceback" not in err


def test_an_unexpected_error_keeps_its_traceback_and_names_the_stage(data, tmp_path, monkeypatch):
    def effect(kwargs):
        raise RuntimeError("a bug")
    _fake_fit(monkeypatch, effect)
    with pytest.raises(RuntimeError, match="a bug") as info:
        main(["fit", str(data), "--out", str(tmp_path / "m.pt")])
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert f"causal-wm fit: failed while fitting the world model on {data}" in notes
