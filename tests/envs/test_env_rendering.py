"""Batch renderers against the env frames, ball geometry and the truncated (boxed) mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.envs import BallsRenderer, render_balls


def _collect(env_id: str, steps: int = 40, **kwargs) -> tuple[np.ndarray, np.ndarray, gym.Env]:
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=0)
    frames, zs = [obs], [info["z"]]
    actions = np.random.default_rng(0).integers(env.action_space.n, size=steps)
    for a in actions:
        obs, _, _, _, info = env.step(int(a))
        frames.append(obs)
        zs.append(info["z"])
    return np.stack(frames), np.stack(zs), env


@pytest.mark.parametrize("env_id", ["causal_wm/Balls-v0", "causal_wm/Shadow-v0"])
def test_batch_renderer_equals_env_frames(env_id):
    frames, z, env = _collect(env_id)
    renderer = env.unwrapped.renderer
    np.testing.assert_array_equal(renderer(z), frames)
    np.testing.assert_array_equal(renderer.frame(z[-1]), frames[-1])
    assert len({f.tobytes() for f in frames}) == len(frames)


def test_render_returns_current_frame():
    env = gym.make("causal_wm/Balls-v0", render_mode="rgb_array")
    env.reset(seed=0)
    obs = env.step(3)[0]
    np.testing.assert_array_equal(env.render(), obs)


def test_render_balls_function_matches_env():
    frames, z, _ = _collect("causal_wm/Balls-v0", steps=5)
    np.testing.assert_array_equal(render_balls(z), frames)


def test_ball_pixels_sit_at_their_positions():
    renderer = BallsRenderer(num_balls=2, colors=[(255, 0, 0), (0, 0, 255)], background=(0, 0, 0))
    z = np.random.default_rng(0).normal(size=(30, 4)) * 2.0
    frames = renderer(z).astype(np.float64)
    pos = renderer.positions(z)
    rows, cols = np.mgrid[0:64, 0:64] + 0.5  # pixel centres in continuous coordinates
    # balls apart from each other: no occlusion, so each colour's weighted centroid is its centre
    ok = np.linalg.norm(pos[:, 0] - pos[:, 1], axis=1) > 2 * renderer.ball_radius + 2
    for b, channel in ((0, 0), (1, 2)):
        w = frames[..., channel]
        cx = (w * cols).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
        cy = 64 - (w * rows).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
        assert ok.sum() >= 20
        np.testing.assert_allclose(cx[ok], pos[ok, b, 0], atol=0.1)
        np.testing.assert_allclose(cy[ok], pos[ok, b, 1], atol=0.1)
    # squash keeps even extreme latents in view
    far = renderer.positions(np.array([[-50.0, 50.0, 1e3, -1e3]]))
    assert far.min() >= renderer.margin - 1e-9 and far.max() <= 64 - renderer.margin + 1e-9


def test_truncate_mode_keeps_latents_in_the_box():
    frames, z, env = _collect("causal_wm/Balls-v0", steps=400, keep_in_view="truncate", box=1.5)
    low, high = env.unwrapped.scm.box
    np.testing.assert_array_equal(low, -1.5)
    assert np.all((z >= low) & (z <= high))
    renderer = env.unwrapped.renderer
    assert renderer.box is not None
    pos = renderer.positions(z)
    margin = renderer.margin
    np.testing.assert_allclose(pos[..., 0], margin + (64 - 2 * margin) * (z[:, 0::2] + 1.5) / 3.0)
    np.testing.assert_array_equal(renderer(z), frames)


def test_renderer_input_checks():
    with pytest.raises(ValueError, match="shape"):
        BallsRenderer(3)(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="colour"):
        BallsRenderer(2, colors=[(1, 2, 3)])
    with pytest.raises(ValueError, match="box"):
        BallsRenderer(2, keep_in_view="truncate")


def test_renderers_write_into_a_given_buffer():
    for env_id in ("causal_wm/Balls-v0", "causal_wm/Shadow-v0"):
        _, z, env = _collect(env_id, steps=6)
        renderer = env.unwrapped.renderer
        buffer = np.zeros((len(z), 64, 64, 3), dtype=np.uint8)
        assert renderer(z, out=buffer) is buffer
        np.testing.assert_array_equal(buffer, renderer(z))
        with pytest.raises(ValueError, match="out"):
            renderer(z, out=np.zeros((len(z), 64, 64, 3), dtype=np.float32))
