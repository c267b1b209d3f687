"""The ``twostage`` command: ``twostage COMMAND ...`` runs the ``main`` of that command's module,
imported by name only when it is chosen (so ``twostage --help`` loads no stage and no torch)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from shared.options import PlainHelpFormatter

COMMANDS = {  # command -> (module with main(argv, prog) and build_parser(prog), help)
    "vqgan": ("stage1_vqgan.cli", "tokenizer: train | reconstruct | encode | decode | benchmark"),
    "prior": ("stage2_prior.cli", "GPT prior over codes: train | nll | sample"),
    "gan": ("gan_direct.cli", "one-stage pixel GANs: train | sample"),
    "segment": ("segmentation.cli", "U-Net semantic segmentation: train | predict"),
    "clip": ("stage2_prior.clip.cli", "text to image: optimise a tokenizer latent with CLIP"),
    "demo": ("twostage.demo", "the whole pipeline on builtin:shapes, shown in index.html"),
    "info": (
        "twostage.info",
        "every preset: size, purpose, CPU or GPU (info PRESET: params, MACs)",
    ),
}


def package_version() -> str:
    try:
        return version("twostage")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
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
