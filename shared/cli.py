"""The command-line layer every command shares: its flags (training, ``--device``, ``--output``
and ``--overwrite``), the input rule, and :func:`run_main`, which turns a user's mistake into
one line ``PROG: error: ...`` and exit code 2. The ``twostage`` command itself is the roof's
(:mod:`twostage.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from shared.checkpoint import CheckpointError
from shared.config import ConfigError, read_preset
from shared.data import DataError, list_images
from shared.engine import TrainingDiverged
from shared.errors import first_line
from shared.limits import LimitError
from shared.options import ArgumentParser, non_negative_int, positive_int, seed
from shared.run import RunError
from shared.weights import WeightsUnavailable

T = TypeVar("T")

USER_ERRORS = (  # exceptions whose message is meant for the user (one line, no traceback)
    ConfigError,
    DataError,
    CheckpointError,
    RunError,
    WeightsUnavailable,
    TrainingDiverged,
    LimitError,
    OSError,
)


def run_main(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    prog: str = "twostage",
) -> int:
    """Run a CLI entry point, turning user errors into ``prog: error: ...`` and exit code 2;
    warnings print as one line ``prog: warning: ...``."""
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda message, *args, **kwargs: f"{prog}: warning: {message}\n"
    try:
        return main(argv) or 0
    except USER_ERRORS as e:
        print(f"{prog}: error: {first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format


def action_parser(prog: str, description: str) -> tuple[ArgumentParser, Any]:
    """The parser of a command with sub-commands and the sub-parsers to add them to; the chosen
    one is stored as ``action``, as :func:`run_actions` expects."""
    p = ArgumentParser(prog=prog, description=description)
    return p, p.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_train_action(sub: Any, help_text: str) -> argparse.ArgumentParser:
    """The ``train`` sub-command (``help_text``: its help) with :func:`add_training_flags`."""
    t = sub.add_parser("train", help=help_text)
    add_training_flags(t)
    return t


def run_actions(
    build_parser: Callable[[str], argparse.ArgumentParser],
    actions: Mapping[str, Callable[[argparse.Namespace], int]],
    argv: Sequence[str] | None,
    prog: str,
) -> int:
    """A command with sub-commands (``twostage vqgan train ...``): parse ``argv`` with
    ``build_parser(prog)`` (which stores the sub-command as ``action``) and run its function
    from ``actions``, under :func:`run_main`."""

    def run(argv: Sequence[str] | None) -> int:
        args = build_parser(prog).parse_args(argv)
        return actions[args.action](args)

    return run_main(run, argv, prog)


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags every ``train`` command takes, plus ``key=value`` overrides (anywhere among
    the flags with :class:`shared.options.ArgumentParser`)."""
    p.add_argument(
        "--config",
        required=False,
        help="preset name or YAML file" + " (required unless --resume)",
    )
    p.add_argument("--data", help="image folder or builtin:shapes|fashion-mnist|photos")
    p.add_argument("--resolution", type=positive_int, help="training image size (pixels)")
    p.add_argument("--batch-size", type=positive_int, help="images per process per step")
    p.add_argument("--max-steps", type=positive_int, help="optimizer steps to train for")
    p.add_argument(
        "--checkpoint-every", type=non_negative_int, help="steps between checkpoints (0: last only)"
    )
    p.add_argument("--seed", type=seed, help="random seed (0 to 2**32-1)")
    add_output(
        p, "run folder to create (or resume)", "replace an existing run in --output", required=True
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--precision", choices=["no", "fp16", "bf16"], help="mixed precision")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


FLAG_KEYS = {
    "data": "data.source",
    "resolution": "data.resolution",
    "batch_size": "train.batch_size",
    "max_steps": "train.max_steps",
    "checkpoint_every": "train.checkpoint_every",
    "seed": "train.seed",
    "precision": "train.precision",
}


def training_overrides(args: argparse.Namespace) -> list[str]:
    """Dotted overrides from the common flags (then the user's own, which win)."""
    out = [
        f"{key}={getattr(args, flag)}"
        for flag, key in FLAG_KEYS.items()
        if getattr(args, flag, None) is not None
    ]
    return out + list(args.overrides)


def base_config(args: argparse.Namespace, package: str) -> dict:
    """The config a ``train`` command starts from: the run's own ``config.yaml`` on
    ``--resume``, else ``--config`` (a preset of ``package`` or a YAML file)."""
    run_config = Path(args.output) / "config.yaml"
    if args.resume and run_config.is_file():
        return read_preset(str(run_config), package)
    if args.config:
        return read_preset(args.config, package)
    raise ConfigError("--config is required (a preset name or a YAML file)")


def add_checkpoint(p: argparse.ArgumentParser, what: str, config: str) -> None:
    """``--checkpoint`` (required; ``what``: the forms it takes), ``--config`` (``config``: its
    help, the YAML a taming ``.ckpt`` comes with) and ``--device``."""
    p.add_argument("--checkpoint", required=True, help=what)
    p.add_argument("--config", help=config)
    add_device(p)


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A ``cls`` dataclass whose fields take the parsed flag of the same name (``--cut-pow`` ->
    ``cut_pow``) where ``args`` has one; ``given`` values win; other fields keep their defaults."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)} | given)


def add_device(p: argparse.ArgumentParser, use: str = "") -> None:
    """``--device auto | cpu | cuda[:N]`` (:func:`pick_device`); ``use``: what it runs, shown in
    the help."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]" + use)


def pick_device(name: str = "auto") -> str:
    """The device ``--device`` names; ``auto`` is CUDA where there is one, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return name


def add_output(p: argparse.ArgumentParser, what: str, replaces: str, **kwargs) -> None:
    """``--output`` (``what``: its help) and ``--overwrite`` (``replaces``: what it replaces);
    ``kwargs`` go to ``--output`` (``required``, ``default``, ``metavar``)."""
    p.add_argument("--output", help=what, **kwargs)
    p.add_argument("--overwrite", action="store_true", help=replaces)


def add_output_folder(p: argparse.ArgumentParser, what: str) -> None:
    """``--output DIR`` and ``--overwrite`` of a command that writes ``what`` into a folder
    (:class:`shared.outputs.OutputFolder`)."""
    add_output(
        p,
        f"folder for {what}: new, empty, or holding only what twostage wrote there",
        "replace files of the same names that twostage wrote, and write into a folder "
        "holding other files (beside them); nothing is deleted",
        required=True,
        metavar="DIR",
    )


def input_images(src: Path) -> list[Path]:
    """The ``--input`` image, or the images of a folder (recursive, sorted); a one-line error
    when it is missing or holds none."""
    if not src.exists():
        raise DataError(f"input not found: {src}")
    paths = list_images(src) if src.is_dir() else [src]
    if not paths:
        raise DataError(f"no images in {src}")
    return paths
