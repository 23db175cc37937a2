import gymnasium as gym
import numpy as np
import pytest

import causal_wm  # noqa: F401  (registers the envs)
from causal_wm.agents import OneStepPlanner, OracleSCMModel
from causal_wm.agents.planners import CEMPlanner, RandomPlanner, goal_image_reward


def _mean_reward(env, choose, steps=300, seed=0):
    _, info = env.reset(seed=seed)
    total = 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(choose(info))
        total += reward
        if terminated or truncated:
            _, info = env.reset()
    return total / steps


@pytest.mark.parametrize("persistence", [0.0, 0.9])
def test_oracle_planner_beats_random(persistence):
    env = gym.make("causal_wm/Balls-v0", task="reach", persistence=persistence, max_episode_steps=1000)
    planner = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    rng = np.random.default_rng(0)
    planned = _mean_reward(env, lambda info: planner.act(info["z"], info["regime"]))
    random = _mean_reward(env, lambda info: int(rng.integers(env.action_space.n)))
    assert planned > random + 0.3, (planned, random)


def test_persistence_is_used_when_the_world_carries_state():
    env = gym.make("causal_wm/Balls-v0", task="reach", persistence=0.9, max_episode_steps=1000)
    with_state = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    blind = OneStepPlanner.oracle(env, num_samples=128, seed=0)
    a = _mean_reward(env, lambda info: with_state.act(info["z"], info["regime"]), seed=1)
    b = _mean_reward(env, lambda info: blind.act(), seed=1)
    assert a > b


def test_oracle_prediction_matches_the_env_marginal():
    env = gym.make("causal_wm/Balls-v0")
    model = OracleSCMModel.from_env(env)
    noise = np.random.default_rng(0).standard_normal((20_000, model.n))
    iv = env.unwrapped.interventions[1]
    mean, cov = env.unwrapped.scm.moments(iv)
    z = model.predict(1, noise)
    np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.05)


def test_values_are_seeded_and_errors_are_clear():
    env = gym.make("causal_wm/Balls-v0", task="reach")
    v1 = OneStepPlanner.oracle(env, seed=3).action_values()
    v2 = OneStepPlanner.oracle(env, seed=3).action_values()
    np.testing.assert_array_equal(v1, v2)
    with pytest.raises(ValueError, match="no task"):
        OneStepPlanner.oracle(gym.make("causal_wm/Balls-v0"))
    with pytest.raises(ValueError, match="subset"):
        OneStepPlanner.oracle(env, actions=[999])
    with pytest.raises(ValueError, match="current regime"):
        OracleSCMModel.from_env(gym.make("causal_wm/Balls-v0", persistence=0.5)).predict(
            1, np.zeros((2, 6)), z_now=np.zeros(6))


# --- CEM, random and goal-image planning ----------------------------------------------------------

def _rewards(env, planner, steps=200, seed=0):
    """Per-step rewards ``(steps,)`` of ``planner`` on ``env`` (the env's noise depends on the seed only,
    so runs with the same seed are paired)."""
    _, info = env.reset(seed=seed)
    out = np.empty(steps)
    for t in range(steps):
        _, out[t], terminated, truncated, info = env.step(planner.act(info["z"], info["regime"]))
        if terminated or truncated:
            _, info = env.reset()
    return out


def _reach_env():
    return gym.make("causal_wm/Balls-v0", task="reach", persistence=0.9, max_episode_steps=1000)


def test_cem_oracle_beats_random_and_matches_the_one_step_planner():
    env = _reach_env()
    cem = _rewards(env, CEMPlanner.oracle(env, horizon=3, population=32, elites=4, iterations=3, num_samples=32))
    one_step = _rewards(env, OneStepPlanner.oracle(env, num_samples=32, seed=0))
    random = _rewards(env, RandomPlanner.from_env(env, seed=0))
    assert cem.mean() > random.mean() + 0.3, (cem.mean(), random.mean())
    # this world's future does not depend on the action, so one-step search is already optimal:
    # multi-step planning must not lose to it by more than the noise of the paired difference
    difference = cem - one_step
    assert difference.mean() > -3 * difference.std() / np.sqrt(len(difference)), difference.mean()


def test_horizon_one_cem_picks_the_one_step_action():
    env = _reach_env()
    _, info = env.reset(seed=4)
    states = []
    rng = np.random.default_rng(0)
    for _ in range(40):
        _, _, _, _, info = env.step(int(rng.integers(env.action_space.n)))
        states.append((info["z"], info["regime"]))
    # same seed and num_samples: both judge actions on the same imagined noise
    one_step = OneStepPlanner.oracle(env, num_samples=64, seed=5)
    reference = [one_step.act(z, r) for z, r in states]
    cem = CEMPlanner.oracle(env, horizon=1, population=64, elites=8, iterations=5, num_samples=64, seed=5,
                            polish=False)
    agree = np.mean([cem.act(z, r) == a for (z, r), a in zip(states, reference, strict=True)])
    assert agree >= 0.9, agree
    # the final coordinate-ascent pass looks at every action, so it always finds the one-step choice
    polished = CEMPlanner.oracle(env, horizon=1, population=8, elites=2, iterations=1, num_samples=64, seed=5)
    assert [polished.act(z, r) for z, r in states] == reference


