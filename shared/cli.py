"""The ``twostage`` command: dispatches to each stage's CLI by module name (imported lazily), and
the pieces every stage CLI shares (training flags, one-line errors, device choice)."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

COMMANDS = {
    "vqgan": ("stage1_vqgan.cli", "tokenizer: train | reconstruct | encode | decode | benchmark"),
    "prior": ("stage2_prior.cli", "GPT prior over codes: train | nll | sample"),
    "gan": ("gan_direct.cli", "one-stage pixel GANs: train | sample"),
    "segment": ("segmentation.cli", "U-Net semantic segmentation: train | predict"),
    "clip": ("stage2_prior.clip_cli", "text to image: optimise a tokenizer latent with CLIP"),
    "demo": ("twostage_demo.demo", "the whole pipeline on builtin:shapes, shown in index.html"),
    "info": ("shared.info", "every preset: size, purpose, CPU or GPU (info PRESET: params, MACs)"),
}


def package_version() -> str:
    try:
        return version("twostage")
    except PackageNotFoundError:
        return "0+unknown"


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a one-line message meant for the user (no traceback)."""
    from shared.checkpoint import CheckpointError
    from shared.config import ConfigError
    from shared.data import DataError
    from shared.engine import TrainingDiverged
    from shared.limits import LimitError
    from shared.run import RunError
    from shared.weights import WeightsUnavailable

    return (
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
    except user_errors() as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags every ``train`` command takes, plus ``key=value`` overrides (anywhere among
    the flags with :class:`shared.options.ArgumentParser`)."""
    from shared.options import non_negative_int, positive_int, seed

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
    p.add_argument("--output", required=True, help="run folder to create (or resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --output")
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
    from shared.config import ConfigError, read_preset

    run_config = Path(args.output) / "config.yaml"
    if args.resume and run_config.is_file():
        return read_preset(str(run_config), package)
    if args.config:
        return read_preset(args.config, package)
    raise ConfigError("--config is required (a preset name or a YAML file)")


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from shared.config import ConfigError

        raise ConfigError("--device cuda: no CUDA device is available")
    return name


def build_parser() -> argparse.ArgumentParser:
    from shared.options import PlainHelpFormatter

    p = argparse.ArgumentParser(
        prog="twostage",
        description="VQGAN tokenizers, priors over their codes, CLIP guidance and pixel GANs.",
        formatter_class=PlainHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"twostage {package_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:], prog=f"twostage {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
