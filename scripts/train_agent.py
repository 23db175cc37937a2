"""Train one stable-baselines3 agent (PPO, A2C or DQN) on one observation type of a causal scene
(pixels, learned causal latents, a plain autoencoder's code or the true latents); the same as
``causal-wm train-agent``. Settings and outputs: ``causal_wm.agents.training``.

    python scripts/train_agent.py --obs-type true --total-timesteps 50000
    python scripts/train_agent.py --obs-type causal --model-path model.pt --algo a2c
    python scripts/train_agent.py --quick        # 256 steps on the true latents, ./bench_out/train_agent/
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from causal_wm.agents.training import TrainConfig, check_config, train
from causal_wm.benchmarking import parse_config, quick_dir


@dataclass
class TrainAgentConfig(TrainConfig):
    """The settings of one training run (``TrainConfig``) and the script's smoke test."""

    quick: bool = False
    """smoke test in seconds: 256 env steps with 2 envs; writes under ./bench_out/train_agent/"""


QUICK = {"total_timesteps": 256, "n_envs": 2, "out": str(quick_dir("train_agent"))}


def parse_args(argv: list[str] | None = None) -> TrainAgentConfig:
    return check_config(parse_config(TrainAgentConfig, argv, description=__doc__, quick=QUICK, outputs=("out",)))


def main(argv: list[str] | None = None) -> dict:
    result = train(parse_args(argv))
    final = result["final_return"]
    print(f"{result['run_dir']}: {result['episodes']} episodes, final return "
          f"{'n/a' if final is None else f'{final:.2f}'}, {result['steps_per_s']:.0f} steps/s; "
          f"wrote {result['run_dir']}/curve.json", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