def test_cem_plans_are_seeded_and_chain_the_model():
    env = _reach_env()
    _, info = env.reset(seed=0)
    a = CEMPlanner.oracle(env, population=16, elites=4, iterations=2, num_samples=8, seed=7)
    b = CEMPlanner.oracle(env, population=16, elites=4, iterations=2, num_samples=8, seed=7)
    for _ in range(5):
        plan_a, plan_b = a.plan(info["z"], info["regime"]), b.plan(info["z"], info["regime"])
        assert plan_a == plan_b and len(plan_a[0]) == 3
        _, _, _, _, info = env.step(plan_a[0][0])
    # the estimated return of the plan is the mean imagined return of its actions, chained through the model
    planner = CEMPlanner.oracle(env, horizon=2, population=8, elites=2, iterations=1, num_samples=16, seed=1,
                                warm_start=False)
    actions, value = planner.plan(info["z"], info["regime"])
    noise = np.random.default_rng(1).standard_normal((2, 16, 6))
    model, reward = planner.model, planner.reward_fn
    z1 = model.predict(actions[0], noise[0], info["z"], info["regime"])
    z2 = model.predict(actions[1], noise[1], z1, actions[0])
    assert value == pytest.approx(float(np.mean(reward(z1) + reward(z2))))


def test_oracle_predicts_row_by_row_from_a_batch_of_current_latents():
    env = gym.make("causal_wm/Balls-v0", persistence=0.8)
    model = OracleSCMModel.from_env(env)
    rng = np.random.default_rng(0)
    z_now, noise = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    batch = model.predict(2, noise, z_now, 1)
    rows = np.concatenate([model.predict(2, noise[i:i + 1], z_now[i], 1) for i in range(5)])
    np.testing.assert_allclose(batch, rows)
    with pytest.raises(ValueError, match="z_now"):
        model.predict(2, noise, z_now[:3], 1)
    with pytest.raises(ValueError, match="regime_now"):
        model.predict(2, noise, z_now, 99)


def test_cem_and_random_argument_errors():
    env = _reach_env()
    with pytest.raises(ValueError, match="horizon"):
        CEMPlanner.oracle(env, horizon=0)
    with pytest.raises(ValueError, match="elites"):
        CEMPlanner.oracle(env, population=4, elites=8)
    with pytest.raises(ValueError, match="discount"):
        CEMPlanner.oracle(env, discount=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        CEMPlanner.oracle(env, smoothing=1.0)
    with pytest.raises(ValueError, match="subset"):
        CEMPlanner.oracle(env, actions=[0, 0])
    with pytest.raises(ValueError, match="no task"):
        CEMPlanner.oracle(gym.make("causal_wm/Balls-v0"))
    with pytest.raises(ValueError, match="reward_fn must return"):
        CEMPlanner(OracleSCMModel.from_env(env), lambda z: z, iterations=1).act()
    with pytest.raises(ValueError, match="num_actions"):
        RandomPlanner(0)
    picks = [RandomPlanner(5, seed=1, actions=[1, 3]).act() for _ in range(3)]
    assert set(picks) <= {1, 3}
    r1, r2 = RandomPlanner(10, seed=2), RandomPlanner(10, seed=2)
    assert [r1.act() for _ in range(20)] == [r2.act() for _ in range(20)]


class _BallCentroidEncoder:
    """Encodes ball images by the pixel centroid (x, y) of each ball colour: a fixed, exact encoder."""

    def __init__(self, colors):
        self.colors = np.asarray(colors)

    def encode(self, images):
        out = []
        rows, cols = np.mgrid[: images.shape[1], : images.shape[2]]
        for image in images:
            z = []
            for color in self.colors:
                mask = np.all(image == color, axis=-1)
                z += [cols[mask].mean(), -rows[mask].mean()]
            out.append(z)
        return np.asarray(out)


def test_goal_image_reward_ranks_states_by_their_distance_to_the_goal():
    env = gym.make("causal_wm/Balls-v0")
    renderer = env.unwrapped.renderer
    encoder = _BallCentroidEncoder(renderer.colors)
    goal_z = np.array([-1.5, 1.5, 0.0, 0.0, 1.5, -1.5])  # three separate balls
    reward = goal_image_reward(encoder, renderer.frame(goal_z))
    offsets = np.array([0.0, 0.3, 0.8, 1.5])
    z = goal_z + offsets[:, None] * np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    values = reward(encoder.encode(renderer(z)))
    assert values[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(values) < 0), values
    # only the chosen latents count: moving ball 1 alone leaves a reward on ball 2's coordinates at 0
    ball_two = goal_image_reward(encoder, renderer.frame(goal_z)[None], nodes=[2, 3])
    moved = goal_z + offsets[:, None] * np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert np.allclose(ball_two(encoder.encode(renderer(moved))), 0.0)
    assert np.all(np.diff(reward(encoder.encode(renderer(moved)))) < 0)
    with pytest.raises(ValueError, match="one"):
        goal_image_reward(encoder, np.zeros((2, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="nodes"):
        goal_image_reward(encoder, renderer.frame(goal_z), nodes=[6])
