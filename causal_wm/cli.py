"""The ``causal-wm`` command.

    causal-wm collect causal_wm/Balls-v0 --steps 100000 --out balls.h5 --num-envs 2 --vectorization async
    causal-wm collect causal_wm/Balls-v0 --per-regime 10000 --out balls_balanced.h5
    causal-wm export balls_balanced.h5 --format citris --out balls_citris/
    causal-wm fit balls_balanced.h5 --out model.pt
    causal-wm evaluate model.pt --out eval/
    causal-wm plan model.pt --steps 200
    causal-wm train-agent --obs-type causal --model-path model.pt --total-timesteps 20000
    causal-wm bench planning
    causal-wm demo

Every subcommand lives in its own ``add_<name>_command(subparsers)`` function that registers a parser
whose ``handler`` default runs it; adding a subcommand means writing one such function and listing it
in ``COMMANDS``. Bad arguments exit with status 2 and a message naming the problem; a subcommand
checks its inputs and output paths before any work (see ``main``), and names what it is doing with
``_stage`` so that the traceback of a bug says which stage failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input discovered after parsing (reported like an argparse error)."""


# what the running subcommand is doing, for the note on an unexpected exception's traceback
_stage_now = "starting"


def _stage(text: str) -> None:
    """Record what the subcommand does next (``"training the world model on balls.h5"``)."""
    global _stage_now
    _stage_now = text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _check_device(device: str) -> None:
    """UsageError for a device torch does not know (``banana``) or one this machine lacks (``cuda``
    without CUDA), before any work."""
    if device == "auto":
        return
    from causal_wm.device import resolve_device

    try:
        resolve_device(device)
    except (RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"--device {device!r}: {reason} (use auto, cpu, cuda or cuda:N)") from None


def _check_env_kwargs(env_id: str, env_kwargs: dict[str, Any] | None, option: str = "--env-kwargs") -> None:
    """UsageError naming the accepted keywords when ``env_kwargs`` holds one the env does not take."""
    import inspect

    import gymnasium as gym

    if not env_kwargs or env_id not in gym.registry:
        return
    spec = gym.spec(env_id)
    try:
        from gymnasium.envs.registration import load_env_creator

        creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
        params = inspect.signature(creator).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):  # an entry point we cannot inspect: gym.make says
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    accepted |= {"max_episode_steps", "disable_env_checker"}  # gym.make's own
    unknown = sorted(set(env_kwargs) - accepted)
    if unknown:
        raise UsageError(f"{option}: {env_id} takes no keyword {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(sorted(accepted))}")


def _check_folder(folder: Path, option: str, target: Path | None = None) -> None:
    """UsageError unless ``folder`` exists or can be created and is writable: its nearest existing
    ancestor must be a folder this process may write into (``os.access``)."""
    existing = folder
    while not existing.exists():  # ends: "/" and "." exist
        existing = existing.parent
    shown = target if target is not None else folder
    if not existing.is_dir():
        raise UsageError(f"{option} {shown}: cannot create the folder {folder} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {shown}: the folder {existing} is not writable")


def _check_output_file(text: str, option: str = "--out") -> Path:
    """The path of a file to write, checked before any work: not a folder, writable when it exists,
    its folder existing or creatable and writable."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give the path of the file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path} exists and is not writable")
    _check_folder(path.parent, option, path)
    return path


def _check_output_folder(text: str, option: str = "--out") -> Path:
    """The path of a folder to write into, checked before any work: not a file, existing or creatable, writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder")
    _check_folder(path, option)
    return path


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


