"""Chemistry-v0 (interaction, mediator, unreachable-by-one-action goal), distractors and mechanism shifts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the scenes)
from causal_wm.agents import OneStepPlanner
from causal_wm.envs.chemistry import NODE_NAMES, ChemistryRenderer, chemistry_scm, ramp_color
from causal_wm.scm import Intervention, LinearMechanism, ScaledMechanism


def test_chemistry_scm_is_standardised_with_exact_gradients():
    scm = chemistry_scm()
    z = scm.sample(100_000, seed=0)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(z.var(axis=0), 1.0, atol=0.03)
    zz = scm.sample(50, seed=1)
    for mech in scm.mechanisms:
        if mech is None:
            continue
        g = mech.grad(zz)
        for col, p in enumerate(mech.parents):
            d = np.zeros_like(zz)
            d[:, p] = 1e-6
            np.testing.assert_allclose((mech(zz + d) - mech(zz - d)) / 2e-6, g[:, col], atol=1e-5)


def test_interaction_and_mediator():
    scm = chemistry_scm()
    a, b, c, d, e, _goal = range(6)
    single = scm.sample(20_000, Intervention.do(a, 1.5, std=0.05), seed=0)
    joint = scm.sample(20_000, Intervention.do((a, b), (1.5, 1.5), std=0.05), seed=0)
    # c's response to a depends on b: alone it averages to zero, with b fixed it is the product
    assert abs(single[:, c].mean()) < 0.05
    assert joint[:, c].mean() == pytest.approx(np.sqrt(1 - 0.3**2) * 2.25, abs=0.05)
    # the chain d -> e -> goal: do(e) cuts d's effect on e
    cut = scm.sample(20_000, Intervention.do((d, e), (1.5, -1.5), std=0.05), seed=0)
    assert cut[:, e].mean() == pytest.approx(-1.5, abs=0.01)
    through = scm.sample(20_000, Intervention.do(d, 1.5, std=0.05), seed=0)
    assert through[:, e].mean() > 0.8


def test_goal_reached_by_joint_interventions_only():
    combos = [Intervention.do((2, 4), (1.5, 1.5), std=0.05, name="do(c, e)")]
    env = gym.make("causal_wm/Chemistry-v0", task="reach", multi_node=combos)
    scene = env.unwrapped
    assert scene.goal_node == NODE_NAMES.index("goal") and scene.goal_value == 2.0
    assert all(scene.goal_node not in iv.targets for iv in scene.interventions[1:])
    singles = [k for k, iv in enumerate(scene.interventions) if iv is None or len(iv.targets) == 1]
    joint = len(scene.interventions) - 1

    def success(actions):
        planner = OneStepPlanner.oracle(env, actions=actions, num_samples=256, seed=0)
        scene.reset(seed=3)
        hits = []
        for _ in range(100):
            _, _, _, _, info = scene.step(planner.act())
            hits.append(abs(info["z"][scene.goal_node] - 2.0) < 0.5)
        return np.mean(hits)

    assert success(singles) < 0.4
    assert success([joint]) > 0.8


def test_renderer_batch_equals_frame_and_ramp_is_monotone():
    r = ChemistryRenderer(32)
    z = chemistry_scm().sample(4, seed=0)
    frames = r(z)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    for i in range(4):
        np.testing.assert_array_equal(frames[i], r.frame(z[i]))
    lum = ramp_color(np.linspace(-4, 4, 50)) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum) > 0)
    with pytest.raises(ValueError, match="shape"):
        r(np.zeros((2, 5)))


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Chemistry-v0"])
def test_distractors_do_not_touch_latents_or_objects(env_id):
    plain = gym.make(env_id, image_size=32).unwrapped
    busy = gym.make(env_id, image_size=32, distractors=3).unwrapped
    o1, i1 = plain.reset(seed=4)
    o2, i2 = busy.reset(seed=4)
    differ = 0
    for t in range(20):
        np.testing.assert_array_equal(i1["z"], i2["z"])
        # distractors only paint background pixels of the plain frame
        background = np.all(o1 == np.asarray(plain.renderer.background, np.uint8), axis=-1)
        np.testing.assert_array_equal(o1[~background], o2[~background])
        differ += int(np.any(o1 != o2))
        o1, _, _, _, i1 = plain.step(t % plain.action_space.n)
        o2, _, _, _, i2 = busy.step(t % busy.action_space.n)
    assert differ > 10
    # same seed, same frames; the distractors move
    again = gym.make(env_id, image_size=32, distractors=3).unwrapped
    a, _ = again.reset(seed=4)
    b, _ = busy.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    p0, _ = busy.distractor_state
    busy.step(0)
    assert not np.allclose(busy.distractor_state[0], p0)


def test_distractor_shift_moves_appearance_and_motion():
    train = gym.make("causal_wm/Chemistry-v0", distractors=4).unwrapped
    shifted = gym.make("causal_wm/Chemistry-v0", distractors=4, distractor_shift=True).unwrapped
    steps = {}
    for name, env in (("train", train), ("shift", shifted)):
        env.reset(seed=0)
        _, colors = env.distractor_state
        saturation = [max(c) - min(c) for c in colors]
        assert (max(saturation) == 0) if name == "train" else (min(saturation) > 100)
        moves = []
        for _ in range(30):
            p0 = env.distractor_state[0]
            env.step(0)
            moves.append(np.abs(env.distractor_state[0] - p0).mean())
        steps[name] = np.mean(moves)
    assert steps["shift"] > 2 * steps["train"]


def test_mechanism_shift():
    env = gym.make("causal_wm/Chemistry-v0", mechanism_shift={"goal": "negate"}).unwrapped
    assert env.mechanism_shift == {5: -1.0}
    assert isinstance(env.scm.mechanisms[5], ScaledMechanism)
    iv = Intervention.do((2, 4), (1.5, 1.5), std=0.05)
    assert env.scm.sample(2000, iv, seed=0)[:, 5].mean() < -1.8
    assert env.scm_before_shift.sample(2000, iv, seed=0)[:, 5].mean() > 1.8
    balls = gym.make("causal_wm/Balls-v0", graph_seed=1, mechanism_shift={"3": 0.5}).unwrapped
    (j,) = balls.mechanism_shift
    assert isinstance(balls.scm.mechanisms[j], LinearMechanism) and balls.scm.is_linear
    np.testing.assert_allclose(balls.scm.mechanisms[j].weights, 0.5 * balls.scm_before_shift.mechanisms[j].weights)
    with pytest.raises(ValueError, match="root"):
        gym.make("causal_wm/Chemistry-v0", mechanism_shift={"a": -1})
    with pytest.raises(ValueError, match="not a node"):
        gym.make("causal_wm/Chemistry-v0", mechanism_shift={"nope": -1})
    with pytest.raises(ValueError, match="finite number"):
        gym.make("causal_wm/Chemistry-v0", mechanism_shift={"goal": "double"})
    with pytest.raises(ValueError, match="distractors"):
        gym.make("causal_wm/Chemistry-v0", distractors=-1)


def test_balls_weighted_graph_with_noise_stds():
    from causal_wm.envs.balls import balls_scm

    w = np.zeros((4, 4))
    w[0, 1], w[1, 3], w[0, 3], w[2, 3] = 1.0, 1.0, -0.9, 0.3
    scm = balls_scm(2, graph=w, noise_std=[1.0, 0.5, 1.0, 0.3])
    np.testing.assert_array_equal(scm.graph, (w != 0).astype(int))
    z = scm.sample(200_000, seed=0)
    np.testing.assert_allclose(z.var(axis=0), 1.0, atol=0.02)  # standardised
    # the weights keep their ratios after standardisation: the two paths from node 0 to node 3 nearly cancel
    assert abs(np.corrcoef(z[:, 0], z[:, 3])[0, 1]) < 0.2  # 0.154 here (0.1 = 1 - 0.9 before scaling)
    held = scm.sample(20_000, Intervention.do((0, 1), (-1.5, 1.5), std=0.05), seed=1)[:, 3]
    alone = scm.sample(20_000, Intervention.do(0, -1.5, std=0.05), seed=1)[:, 3]
    assert held.mean() > 2.5 and abs(alone.mean()) < 0.5
    with pytest.raises(ValueError, match="noise_std"):
        balls_scm(2, graph=w, noise_std=[1.0, 0.5])
    with pytest.raises(ValueError, match="weighted graph"):
        balls_scm(2, graph=(w != 0).astype(int), noise_std=[1.0] * 4)
    with pytest.raises(ValueError, match="finite"):
        balls_scm(2, graph=np.full((4, 4), np.nan))
