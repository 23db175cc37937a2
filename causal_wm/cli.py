"""The ``causal-wm`` command.

    causal-wm collect causal_wm/Balls-v0 --steps 100000 --out balls.h5 --num-envs 2 --vectorization async
    causal-wm collect causal_wm/Balls-v0 --per-regime 10000 --out balls_balanced.h5

Every subcommand lives in its own ``add_<name>_command(subparsers)`` function that registers a parser
whose ``handler`` default runs it; adding a subcommand means writing one such function and listing it
in ``COMMANDS``. Bad arguments exit with status 2 and a message naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input discovered after parsing (reported like an argparse error)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _policy(text: str) -> str | float:
    if text in ("seeing", "acting", "balanced"):
        return text
    fraction_text = text[4:] if text.startswith("mix:") else text
    try:
        fraction = float(fraction_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown policy {text!r}: use seeing, acting, balanced or mix:P "
                                         f"(P = seeing fraction in [0, 1])") from None
    if not 0.0 <= fraction <= 1.0:
        raise argparse.ArgumentTypeError(f"a seeing fraction must lie in [0, 1], got {fraction}")
    return fraction


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"persistence\": 0.5}}', got {text!r}")
    return value


# --------------------------------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------------------------------
def add_collect_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect", help="log seeing and acting data from a gymnasium env into an HDF5 collection",
        description="Collect environment steps (image, action, regime, ground truth when known) into an "
                    "HDF5 file. An existing file is continued up to --steps unless --no-resume.")
    parser.add_argument("env_id", metavar="ENV_ID", help="registered gymnasium id, e.g. causal_wm/Balls-v0")
    parser.add_argument("--steps", type=_positive_int, default=None,
                        help="rows to collect (optional with --per-regime)")
    parser.add_argument("--out", required=True, metavar="PATH", help="the HDF5 file to write")
    parser.add_argument("--policy", type=_policy, default=None,
                        help="seeing | acting (uniform over the menu, regime 0 included) | balanced | "
                             "mix:P (seeing with probability P); default acting, or balanced with --per-regime")
    parser.add_argument("--per-regime", type=_positive_int, default=None, metavar="M",
                        help="balanced collection: exactly M rows of every regime")
    parser.add_argument("--num-envs", type=_positive_int, default=1, metavar="K",
                        help="parallel environments (default 1)")
    parser.add_argument("--vectorization", choices=("sync", "async"), default="sync",
                        help="sync (default): one process; async: one process per environment")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="collection seed (default 0)")
    parser.add_argument("--env-kwargs", type=_json_object, default=None, metavar="JSON",
                        help="keyword arguments for gymnasium.make, as a JSON object")
    parser.add_argument("--chunk-size", type=_positive_int, default=1024, help="rows written per chunk (default 1024)")
    parser.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none",
                        help="lossless HDF5 compression (default none)")
    parser.add_argument("--no-resume", action="store_true", help="overwrite an existing file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import causal_wm  # noqa: F401  (registers the project's envs)
    from causal_wm.data import collect

    policy = args.policy
    if policy is None:
        policy = "balanced" if args.per_regime is not None else "acting"
    if args.per_regime is not None and policy != "balanced":
        raise UsageError(f"--per-regime needs --policy balanced (got --policy {args.policy})")
    if args.per_regime is None and policy == "balanced":
        raise UsageError("--policy balanced needs --per-regime M")
    if args.steps is None and args.per_regime is None:
        raise UsageError("give --steps N (or --per-regime M for a balanced collection)")
    if args.env_id not in gym.registry:
        raise UsageError(f"unknown env id {args.env_id!r}; registered causal_wm envs: "
                         f"{sorted(k for k in gym.registry if k.startswith('causal_wm/'))}")
    ds = collect(args.env_id, args.steps, args.out, policy=policy, num_envs=args.num_envs,
                 vectorization=args.vectorization, per_regime=args.per_regime, seed=args.seed,
                 resume=not args.no_resume, progress=not args.no_progress, env_kwargs=args.env_kwargs,
                 chunk_size=args.chunk_size, compression=None if args.compression == "none" else args.compression)
    counts = ds.regime_counts()
    print(f"{ds.path}: {len(ds)} rows, {ds.num_episodes} episodes, {len(counts)} regimes "
          f"(rows per regime {min(counts.values())}..{max(counts.values())})")
    ds.close()
    return 0


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------
def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    from causal_wm.demo import DEMO_PRESETS

    parser = subparsers.add_parser(
        "demo", help="collect Balls-v0 data, learn causal latents and graph from images, evaluate, report",
        description="The whole job on defaults: a balanced seeing + acting collection from causal_wm/Balls-v0, "
                    "causal representation learning from the images (GPU when present), evaluation against "
                    "the ground truth (MCC, SHD) and a Markdown report with figures. Rerun to resume.")
    parser.add_argument("--out", default="causal_wm_demo", metavar="DIR", help="output folder (default causal_wm_demo)")
    parser.add_argument("--preset", choices=sorted(DEMO_PRESETS), default="cpu",
                        help="debug (seconds), cpu (default, minutes on a CPU), full (published size, GPU)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument("--device", default="auto", help="torch device (default auto: CUDA when present)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from causal_wm.demo import run_demo

    summary = run_demo(args.out, preset=args.preset, seed=args.seed, device=args.device,
                       progress=not args.no_progress)
    m = summary["metrics"]
    print(f"Spearman MCC {m['mcc_spearman']:.3f}, Pearson MCC {m['mcc_pearson']:.3f}, SHD {m['shd']}; "
          f"report: {args.out}/report.md")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_collect_command, add_demo_command]


def build_parser() -> argparse.ArgumentParser:
    from causal_wm import __version__

    parser = argparse.ArgumentParser(
        prog="causal-wm", description="Causal world models: collect seeing and acting data, learn causal "
                                      "representations, plan interventions.")
    parser.add_argument("--version", action="version", version=f"causal-wm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on bad arguments (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (UsageError, ValueError) as err:
        print(f"causal-wm {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"causal-wm {args.command}: interrupted; the rows collected so far are saved (run the same "
              f"command again to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
