"""``twostage clip "PROMPT" ...``: VQGAN+CLIP text to image (:mod:`stage2_prior.clip.guidance`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from shared.cli import add_device, add_output_folder, from_args, pick_device, run_main
from shared.config import ConfigError
from shared.data import DataError
from shared.options import (
    SIZE_CONVENTION,
    ArgumentParser,
    image_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from shared.outputs import OutputFolder
from stage1_vqgan import load_tokenizer
from stage2_prior.clip.guidance import (
    FINAL_FILE,
    FRAMES_DIR,
    TRACE_FILE,
    Guide,
    GuideConfig,
    run,
)
from stage2_prior.clip.model import DEFAULT, load_clip
from stage2_prior.clip.prompts import Prompt, parse_prompt, parse_prompts


def file_prompts(items: list[str], flag: str) -> list[Prompt]:
    prompts = [parse_prompt(i) for i in items]
    for p in prompts:
        if not Path(p.text).is_file():
            raise DataError(f"{flag} {p.text}: no such file")
    return prompts


def output_files(cfg: GuideConfig, output: Path) -> list[Path]:
    """The files :func:`stage2_prior.clip.guidance.run` writes into ``output``."""
    every = cfg.save_every
    steps = [s for s in range(1, cfg.steps + 1) if every and (s % every == 0 or s == cfg.steps)]
    frames = [output / FRAMES_DIR / f"step_{s:05d}.png" for s in steps]
    video = [output / f"optimisation.{cfg.video}"] if cfg.video and frames else []
    return [output / TRACE_FILE, *frames, output / FINAL_FILE, *video]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("prompt", nargs="*", help='"text:weight:stop | text2:weight" items')
    p.add_argument("--prompt", dest="more", action="append", default=[], help="more prompts")
    p.add_argument("--image-prompt", action="append", default=[], help="FILE[:weight[:stop]]")
    p.add_argument("--noise-prompt", action="append", default=[], help="SEED[:weight[:stop]]")
    p.add_argument(
        "--tokenizer",
        required=True,
        help="our tokenizer (run or model folder) or a taming .ckpt (with --config)",
    )
    p.add_argument("--config", help="the taming checkpoint's YAML")
    p.add_argument(
        "--clip",
        action="append",
        help=f"MODEL[:PRETRAINED] (default {DEFAULT}); repeat to average several models",
    )
    p.add_argument("--clip-weights", help="weights file of the (single) --clip model")
    p.add_argument(
        "--size", type=image_size, default=(256, 256), metavar="WxH", help=SIZE_CONVENTION
    )
    p.add_argument("--steps", type=positive_int, default=300)
    p.add_argument("--lr", type=positive_float, default=0.1)
    p.add_argument("--cutn", type=positive_int, default=64)
    p.add_argument("--cut-pow", type=non_negative_float, default=1.0)
    p.add_argument("--chunk", type=positive_int, default=16, help="cutouts per CLIP pass")
    p.add_argument("--no-checkpointing", action="store_true", help="keep decoder activations")
    p.add_argument("--init-image")
    p.add_argument("--init-weight", type=non_negative_float, default=0.0)
    p.add_argument("--tv-weight", type=non_negative_float, default=0.0)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument(
        "--save-every", type=non_negative_int, default=50, help="frames every N steps (0: none)"
    )
    p.add_argument("--video", choices=["gif", "mp4"])
    add_device(p)
    add_output_folder(p, "final.png, trace.jsonl, frames/ and the video")
    p.add_argument("--no-progress", action="store_true")
    return p


def _main(argv: Sequence[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_intermixed_args(argv)  # prompts may follow flags
    prompts = [p for text in args.prompt + args.more for p in parse_prompts(text)]
    if args.init_image and not Path(args.init_image).is_file():
        raise DataError(f"--init-image {args.init_image}: no such file")
    cfg = from_args(
        GuideConfig,
        args,
        prompts=prompts,
        image_prompts=file_prompts(args.image_prompt, "--image-prompt"),
        noise_prompts=[parse_prompt(s) for s in args.noise_prompt],
        checkpointing=not args.no_checkpointing,
    )
    if not (cfg.prompts or cfg.image_prompts or cfg.noise_prompts):
        raise ConfigError("give at least one text prompt, --image-prompt or --noise-prompt")
    for p in cfg.noise_prompts:
        if not p.text.lstrip("-").isdigit():
            raise ConfigError(f"--noise-prompt '{p.text}' must be an integer seed")
    specs = args.clip or [DEFAULT]
    if args.clip_weights and len(specs) > 1:
        raise ConfigError("--clip-weights needs exactly one --clip model")
    folder = OutputFolder(args.output, args.overwrite)
    output = folder.path
    targets = output_files(cfg, output)
    folder.check(targets)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.tokenizer, args.config).to(device)
    clips = [load_clip(s, args.clip_weights, device) for s in specs]
    try:
        guide = Guide(tokenizer, clips, cfg, device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    folder.claim(targets)
    final = run(guide, output, args.tokenizer, progress=not args.no_progress)
    print(final)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "twostage clip") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


if __name__ == "__main__":
    sys.exit(main())
