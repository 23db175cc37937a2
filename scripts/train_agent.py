"""Train one stable-baselines3 agent (PPO, A2C or DQN) on one observation type of a causal scene
(pixels, learned causal latents, a plain autoencoder's code or the true latents); the same as
``causal-wm train-agent``. Settings and outputs: ``causal_wm.agents.training``.

    python scripts/train_agent.py --obs-type true --total-timesteps 50000
    python scripts/train_agent.py --obs-type causal --model-path model.pt --algo a2c
"""

from __future__ import annotations

import argparse
import sys

from causal_wm.agents.training import (  # noqa: F401  (re-exported for scripts/bench_agents.py)
    PlainAutoencoder,
    TrainConfig,
    add_config_arguments,
    algo_settings,
    check_config,
    field_docs,
    train,
)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, TrainConfig)
    return check_config(TrainConfig(**vars(parser.parse_args(argv))))


def main(argv: list[str] | None = None) -> None:
    result = train(parse_args(argv))
    print(f"{result['run_dir']}: {result['episodes']} episodes, final return {result['final_return']:.2f}, "
          f"{result['steps_per_s']:.0f} steps/s", file=sys.stderr)


if __name__ == "__main__":
    main()