@contextlib.contextmanager
def _writing(path: Path | str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (disk full, permission) -> one line naming the path."""
    try:
        yield
    except OSError as err:
        raise UsageError(f"cannot write {err.filename or path}: {_os_reason(err)}") from err


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename: a full disk never leaves a
    truncated file under ``path`` (the temporary file is removed); OSError -> one line naming ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _cli_wording(command: str, text: str) -> str:
    """Library messages name Python arguments (``resume=False``, ``checkpoint_dir``); on the command
    line they name the flags that do the same. Only collect has --no-resume, so elsewhere the advice
    names ``causal-wm collect --no-resume`` (e.g. fit on a damaged collection)."""
    import re

    if command == "collect":  # collect words its own messages
        return text
    if command == "export":
        text = text.replace("pass overwrite=True (causal-wm export --overwrite)", "pass --overwrite")
        return re.sub(r"\b(val|test)_fraction\b", r"--\1-fraction", text)
    text = text.replace("resume=False (causal-wm collect --no-resume)", "causal-wm collect --no-resume")
    if command == "fit":
        text = re.sub(r"\bcheckpoint_dir\b", "--checkpoint-dir", text)
    if command == "demo":  # the demo keeps its collection and checkpoints under --out and has no --no-resume
        text = re.sub(r"use another checkpoint_dir or delete it", "delete it or use another --out", text)
        # the collector's advice ("pass resume=False to start over ... or choose another path")
        text = re.sub(r"pass resume=False\b[^;]*", "delete it or use another --out", text)
        text = re.sub(r"[Ss]tart over with causal-wm collect --no-resume", "delete it to start over", text)
    return re.sub(r"\bresume=False\b", "causal-wm collect --no-resume", text)


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
    parser.add_argument("--compression", choices=("lzf", "gzip", "none"), default="lzf",
                        help="lossless HDF5 compression of the images: lzf (default; fast, about 10x smaller for "
                             "the built-in scenes), gzip (smaller, slower) or none; a continued file keeps its own")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over, replacing an existing collection at --out (or a damaged one)")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --no-resume, also replace a file at --out that is not a causal_wm collection")
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
    if args.overwrite and not args.no_resume:
        raise UsageError("--overwrite applies with --no-resume only (it replaces a file that is not a collection)")

    def cli_words(text: str) -> str:  # the library names its Python arguments; here, the flags
        import re

        text = text.replace("resume=False (causal-wm collect --no-resume)", "--no-resume")
        text = text.replace("overwrite=True (causal-wm collect --overwrite)", "--overwrite")
        text = text.replace(" (causal_wm.data.repair(path, out))", "")
        text = re.sub(r"\bresume=False\b", "--no-resume", text)
        return re.sub(r"\boverwrite=True\b", "--overwrite", text)

    try:
        ds = collect(args.env_id, args.steps, args.out, policy=policy, num_envs=args.num_envs,
                     vectorization=args.vectorization, per_regime=args.per_regime, seed=args.seed,
                     resume=not args.no_resume, progress=not args.no_progress, env_kwargs=args.env_kwargs,
                     chunk_size=args.chunk_size, compression=None if args.compression == "none" else args.compression,
                     overwrite=args.overwrite)
    except ValueError as err:  # DatasetError included: a file that cannot be continued or replaced
        raise UsageError(cli_words(str(err))) from err
    counts = ds.regime_counts()
    print(f"{ds.path}: {len(ds)} rows, {ds.num_episodes} episodes, {len(counts)} regimes "
          f"(rows per regime {min(counts.values())}..{max(counts.values())})")
    ds.close()
    return 0


# --------------------------------------------------------------------------------------------------
# repair
# --------------------------------------------------------------------------------------------------
def add_repair_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair", help="salvage the intact rows of a damaged or truncated collection into a new file",
        description="Copy every intact committed row of a collection that no longer opens (cut short by a "
                    "full disk or an interrupted copy) or fails its checksums into a new, valid collection "
                    "with the same attributes and menu, and report how many rows were saved and lost. "
                    "`causal-wm collect` with the original arguments then continues the repaired file.")
    parser.add_argument("data", metavar="BROKEN", help="the damaged collection (HDF5 file)")
    parser.add_argument("--out", required=True, metavar="PATH", help="the repaired collection to write (a new file)")
    parser.set_defaults(handler=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    from causal_wm.data import repair

    _stage(f"repairing {args.data} into {args.out}")
    try:
        report = repair(args.data, args.out)
    except ValueError as err:  # DatasetError: not a collection, nothing salvageable, --out exists
        raise UsageError(str(err).replace("resume=False (causal-wm collect --no-resume)",
                                          "causal-wm collect --no-resume")) from err
    print(report)
    return 0


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------
def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a collection in another library's dataset format (CITRIS/BISCUIT)",
        description="Write a collection as the dataset folder that the CITRIS and BISCUIT data loaders read: "
                    "train/val/test .npz sequences (targets[t]: the intervention of the step into frame t+1; "
                    "actions[t]: the one-hot action that produced frame t), *_indep and *_triplets files "
                    "rendered by the scene, and settings.json with the causal graph. See docs/collect.md.")
    parser.add_argument("data", metavar="DATA", help="the collection (HDF5 file)")
    parser.add_argument("--format", choices=("citris",), default="citris",
                        help="citris: the CITRIS/BISCUIT {split}.npz folder (default)")
    parser.add_argument("--out", required=True, metavar="FOLDER", help="the folder to write")
    parser.add_argument("--val-fraction", type=_fraction, default=0.1, help="share of episodes in val (default 0.1)")
    parser.add_argument("--test-fraction", type=_fraction, default=0.1, help="share of episodes in test (default 0.1)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the indep and triplet samples")
    parser.add_argument("--no-render", action="store_true",
                        help="skip the *_indep and *_triplets files (they are rendered by the scene)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export at --out (any other non-empty folder is refused)")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from causal_wm.data import Dataset

    out = _check_output_folder(args.out)
    if not Path(args.data).is_file():
        raise UsageError(f"no collection file at {args.data}")
    _stage(f"exporting {args.data} to {out}")
    with Dataset(args.data) as dataset, _writing(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the files skipped, and why, are printed with the result
        result = dataset.export_citris(out, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                       seed=args.seed, render=False if args.no_render else None,
                                       overwrite=args.overwrite)
    print(str(result).replace("render=False", "--no-render"))
    return 0


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
def add_fit_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit", help="learn a causal world model from a collection",
        description="Learn the causal world model of an HDF5 collection (seeing plus acting data): the "
                    "encoder and decoder, the latent graph, one mechanism per latent, the regimes' "
                    "interventional distributions and the persistence. Checkpoints in --checkpoint-dir "
                    "let an interrupted run resume.")
    parser.add_argument("data", metavar="DATA", help="the collection (HDF5 file from causal-wm collect)")
    parser.add_argument("--out", required=True, metavar="PATH", help="the model file to write (.pt)")
    parser.add_argument("--preset", choices=("default", "debug", "cpu", "full"), default="default",
                        help="default: full on CUDA, cpu elsewhere; debug: seconds")
    parser.add_argument("--device", default="auto", help="torch device (default auto: CUDA when present)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument("--representation", default=None, metavar="PATH",
                        help="an image CRL model (causal_wm.crl.images) fitted on DATA: skip that stage")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="checkpoints of the representation learner (default: next to --out)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override one setting of the preset, repeatable; nested with dots, values as JSON "
                             "(e.g. --set crl.max_per_regime=20000 --set mechanism_steps=800); the fields are "
                             "those of causal_wm.world_model.WorldModelConfig and causal_wm.crl.images.ImageCRLConfig")
    parser.add_argument("--pairs", default=None, metavar="JSON|find",
                        help="the two hard interventions of every node as regime pairs, e.g. '[[1, 2], [3, 4]]', "
                             "or 'find' to find them from the data (default: from the collection's menu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from causal_wm.data import Dataset
    from causal_wm.world_model import CausalWorldModel

    # every input and output checked before the (long) training
    _stage("checking the arguments")
    if not Path(args.data).exists():
        raise UsageError(f"no collection at {args.data}")
    out = _check_output_file(args.out)
    if args.checkpoint_dir:
        checkpoints = _check_output_folder(args.checkpoint_dir, "--checkpoint-dir")
    else:
        checkpoints = _check_output_folder(str(out.with_name(out.stem + "_checkpoints")),
                                           "--out (its checkpoint folder)")
    args.checkpoints = checkpoints  # named by the message of an interrupted run
    if args.representation and not Path(args.representation).exists():
        raise UsageError(f"--representation: no file at {args.representation}")
    overrides = _settings(args.settings)
    pairs = _pairs(args.pairs)
    representation = None
    if args.representation:
        from causal_wm.crl.images import ImageCRLResult

        _stage(f"loading the representation {args.representation}")
        representation = ImageCRLResult.load(args.representation, device=args.device)
    _stage(f"fitting the world model on {args.data}")
    model = CausalWorldModel.fit(Dataset(args.data), preset=args.preset, overrides=overrides, device=args.device,
                                 seed=args.seed, representation=representation, checkpoint_dir=checkpoints,
                                 progress=not args.no_progress, pairs=pairs)
    _stage(f"writing {out}")
    with _writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    print(f"{out}: {model!r}")
    return 0


def _settings(items: Sequence[str]) -> dict[str, Any]:
    from causal_wm.config import parse_assignments

    try:
        return parse_assignments(items)
    except ValueError as err:
        raise UsageError(f"--set: {err}") from None


def _pairs(text: str | None) -> list[tuple[int, int]] | str | None:
    if text is None or text == "find":
        return text
    try:
        value = json.loads(text)
        pairs = [(int(a), int(b)) for a, b in value]
    except (json.JSONDecodeError, TypeError, ValueError):
        raise UsageError(f"--pairs must be 'find' or a JSON list of regime pairs like '[[1, 2], [3, 4]]', "
                         f"got {text!r}") from None
    return pairs


# --------------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------------
def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a causal world model against a scene's ground truth",
        description="Score a model on fresh frames of a causal scene: MCC (Pearson, Spearman), R^2, SHD of the "
                    "learned graph, and for every intervention of the scene's menu (including ones the "
                    "data never showed) the distance between imagined and real latents (MMD, W2) and the "
                    "image error of imagined interventions. Writes metrics.json and PNG figures.")
    parser.add_argument("model", metavar="MODEL", help="the model file (causal-wm fit)")
    parser.add_argument("--env-id", default="causal_wm/Balls-v0", help="the scene (default causal_wm/Balls-v0)")
    parser.add_argument("--env-kwargs", type=_json_object, default=None, metavar="JSON",
                        help="keyword arguments for gymnasium.make (must match the training data's scene)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of metrics.json and the figures")
    parser.add_argument("--frames", type=_positive_int, default=2000, help="observational test frames")
    parser.add_argument("--samples", type=_positive_int, default=1000, help="samples per intervention")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument("--device", default="auto", help="torch device (default auto)")
    parser.set_defaults(handler=run_evaluate)


def _scene_env(env_id: str, env_kwargs: dict[str, Any] | None) -> Any:
    import gymnasium as gym

    import causal_wm  # noqa: F401  (registers the project's envs)

    if env_id not in gym.registry:
        raise UsageError(f"unknown env id {env_id!r}")
    _check_env_kwargs(env_id, env_kwargs)
    _stage(f"creating the scene {env_id}")
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except TypeError as err:
        if not env_kwargs:
            raise
        raise UsageError(f"--env-kwargs {json.dumps(env_kwargs)}: {_one_line(str(err))}") from None


def _load_world_model(path: str, device: str) -> Any:
    from causal_wm.world_model import CausalWorldModel

    if not Path(path).exists():
        raise UsageError(f"no model file at {path}")
    _stage(f"loading the model {path}")
    return CausalWorldModel.load(path, device=device)


def run_evaluate(args: argparse.Namespace) -> int:
    from causal_wm._torch import to_jsonable
    from causal_wm.world_model.scoring import evaluate_world_model, world_model_figures

    _stage("checking the arguments")
    out = _check_output_folder(args.out)
    if (out / "metrics.json").is_dir():
        raise UsageError(f"--out {out}: {out / 'metrics.json'} is a folder")
    if not Path(args.model).exists():
        raise UsageError(f"no model file at {args.model}")
    env = _scene_env(args.env_id, args.env_kwargs)
    model = _load_world_model(args.model, args.device)
    _stage(f"evaluating {args.model} on {args.env_id}")
    metrics = evaluate_world_model(model, env, frames=args.frames, samples=args.samples, seed=args.seed)
    _stage(f"writing the figures and metrics.json into {out}")
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        metrics["figures"] = world_model_figures(model, metrics, env, out, seed=args.seed)
    _write_text(out / "metrics.json", json.dumps(to_jsonable(metrics), indent=1) + "\n")
    print(f"Spearman MCC {metrics['mcc_spearman']:.3f}, Pearson MCC {metrics['mcc_pearson']:.3f}, "
          f"SHD {metrics['shd']}, interventional MMD {metrics.get('intervention_mmd', float('nan')):.4f}; "
          f"{out / 'metrics.json'}")
    return 0


# --------------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------------
def add_plan_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="choose interventions with a learned model on a reach task; compare with the oracle",
        description="Run a planner that imagines every action with the learned causal world model (the agent "
                    "sees frames only) on the scene's reach task, next to the same planner with the true SCM "
                    "(oracle) and random actions. Prints success rates and writes JSON.")
    parser.add_argument("model", metavar="MODEL", help="the model file (causal-wm fit)")
    parser.add_argument("--env-id", default="causal_wm/Balls-v0", help="the scene (default causal_wm/Balls-v0)")
    parser.add_argument("--env-kwargs", type=_json_object, default=None, metavar="JSON",
                        help="keyword arguments for gymnasium.make; task='reach' is added")
    parser.add_argument("--planner", choices=("one-step", "cem"), default="one-step",
                        help="one-step: exhaustive search over the menu; cem: model-predictive control")
    parser.add_argument("--horizon", type=_positive_int, default=3, help="CEM horizon (default 3)")
    parser.add_argument("--steps", type=_positive_int, default=200, help="env steps per planner (default 200)")
    parser.add_argument("--samples", type=_positive_int, default=256, help="imagined samples per action")
    parser.add_argument("--tolerance", type=_positive_float, default=0.5,
                        help="success tolerance, a positive number (default 0.5)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed (default 0)")
    parser.add_argument("--out", default=None, metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--device", default="auto", help="torch device (default auto)")
    parser.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from causal_wm.agents.evaluation import compare_planners

    _stage("checking the arguments")
    out = _check_output_file(args.out) if args.out else None
    if not Path(args.model).exists():
        raise UsageError(f"no model file at {args.model}")
    env = _scene_env(args.env_id, {**(args.env_kwargs or {}), "task": "reach"})
    model = _load_world_model(args.model, args.device)
    _stage(f"planning with {args.model} on {args.env_id}")
    results = compare_planners(model, env, planner=args.planner, horizon=args.horizon, steps=args.steps,
                               num_samples=args.samples, tolerance=args.tolerance, seed=args.seed, progress=True)
    for name, r in results["planners"].items():
        print(f"{name:>8}: success {r['success_rate']:.3f}, mean reward {r['mean_reward']:.3f}")
    if out is not None:
        _stage(f"writing {out}")
        _write_text(out, json.dumps(results, indent=1) + "\n")
    return 0


# --------------------------------------------------------------------------------------------------
# train-agent
# --------------------------------------------------------------------------------------------------
def add_train_agent_command(subparsers: argparse._SubParsersAction) -> None:
    from causal_wm.agents.config import TrainConfig
    from causal_wm.config import add_config_arguments

    parser = subparsers.add_parser(
        "train-agent", help="train a stable-baselines3 agent on pixels, learned causal features, a plain "
                            "autoencoder's code or the true latents",
        description="Train one PPO, A2C or DQN agent on a causal scene (default: the Balls-v0 reach task with "
                    "persistence 0.9). --obs-type causal needs --model-path (a causal world model or image CRL "
                    "model). Writes TensorBoard logs, curve.json and agent.zip under --out.")
    add_config_arguments(parser, TrainConfig)
    parser.set_defaults(handler=run_train_agent)


def run_train_agent(args: argparse.Namespace) -> int:
    import dataclasses

    from causal_wm.agents.training import TrainConfig, check_config, train

    _stage("checking the arguments")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = check_config(TrainConfig(**{k: v for k, v in vars(args).items() if k in names}))
    if not isinstance(config.env_kwargs, dict):
        raise UsageError(f"--env-kwargs must be a JSON object, got {json.dumps(config.env_kwargs)}")
    if config.torch_threads < 1:
        raise UsageError(f"--torch-threads must be a positive integer, got {config.torch_threads}")
    if config.model_path and not Path(config.model_path).exists():
        raise UsageError(f"--model-path: no model file at {config.model_path}")
    _check_output_folder(config.out)
    _check_env_kwargs(config.env_id, config.env_kwargs)
    _stage(f"training the {config.algo} agent on {config.env_id}")
    result = train(config)
    final = result["final_return"]
    print(f"{result['run_dir']}: {result['episodes']} episodes, final return "
          f"{'n/a' if final is None else f'{final:.2f}'}, {result['steps_per_s']:.0f} steps/s")
    return 0


# --------------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------------
def _scripts_dir() -> Any:
    from pathlib import Path

    import causal_wm

    return Path(causal_wm.__file__).resolve().parents[1] / "scripts"


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark script (scripts/bench_NAME.py of a source checkout)",
        description="Run scripts/bench_NAME.py (results go to benchmarks/results/). Arguments after NAME are "
                    "passed to the script; `causal-wm bench NAME -- --help` shows them.")
    parser.add_argument("name", metavar="NAME", help="render, collect, scores, linear, umni, gscale, "
                                                      "gscale_images, planning, agents, or 'list'")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    parser.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import subprocess

    folder = _scripts_dir()
    available = sorted(p.stem[len("bench_"):] for p in folder.glob("bench_*.py")) if folder.is_dir() else []
    if not available:
        raise UsageError("the benchmark scripts ship with the source checkout (scripts/); none found next to "
                         "the installed package")
    if args.name == "list":
        print("\n".join(available))
        return 0
    if args.name not in available:
        raise UsageError(f"unknown benchmark {args.name!r}; available: {', '.join(available)}")
    script_args = [a for a in args.script_args if a != "--"]
    return subprocess.call([sys.executable, str(folder / f"bench_{args.name}.py"), *script_args])


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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="override one setting of the preset, repeatable (e.g. --set per_regime=2000 "
                             "--set world_model.crl.ae_epochs=8): the fields of causal_wm.demo.DemoConfig")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from causal_wm.demo import run_demo

    _stage("checking the arguments")
    _check_output_folder(args.out)
    overrides = _settings(args.settings)
    _stage(f"running the demo into {args.out}")
    summary = run_demo(args.out, preset=args.preset, seed=args.seed, device=args.device,
                       progress=not args.no_progress, overrides=overrides,
                       on_stage=lambda name: _stage(f"{name} (demo into {args.out})"))
    m = summary["metrics"]
    print(f"Spearman MCC {m['mcc_spearman']:.3f}, Pearson MCC {m['mcc_pearson']:.3f}, SHD {m['shd']}; "
          f"report: {args.out}/report.md")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_collect_command, add_repair_command, add_export_command, add_fit_command, add_evaluate_command,
    add_plan_command, add_train_agent_command, add_bench_command, add_demo_command,
]


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
    """Run the command line; returns the exit status: 0 ok; 2 with one line ``causal-wm CMD: error: ...``
    for bad arguments (checked before any work: devices, env keywords, input files, output paths), bad or
    missing files, a failed write (disk full, permission) or a diverged training; 130 after Ctrl-C. Any
    other exception is a bug: it propagates with its traceback and a note naming the stage that failed."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on bad arguments (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _stage("starting")

    def fail(text: str) -> int:  # one line, in the CLI's words
        print(f"causal-wm {args.command}: error: {_one_line(_cli_wording(args.command, text))}", file=sys.stderr)
        return EXIT_USAGE

    try:
        if isinstance(getattr(args, "device", None), str):
            _check_device(args.device)
        return int(args.handler(args))
    except (UsageError, ValueError) as err:  # ValueError includes ModelFileError and DatasetError (bad files)
        return fail(str(err))
    except FileNotFoundError as err:  # a missing data or model file the command did not check itself
        return fail(str(err) if not err.filename else f"{err.filename}: {_os_reason(err)}")
    except OSError as err:  # disk full, permission, an unreadable file
        where = f"{err.filename}: " if err.filename else ""
        return fail(f"{where}{_os_reason(err)} (while {_stage_now})")
    except FloatingPointError as err:  # training diverged: the library's message says what to change
        return fail(str(err))
    except KeyboardInterrupt:
        print(f"causal-wm {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: keep the traceback, say where it happened
        err.add_note(f"causal-wm {args.command}: failed while {_stage_now} (an unexpected error, not bad input: "
                     f"please report it with this traceback)")
        raise


def _interrupted(args: argparse.Namespace) -> str:
    """The message of an interrupted subcommand: the stage it was in, what was kept and how to continue."""
    kept = _kept(args)
    return f"interrupted while {_stage_now}" + (f"; {kept}" if kept else "")


def _kept(args: argparse.Namespace) -> str:
    if args.command == "collect":
        return "the rows collected so far are saved (run the same command again to continue)"
    if args.command == "fit" and getattr(args, "checkpoints", None) is not None:
        return (f"the finished stages of the representation learner are kept in {args.checkpoints} "
                f"(run the same command again to continue)")
    if args.command == "demo":
        return (f"the collection and the checkpoints under {args.out} are kept (run the same "
                f"command again to continue)")
    return ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
