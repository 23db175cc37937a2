import json

import pytest

from causal_wm.scm import Intervention


def test_constructors_and_node_params():
    hard = Intervention.hard(2, shift=1.0, std=0.7)
    assert hard.targets == (2,) and hard.kind == "hard"
    assert hard.node_params(2, observational_std=3.0) == (0.0, 1.0, 0.7)
    scaled = Intervention.hard(1, scale=2.0)
    assert scaled.node_params(1, observational_std=0.5) == (0.0, 0.0, 1.0)
    soft = Intervention.soft(0)
    assert soft.node_params(0, observational_std=1.0) == (0.5, 0.0, 1.0)
    do = Intervention.do(3, 1.5)
    assert do.node_params(3, observational_std=9.0) == (0.0, 1.5, 0.05)


def test_multi_node_parameters_follow_sorted_targets():
    iv = Intervention.hard((3, 1), shift=(1.0, -1.0))
    assert iv.targets == (1, 3)
    assert iv.node_params(1, 1.0)[1] == -1.0 and iv.node_params(3, 1.0)[1] == 1.0


def test_hashable_and_json_round_trip():
    ivs = [Intervention.hard((0, 2), shift=(0.5, -1), scale=2.0), Intervention.soft(1, parent_scale=0.25),
           Intervention.do(0, 2.0, std=0.1, name="push")]
    for iv in ivs:
        again = Intervention.from_dict(json.loads(json.dumps(iv.to_dict())))
        assert again == iv and hash(again) == hash(iv)
        assert iv.label()
    assert len(set(ivs + ivs)) == 3


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"targets": ()}, "at least one target"),
        ({"targets": (1, 1)}, "distinct"),
        ({"targets": (0,), "kind": "weird"}, "unknown intervention kind"),
        ({"targets": (0,), "kind": "do"}, "needs a value"),
        ({"targets": (0,), "scale": -1.0}, "positive"),
        ({"targets": (0, 1), "shift": (1.0,)}, "1 entries for 2 targets"),
        ({"targets": (0,), "shift": float("nan")}, "finite"),
        ({"targets": (0,), "kind": "hard", "parent_scale": 0.5}, "soft interventions only"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Intervention(**kwargs)


def test_numpy_integer_targets():
    import numpy as np

    assert Intervention.hard(np.int64(2)).targets == (2,)
    assert Intervention(np.int64(1)).targets == (1,)
