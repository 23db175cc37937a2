"""Malformed input to every public entry point: each call either returns a valid (finite) result or
raises one of the documented exceptions (docs/errors.md) with a message; never a bare KeyError,
IndexError or EOFError, never NaN output. Inputs come from a fixed, seeded list, so the test is
deterministic."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import causal_wm  # noqa: F401  (registers the environments)
from causal_wm.cli import main
from causal_wm.crl.gscale import TrainingDivergedError, gscale_i
from causal_wm.crl.images import fit_image_crl
from causal_wm.crl.lscale import lscale_i
from causal_wm.crl.umni import umni_crl
from causal_wm.data import Dataset, collect
from causal_wm.world_model import CausalWorldModel
from tests.test_persistence import _built

torch.set_num_threads(1)

DOCUMENTED = (ValueError, TypeError, FileNotFoundError, FloatingPointError, TrainingDivergedError)


def _arrays() -> list[Any]:
    """Arrays of wrong shapes, dtypes and values, and things that are not arrays."""
    rng = np.random.default_rng(0)
    good = rng.standard_normal((40, 4))
    out: list[Any] = [None, "text", 3, [], [[]], np.zeros(0), np.zeros((0, 4)), np.zeros((5,)), np.zeros((3, 4, 2)),
                      good.astype(np.float32), good.astype(np.int64), good > 0, good.astype(complex),
                      np.array([["a"] * 4] * 5), np.array([[object()] * 4] * 5, dtype=object)]
    for value in (np.nan, np.inf, -np.inf, 1e308):
        bad = good.copy()
        bad[3, 1] = value
        out.append(bad)
    return out


def _envs() -> list[Any]:
    """Lists of environments for the linear learners."""
    rng = np.random.default_rng(1)
    good = [rng.standard_normal((60, 4)) for _ in range(4)]
    out: list[Any] = [None, "envs", np.zeros((4, 60, 4)), [], [good[0]], [*good[:2], np.zeros((60, 3))]]
    for a in _arrays():
        out.append([good[0], a, good[2], good[3]])
    out.append([g[:1] for g in good])  # one sample per environment
    return out


def _call(fn: Callable[[], Any]) -> Any:
    try:
        result = fn()
    except DOCUMENTED as err:
        assert str(err), f"{type(err).__name__} without a message"
        return err
    except Exception as err:  # pragma: no cover - this is the failure the test looks for
        pytest.fail(f"undocumented {type(err).__name__}: {err}")
    return result


def _assert_finite(value: Any) -> None:
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        assert np.all(np.isfinite(value)), "NaN or infinite output"


@pytest.mark.parametrize("learner", ["lscale_i", "umni_crl"])
def test_linear_learners(learner):
    fn = {"lscale_i": lscale_i, "umni_crl": lambda e: umni_crl(e, calibration_splits=0)}[learner]
    for envs in _envs():
        out = _call(lambda envs=envs: fn(envs))
        if not isinstance(out, BaseException):
            _assert_finite(out.encoder)


def test_gscale_i():
    for envs in _envs()[:12]:
        _call(lambda envs=envs: gscale_i(envs, preset="debug", device="cpu", epochs=1, restarts=1, pair_epochs=1,
                                         graph_epochs=1))


def test_fit_image_crl():
    frames = {0: np.zeros((30, 16, 16, 3), np.uint8), 1: np.zeros((30, 16, 16, 3), np.uint8)}
    for bad in [None, "x", [], {0: np.zeros((0, 16, 16, 3), np.uint8)}, {0: np.zeros((30, 16, 16), np.uint8)},
                {0: np.zeros((30, 16, 16, 3), np.float32)}, {1: frames[1]}, {0: frames[0], 1: np.zeros((30, 8, 8, 3),
                                                                                                np.uint8)},
                {0: np.zeros((30, 16, 12, 3), np.uint8)}, frames]:
        _call(lambda bad=bad: fit_image_crl(bad, preset="debug", progress=False, device="cpu"))
    for pairs in ("nope", [(1,)], [(1, 1)], [(1, 5)], 3):
        _call(lambda pairs=pairs: fit_image_crl(frames, pairs=pairs, preset="debug", progress=False, device="cpu"))


def test_world_model_entry_points(tmp_path):
    result, _frames = _built("world_model")
    for x, r in itertools.product(_arrays(), [None, np.zeros(40, int), np.arange(40) % 4, np.full(40, 9), "r"]):
        _call(lambda x=x, r=r: CausalWorldModel.fit_arrays(x, r, preset="debug"))
    for x in _arrays():
        out = _call(lambda x=x: result.encode(x))
        _assert_finite(out)
        out = _call(lambda x=x: result.decode(x))
        _assert_finite(out)
    for num, iv in itertools.product([0, -1, 2.5, "3", 5], [None, 1, 99, -1, "do", {0: np.nan}, {9: 1.0}, {0: 1.0},
                                                             {0: (1.0, np.inf)}]):
        out = _call(lambda num=num, iv=iv: result.sample(num, iv, seed=0))
        _assert_finite(out)
    for content in (b"", b"\x80\x02}q\x00.", b"PK\x03\x04" + b"\x00" * 50):
        path = tmp_path / "bad.pt"
        path.write_bytes(content)
        _call(lambda path=path: CausalWorldModel.load(path))
    _call(lambda: CausalWorldModel.load(tmp_path / "missing.pt"))
    for dataset in [None, 3, "missing.h5", tmp_path]:
        _call(lambda dataset=dataset: CausalWorldModel.fit(dataset, preset="debug", progress=False))
    image, image_frames = _built("image_crl")
    for x in [*_arrays(), image_frames[:, :, :, :2], image_frames.astype(np.float64)]:
        _assert_finite(_call(lambda x=x: image.encode(x)))


def test_collect_and_dataset(tmp_path):
    for args, kwargs in [
        (("causal_wm/Balls-v0", 0), {}), (("causal_wm/Balls-v0", -5), {}), (("causal_wm/Balls-v0", 2.5), {}),
        (("causal_wm/NoSuchEnv-v0", 10), {}), ((None, 10), {}),
        (("causal_wm/Balls-v0", 10), {"policy": "nonsense"}), (("causal_wm/Balls-v0", 10), {"policy": 2.0}),
        (("causal_wm/Balls-v0", None), {"policy": "balanced"}),
        (("causal_wm/Balls-v0", 10), {"env_kwargs": {"bogus": 1}}), (("causal_wm/Balls-v0", 10), {"seed": -1}),
        (("causal_wm/Balls-v0", 10), {"num_envs": 0}),
    ]:
        _call(lambda args=args, kwargs=kwargs: collect(args[0], args[1], tmp_path / "c.h5", progress=False,
                                                       resume=False, **kwargs))
    for content in (b"", b"not hdf5 at all", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100):
        path = tmp_path / "bad.h5"
        path.write_bytes(content)
        _call(lambda path=path: Dataset(path))
    _call(lambda: Dataset(tmp_path / "missing.h5"))


def test_cli_subcommands_exit_cleanly(tmp_path, capsys):
    argvs = [[], ["nope"], ["collect"], ["collect", "causal_wm/NoSuchEnv-v0", "--steps", "5", "--out", "x.h5"],
             ["collect", "causal_wm/Balls-v0", "--steps", "-3", "--out", "x.h5"],
             ["fit", "missing.h5", "--out", "m.pt"], ["export", "missing.h5", "--out", str(tmp_path / "x")],
             ["export", "x.h5", "--out", str(tmp_path / "x"), "--val-fraction", "2"],
             ["evaluate", "missing.pt", "--out", str(tmp_path / "e")], ["plan", "missing.pt"],
             ["train-agent", "--obs-type", "nope"], ["bench", "nope"], ["demo", "--preset", "nope"],
             ["fit", "x.h5", "--out", "m.pt", "--set", "=1"]]
    for argv in argvs:
        code = _call(lambda argv=argv: main(argv))
        assert code in (0, 2), (argv, code)
        err = capsys.readouterr().err
        assert "Traceback" not in err, (argv, err)


def test_the_error_documentation_lists_every_exception():
    text = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for name in ("ValueError", "ModelFileError", "FileNotFoundError", "FloatingPointError", "TrainingDivergedError",
                 "TypeError", "FrameMismatchWarning", "UnusedRowsWarning", "UnusedFramesWarning", "KeyboardInterrupt"):
        assert name in text, name
