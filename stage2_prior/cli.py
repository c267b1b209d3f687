"""``twostage prior``: train a GPT or AdatGAN prior over a tokenizer's codes, score, sample."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.cli import (
    action_parser,
    add_checkpoint,
    add_output_folder,
    add_train_action,
    base_config,
    pick_device,
    run_actions,
    training_overrides,
)
from shared.code_files import read_codes
from shared.config import build_config
from shared.data import DataError, read_mask
from shared.images import save_png
from shared.limits import check_limit
from shared.options import (
    SIZE_CONVENTION,
    finite_float,
    image_size,
    non_negative_float,
    positive_int,
    probability,
    sample_count,
    seed,
)
from shared.outputs import OutputFolder
from shared.release import resolve_checkpoint
from stage2_prior.clip.model import DEFAULT, load_clip
from stage2_prior.config import PriorConfig
from stage2_prior.load import load_prior
from stage2_prior.train import train


def build_parser(prog: str = "twostage prior") -> argparse.ArgumentParser:
    p, sub = action_parser(prog, __doc__.splitlines()[0])
    t = add_train_action(
        sub, "train a prior preset (twostage info lists them) on the codes of --data"
    )
    t.add_argument("--tokenizer", help="stage-1 tokenizer: run folder, model folder or .ckpt")
    t.add_argument("--tokenizer-config", help="YAML of a taming tokenizer .ckpt")
    t.add_argument("--cond-tokenizer", help="tokenizer of the segmentation/depth/edge maps")
    t.add_argument("--cond-tokenizer-config", help="YAML of a taming condition tokenizer .ckpt")

    def checkpoint_flags(s: argparse.ArgumentParser) -> None:
        add_checkpoint(
            s,
            "prior: run/model folder, .ckpt, or a shipped model (fmnist-gpt, fmnist-adatgan)",
            "YAML of a taming transformer .ckpt",
        )
        s.add_argument(
            "--class",
            dest="label",
            metavar="NAME|ID",
            help="class to condition on: a class name stored with the prior, or its id",
        )

    n = sub.add_parser("nll", help="mean NLL (nats/token) of code grids, one JSON line")
    checkpoint_flags(n)
    n.add_argument("--codes", required=True, help=".npy of indices, N x h x w")
    n.add_argument("--cond-codes", help=".npy of condition codes, N x h x w (spatial priors)")
    n.add_argument("--batch-size", type=positive_int, default=64)

    s = sub.add_parser("sample", help="sample images (PNGs + indices.npy)")
    checkpoint_flags(s)
    s.add_argument("--num", type=sample_count, default=8, help="number of samples")
    s.add_argument("--condition", help="segmentation/depth map PNG (spatial priors)")
    s.add_argument(
        "--size",
        type=image_size,
        metavar="WxH",
        help=f"{SIZE_CONVENTION}; multiples of the tokenizer's factor, sliding window beyond "
        "the training window",
    )
    s.add_argument("--temperature", type=non_negative_float, default=1.0, help="0 = greedy")
    s.add_argument("--top-k", type=positive_int, help="keep the k most likely tokens")
    s.add_argument("--top-p", type=probability, help="nucleus probability mass, 0 < P <= 1")
    s.add_argument("--cfg-scale", type=finite_float, default=1.0, help="classifier-free guidance")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--batch-size", type=positive_int, default=16)
    s.add_argument("--no-cache", action="store_true", help="recompute keys/values every token")
    s.add_argument(
        "--rerank",
        metavar="PROMPT",
        help="keep the --num best of --candidates samples by CLIP similarity to PROMPT",
    )
    s.add_argument(
        "--candidates", type=sample_count, help="samples drawn for --rerank (default 4 x --num)"
    )
    s.add_argument("--clip", default=None, help="CLIP for --rerank: MODEL[:PRETRAINED]")
    s.add_argument("--clip-weights", help="weights file of the --clip model")
    add_output_folder(s, "the PNGs (sample_0000.png, ...) and indices.npy")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage prior") -> int:
    actions = {"train": cmd_train, "nll": cmd_nll, "sample": cmd_sample}
    return run_actions(build_parser, actions, argv, prog)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    base = base_config(args, "stage2_prior")
    flags = {
        "tokenizer": args.tokenizer,
        "tokenizer_config": args.tokenizer_config,
        "cond_tokenizer": args.cond_tokenizer,
        "cond_tokenizer_config": args.cond_tokenizer_config,
    }
    paths = [f"{k}={resolve_checkpoint(v).resolve()}" for k, v in flags.items() if v]
    cfg = build_config(PriorConfig, base, overrides=paths + training_overrides(args))
    out = train(cfg, args.output, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        print(f"run written to {out} (exported prior in {out / 'model'})")
    return 0


def _load(args: argparse.Namespace):
    device = pick_device(args.device)
    return load_prior(args.checkpoint, args.config).to(device), device


def cmd_nll(args: argparse.Namespace) -> int:
    prior, device = _load(args)
    codes = read_codes(args.codes, prior.n_codes)
    cond = None
    if args.cond_codes:
        cond = read_codes(args.cond_codes, max(prior.n_cond_codes, 1))
        if cond.shape != codes.shape:
            raise DataError(f"--cond-codes {cond.shape} must match --codes {codes.shape}")
    values = []
    label = prior.class_id(args.label) if args.label is not None else None
    for start in range(0, len(codes), args.batch_size):
        x = torch.from_numpy(codes[start : start + args.batch_size]).to(device)
        c = label
        if cond is not None:
            c = torch.from_numpy(cond[start : start + args.batch_size]).to(device)
        try:  # a missing or wrong condition, codes off the training window, no likelihood
            values += prior.nll(x, c).tolist()
        except ValueError as e:
            raise DataError(str(e)) from None
    print(json.dumps({"nll": values}))
    return 0


def pixel_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """``--size`` as parsed, (width, height) pixels -> (H, W); both multiples of ``factor``."""
    w, h = size
    if w % factor or h % factor:
        raise DataError(f"--size {w}x{h}: width and height must be multiples of {factor}")
    return h, w


def read_condition_map(path: str, size: tuple[int, int] | None) -> torch.Tensor:
    """A condition map PNG as (H,W) long values (palette or gray levels = label ids), resized
    (nearest) to ``size`` = (H, W) when given. A ``size`` that is the map's own size transposed
    is refused: it is --size given as HEIGHTxWIDTH."""
    mask = read_mask(Path(path))
    if size is not None and mask.size != (size[1], size[0]):
        if mask.size == size:
            w, h = mask.size
            raise DataError(
                f"--size {h}x{w} would transpose the {w}x{h} map {path}: --size is "
                f"WIDTHxHEIGHT; pass --size {w}x{h} (or leave it out)"
            )
        mask = mask.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(mask).astype(np.int64))


@torch.no_grad()
def rerank_scores(prior, clip, prompt: str, indices: torch.Tensor, batch: int, device):
    """CLIP cosine similarity (N,) between each decoded grid of ``indices`` and ``prompt``."""
    text = torch.nn.functional.normalize(clip.encode_text([prompt]), dim=-1)[0]
    scores = []
    for start in range(0, len(indices), batch):
        images = prior.decode(indices[start : start + batch].to(device)).clamp(-1, 1)
        emb = clip.encode_image((images + 1) / 2)
        scores.append((torch.nn.functional.normalize(emb, dim=-1) @ text).cpu())
    return torch.cat(scores)


def cmd_sample(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    prior, device = _load(args)
    f = prior.downsample_factor
    size = pixel_size(args.size, f) if args.size else None
    condition = prior.class_id(args.label) if args.label is not None else None
    if args.condition:
        if prior.condition != "spatial":
            raise DataError(
                f"--condition needs a spatially conditioned prior, not '{prior.condition}'"
            )
        maps = read_condition_map(args.condition, size)
        if maps.shape[0] % f or maps.shape[1] % f:
            raise DataError(
                f"{args.condition}: size {maps.shape[1]}x{maps.shape[0]} is not a multiple of {f}; "
                "pass --size"
            )
        size = tuple(maps.shape)
        condition = prior.encode_condition(maps[None].to(device))[0]
    options = dict(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg_scale
    )
    grid = (size[0] // f, size[1] // f) if size else prior.window
    try:  # the whole request, before any output
        grid = prior.check_sample(args.batch_size, grid, condition, **options)
    except ValueError as e:
        raise DataError(str(e)) from None
    out = folder.path
    targets = [out / f"sample_{i:04d}.png" for i in range(args.num)] + [out / "indices.npy"]
    folder.check(targets)
    total = args.num
    clip = None
    if args.rerank:
        total = args.candidates or 4 * args.num
        check_limit("samples", total, "--candidates")
        if total < args.num:
            raise DataError(f"--candidates ({total}) must be at least --num ({args.num})")
        clip = load_clip(args.clip or DEFAULT, args.clip_weights, device)
    elif args.candidates or args.clip:
        raise DataError("--candidates and --clip go with --rerank PROMPT")
    g = torch.Generator(device=device).manual_seed(args.seed)
    sliding = grid[0] > prior.window[0] or grid[1] > prior.window[1]
    indices = []
    for start in range(0, total, args.batch_size):
        n = min(args.batch_size, total - start)
        idx = prior.sample(
            n,
            grid,
            condition,
            **options,
            generator=g,
            cached=not args.no_cache,
            progress=sys.stderr.isatty() or sliding,
        )
        indices.append(idx.cpu())
    indices = torch.cat(indices)
    if clip is not None:
        scores = rerank_scores(prior, clip, args.rerank, indices, args.batch_size, device)
        best = scores.argsort(descending=True)[: args.num]
        indices = indices[best]
        print(json.dumps({"rerank": args.rerank, "kept_scores": scores[best].tolist()}))
    folder.claim(targets)
    for start in range(0, args.num, args.batch_size):
        batch = indices[start : start + args.batch_size].to(device)
        for i, img in enumerate(prior.decode(batch)):
            save_png(img, targets[start + i])
    np.save(out / "indices.npy", indices.numpy().astype(np.int64))
    how = f"sliding {prior.window[1]}x{prior.window[0]} window" if sliding else "one window"
    print(f"wrote {args.num} samples ({grid[1]}x{grid[0]} tokens, {how}) and indices.npy to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
