"""One layered preset system: config dataclasses, presets as named overrides, nested configs, dotted
``--set`` overrides, and the resolved config written next to every result."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from causal_wm.cli import main
from causal_wm.config import (
    add_config_arguments,
    apply_overrides,
    config_dict,
    config_from_args,
    field_docs,
    parse_assignments,
    resolve_config,
)
from causal_wm.crl.gscale import GScaleConfig
from causal_wm.crl.gscale import make_config as gscale_config
from causal_wm.crl.images import PRESETS as IMAGE_PRESETS
from causal_wm.crl.images import ImageCRLConfig
from causal_wm.crl.images import make_config as image_config
from causal_wm.demo import DEMO_PRESETS, make_demo_config
from causal_wm.world_model.config import PRESETS, WorldModelConfig, make_config, preset_name


@dataclass
class Inner:
    """A nested config."""

    width: int = 8
    """layer width"""
    rate: float = 0.5
    """a rate"""


@dataclass
class Outer:
    """A config containing another."""

    inner: Inner = field(default_factory=Inner)
    """the inner settings"""
    name: str | None = None
    """a name"""
    flag: bool = False
    """a switch"""


def test_parse_assignments_reads_json_values_and_plain_strings():
    assert parse_assignments(["a.b=3", "c=0.5", "d=true", "e=null", "f=pairs", "g=[1, 2]", "h="]) == {
        "a.b": 3, "c": 0.5, "d": True, "e": None, "f": "pairs", "g": [1, 2], "h": ""}
    for bad in ("novalue", "=3"):
        with pytest.raises(ValueError, match="key=value"):
            parse_assignments([bad])


def test_apply_overrides_nested_dotted_and_coerced():
    base = Outer()
    out = apply_overrides(base, {"inner.width": "16", "inner": {"rate": 1}, "name": "x", "flag": "true"})
    assert out == Outer(Inner(16, 1.0), "x", True)
    assert isinstance(out.inner.rate, float)
    assert base == Outer()  # the original is left alone
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['bogus'\] of Inner; known: \['rate', 'width'\]"):
        apply_overrides(base, {"inner.bogus": 1})
    with pytest.raises(ValueError, match="group of settings"):
        apply_overrides(base, {"inner": 3})
    with pytest.raises(ValueError, match="is a value, not a group"):
        apply_overrides(base, {"name.x": 3})


def test_presets_are_named_overrides_of_the_defaults():
    presets = {"small": {"inner": {"width": 2}}, "named": {"name": "n"}}
    assert resolve_config(Outer, presets, "small") == Outer(Inner(2, 0.5))
    assert resolve_config(Outer, presets, "small", {"inner.rate": 0.1}) == Outer(Inner(2, 0.1))
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of \\['named', 'small'\\]"):
        resolve_config(Outer, presets, "huge")


def test_world_model_config_contains_the_image_config_of_the_same_preset():
    for name in ("debug", "cpu", "full"):
        config = make_config(name)
        assert isinstance(config.crl, ImageCRLConfig)
        assert config.crl == image_config(name)  # one definition of every preset, not four
    assert preset_name("default", "cuda") == "full" and preset_name("default", "cpu") == "cpu"
    assert make_config("cpu", {"crl.max_per_regime": 20_000}).crl.max_per_regime == 20_000
    with pytest.raises(ValueError, match="mechanism_steps must be a positive int"):
        make_config("cpu", {"mechanism_steps": 0})
    with pytest.raises(ValueError, match="route must be one of"):
        make_config("cpu", {"crl.route": "magic"})
    # the learners' own make_config read the same presets
    assert gscale_config("debug", epochs=5) == apply_overrides(GScaleConfig(), {**dict(epochs=5), **{
        k: v for k, v in __import__("causal_wm.crl.gscale", fromlist=["PRESETS"]).PRESETS["debug"].items()
        if k != "epochs"}})


def test_demo_presets_layer_on_the_world_model_presets():
    cpu = make_demo_config("cpu")
    wm = make_config("cpu")
    changed = {f.name for f in dataclasses.fields(ImageCRLConfig) if getattr(cpu.world_model.crl, f.name)
               != getattr(wm.crl, f.name)}
    # the demo's cpu preset is the fitter's cpu preset with exactly these four shortcuts
    assert changed == {"ae_max_per_regime", "ae_epochs", "readout_members", "e2e_epochs"}
    assert cpu.world_model.mechanism_steps == wm.mechanism_steps
    assert make_demo_config("debug").world_model == make_config("debug")
    assert make_demo_config("cpu", {"per_regime": 10, "world_model.crl.code_dim": 4}).world_model.crl.code_dim == 4
    assert set(DEMO_PRESETS) == set(PRESETS)
    assert IMAGE_PRESETS["cpu"]["ae_epochs"] == 12  # the shared preset dicts were not mutated by the layering


def test_config_arguments_come_from_field_docstrings():
    assert field_docs(WorldModelConfig)["mechanism_hidden"] == "width of a mechanism MLP"
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Outer)
    help_text = parser.format_help()
    assert "--inner" not in help_text  # nested configs are set with --set
    assert "a name" in help_text and "--flag" in help_text and "--no-flag" in help_text
    args = parser.parse_args(["--name", "x", "--flag"])
    assert config_from_args(Outer, args) == Outer(name="x", flag=True)


def test_resolved_config_is_in_the_world_model_diagnostics():
    from causal_wm.scm import Intervention, lscale_problem
    from causal_wm.world_model import CausalWorldModel

    p = lscale_problem(2, 4, 800, seed=1)
    menu = [None, *(Intervention.hard(t[0], shift=1.0, std=0.7) for t in p.targets)]
    x = np.concatenate(p.observations)
    regimes = np.repeat(np.arange(3), [len(o) for o in p.observations])
    model = CausalWorldModel.fit_arrays(x, regimes, menu=menu, preset="debug", overrides={"mechanism_hidden": 8})
    assert model.diagnostics["config"] == config_dict(make_config("debug", {"mechanism_hidden": 8}))
    assert model.diagnostics["preset"] == "debug"
    with pytest.raises(ValueError, match="unknown setting"):
        CausalWorldModel.fit_arrays(x, regimes, menu=menu, overrides={"crl.nope": 1})


def test_cli_fit_rejects_bad_settings_before_any_work(tmp_path, capsys):
    import causal_wm
    from causal_wm.data import collect

    data = tmp_path / "d.h5"
    collect("causal_wm/Balls-v0", None, data, policy="balanced", per_regime=20,
            env_kwargs={"num_balls": 1, "image_size": 16}, progress=False)
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--preset", "debug", "--set", "crl.bogus=1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting(s) ['bogus'] of ImageCRLConfig" in err and "Traceback" not in err
    assert not (tmp_path / "m_checkpoints").exists()  # refused before the learner started
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--set", "oops"]) == 2
    assert "--set: a setting must look like key=value" in capsys.readouterr().err
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--pairs", "[[1]]"]) == 2
    assert "--pairs must be 'find' or a JSON list" in capsys.readouterr().err
    # --pairs reaches the learner: a regime the data lacks is refused before training
    assert main(["fit", str(data), "--out", str(tmp_path / "m.pt"), "--preset", "debug", "--pairs",
                 "[[1, 2], [3, 99]]", "--no-progress"]) == 2
    assert "regimes [99] of the pairs have no frames" in capsys.readouterr().err
    assert causal_wm is not None


def test_help_states_each_default_once():
    @dataclass
    class Settings:
        folder: str = ""
        """where files go (default: a temporary folder)"""
        steps: int = 10
        """env steps"""
        pairs: list = field(default_factory=list)
        """pairs of regimes (default: from the menu)"""

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Settings)
    text = " ".join(parser.format_help().split())
    assert "where files go (default: a temporary folder)" in text and "folder) (default" not in text
    assert "env steps (default: 10)" in text
    assert "pairs of regimes (default: from the menu) (JSON)" in text
