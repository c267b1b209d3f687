"""``twostage vqgan train|reconstruct|encode|decode`` (also ``python -m stage1_vqgan``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.cli import (
    action_parser,
    add_checkpoint,
    add_device,
    add_output,
    add_output_folder,
    add_train_action,
    base_config,
    from_args,
    input_images,
    pick_device,
    run_actions,
    training_overrides,
)
from shared.code_files import read_codes, write_codes
from shared.config import ConfigError, build_config
from shared.data import DataError, load_image
from shared.images import from_uint8, save_png
from shared.limits import check_limit
from shared.options import positive_int
from shared.outputs import IMAGE_OUTPUT_RULE, OUTPUT_RULE, OutputFolder, image_outputs
from shared.run import refuse_existing
from stage1_vqgan import report
from stage1_vqgan.benchmark import (
    BenchmarkProtocol,
    benchmark_data,
    benchmark_tokenizer,
    load_any_tokenizer,
)
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation import colorize_mask, logits_to_mask
from stage1_vqgan.taming import is_taming_file
from stage1_vqgan.train import train


def build_parser(prog: str = "twostage vqgan") -> argparse.ArgumentParser:
    p, sub = action_parser(prog, "VQGAN tokenizer (stage 1).")
    add_train_action(sub, "train a tokenizer preset (twostage info lists them)")

    def checkpoint_flags(s: argparse.ArgumentParser) -> None:
        add_checkpoint(
            s,
            "run folder, exported model folder, taming last.ckpt, or fmnist-vqgan (shipped)",
            "taming YAML config (for a .ckpt checkpoint)",
        )
        s.add_argument("--batch-size", type=positive_int, default=8)

    def image_flags(s: argparse.ArgumentParser) -> None:
        s.add_argument("--input", required=True, help="an image or a folder of images")
        s.add_argument(
            "--resize",
            type=positive_int,
            metavar="N",
            help="scale the shorter side to N, then crop to a multiple of f",
        )
        s.add_argument("--center-crop", type=positive_int, metavar="N", help="centre crop to N x N")

    r = sub.add_parser(
        "reconstruct",
        help="encode and decode images",
        description=f"Encode and decode images; {IMAGE_OUTPUT_RULE}. {OUTPUT_RULE}.",
    )
    checkpoint_flags(r)
    image_flags(r)
    add_output_folder(r, "the reconstructed PNGs")

    e = sub.add_parser("encode", help="images -> code indices (N x h x w int64 .npy)")
    checkpoint_flags(e)
    image_flags(e)
    add_output(e, "CODES.npy to write", "replace an existing CODES.npy", required=True)

    d = sub.add_parser("decode", help="code indices (.npy) -> PNG images (or coloured masks)")
    checkpoint_flags(d)
    d.add_argument("--codes", required=True, help="CODES.npy (N x h x w or h x w integers)")
    add_output_folder(d, "the decoded PNGs (000000.png, ...)")
    b = sub.add_parser("benchmark", help="reconstruction metrics of one or more tokenizers")
    b.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="run/model folder, taming .ckpt, fmnist-vqgan, or py:MODULE:FUNCTION (repeatable)",
    )
    b.add_argument(
        "--config",
        action="append",
        default=[],
        help="taming YAML for the checkpoint in the same position ('-' for none)",
    )
    b.add_argument("--name", action="append", default=[], help="label per checkpoint")
    b.add_argument("--data", required=True, help="image folder or builtin:NAME")
    b.add_argument("--resolution", type=positive_int, default=256)
    b.add_argument("--num-images", type=positive_int, help="first N images (default: all)")
    b.add_argument("--batch-size", type=positive_int, default=16)
    add_output_folder(b, "results.json, results.md and report.html")
    b.add_argument(
        "--no-8bit",
        action="store_true",
        help="compare float reconstructions (default: 8-bit round trip first)",
    )
    b.add_argument(
        "--lpips-backbone",
        choices=["pretrained", "random", "off"],
        default="pretrained",
        help="random: same network at random weights (testing only); off: skip",
    )
    b.add_argument(
        "--inception",
        choices=["pretrained", "random", "off"],
        default="pretrained",
        help="random: same network at random weights (testing only); off: skip",
    )
    add_device(b)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage vqgan") -> int:
    actions = {
        "train": cmd_train,
        "reconstruct": cmd_reconstruct,
        "encode": cmd_encode,
        "decode": cmd_decode,
        "benchmark": cmd_benchmark,
    }
    return run_actions(build_parser, actions, argv, prog)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    base = base_config(args, "stage1_vqgan")
    cfg = build_config(VQGANConfig, base, overrides=training_overrides(args))
    out = train(cfg, args.output, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        print(f"run written to {out} (exported model in {out / 'model'})")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    out, src = folder.path, Path(args.input)
    paths = input_images(src)
    targets = image_outputs(paths, src, out)
    folder.check(targets.values())
    model, device = _load(args)
    for i, (batch_paths, x) in enumerate(_image_batches(args, model, paths)):
        with torch.no_grad():
            rec = model.decode(model.encode(x.to(device))).clamp(-1, 1)
        if i == 0:
            folder.claim(targets.values())
        for img, path in zip(rec, batch_paths, strict=True):
            save_png(img, targets[path])
    print(f"wrote {len(paths)} reconstructions to {out}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    model, device = _load(args)
    out = Path(args.output)
    if out.suffix != ".npy":
        raise ConfigError(f"--output {out}: codes are written as a .npy file")
    for target in (out, out.with_suffix(".files.txt")):
        refuse_existing(target, args.overwrite)
    codes, names = [], []
    for paths, x in _image_batches(args, model, input_images(Path(args.input))):
        with torch.no_grad():
            codes.append(model.encode(x.to(device)).cpu())
        names += [str(p) for p in paths]
    shapes = {tuple(c.shape[1:]) for c in codes}
    if len(shapes) > 1:
        raise DataError(
            f"images give different code grids {sorted(shapes)}; "
            "use --resize or --center-crop for one size"
        )
    array = torch.cat(codes).numpy().astype(np.int64)
    write_codes(out, array, names)
    print(f"wrote codes {tuple(array.shape)} to {out}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    model, device = _load(args)
    codes = read_codes(args.codes, model.n_embed)
    out = folder.path
    targets = [out / f"{i:06d}.png" for i in range(len(codes))]
    folder.claim(targets)
    for start in range(0, len(codes), args.batch_size):
        batch = torch.from_numpy(codes[start : start + args.batch_size]).to(device)
        with torch.no_grad():
            images = model.decode(batch)
        if model.kind == "segmentation":
            images = colorize_mask(logits_to_mask(images))
        for img, target in zip(images, targets[start:], strict=False):
            save_png(img, target)
    print(f"wrote {len(codes)} images to {out}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    out = folder.path
    check_limit("pixels", args.resolution**2, f"--resolution {args.resolution} (squared)")
    results_files = [out / n for n in ("results.json", "results.md", "report.html")]
    folder.check(results_files)
    if len(args.config) > len(args.checkpoint) or len(args.name) > len(args.checkpoint):
        raise ConfigError("more --config/--name than --checkpoint values")
    configs = [None if c == "-" else c for c in args.config]
    configs += [None] * (len(args.checkpoint) - len(configs))
    names = args.name + [checkpoint_name(c) for c in args.checkpoint[len(args.name) :]]
    if len(set(names)) != len(names):
        raise ConfigError(f"tokenizer names must differ: {names}; use --name")
    protocol = from_args(BenchmarkProtocol, args, round_trip_8bit=not args.no_8bit)
    data = benchmark_data(args.data, protocol)
    device = torch.device(pick_device(args.device))
    results, crops = [], {}
    for checkpoint, config, name in zip(args.checkpoint, configs, names, strict=True):
        tok = load_any_tokenizer(checkpoint, config)
        if isinstance(tok, torch.nn.Module):
            tok = tok.to(device).eval()
        if args.resolution % tok.downsample_factor:
            raise DataError(
                f"--resolution {args.resolution} is not divisible by {name}'s "
                f"downsampling factor {tok.downsample_factor}"
            )
        result = benchmark_tokenizer(tok, name, checkpoint, data, protocol, device)
        crops[name] = report.crops_html(result, tok, data, device, protocol)
        results.append(result)
    folder.claim(results_files)
    report.write_json(results, protocol, args.data, out / "results.json")
    table = report.markdown_table(results)
    (out / "results.md").write_text(table)
    report.write_html(results, protocol, args.data, out / "report.html", crops)
    print(table + f"\nwrote {out / 'results.json'}, results.md and report.html")
    return 0


def checkpoint_name(source: str) -> str:
    """A short label: the run's folder name for ``RUN`` or ``RUN/model``, else the file stem."""
    path = Path(source.removeprefix("py:"))
    if path.name == "model" or is_taming_file(path):
        if path.parent.name == "checkpoints":
            return path.parent.parent.name
        return path.parent.name if path.name == "model" else path.stem
    return path.name or source


def fit_image(
    img: Image.Image, factor: int, resize: int | None, crop: int | None, source: str
) -> Image.Image:
    """Apply --resize / --center-crop; refuse sizes the tokenizer cannot take."""
    if resize:
        w, h = img.size
        s = resize / min(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        check_limit("pixels", size[0] * size[1], f"{source} resized to {size[0]}x{size[1]}")
        img = img.resize(size, Image.BICUBIC)
        w, h = img.size
        img = _center_crop(img, w - w % factor, h - h % factor)
    if crop:
        if min(img.size) < crop:
            raise DataError(
                f"{source}: {img.size[0]}x{img.size[1]} is smaller than --center-crop {crop}"
            )
        img = _center_crop(img, crop, crop)
    w, h = img.size
    if w % factor or h % factor or w == 0 or h == 0:
        raise DataError(
            f"{source}: size {w}x{h} is not divisible by the downsampling factor "
            f"{factor}; pass --resize N or --center-crop N"
        )
    return img


def _center_crop(img: Image.Image, w: int, h: int) -> Image.Image:
    left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
    return img.crop((left, top, left + w, top + h))


def _image_batches(
    args: argparse.Namespace, model: VQModel, paths: list[Path]
) -> Iterator[tuple[list[Path], torch.Tensor]]:
    """Consecutive images of one size, batched: (paths, (B,C,H,W) in [-1,1])."""
    batch_paths: list[Path] = []
    batch: list[torch.Tensor] = []
    if model.kind == "segmentation":
        raise ConfigError(
            f"{args.checkpoint} is a tokenizer of segmentation maps, not of images; "
            "encode masks with stage1_vqgan.encode_mask"
        )
    channels = model.config["in_channels"]
    for path in paths:
        img = fit_image(
            load_image(path, channels=channels),
            model.downsample_factor,
            args.resize,
            args.center_crop,
            str(path),
        )
        x = from_uint8(np.asarray(img))
        if batch and (x.shape != batch[0].shape or len(batch) == args.batch_size):
            yield batch_paths, torch.stack(batch)
            batch_paths, batch = [], []
        batch_paths.append(path)
        batch.append(x)
    yield batch_paths, torch.stack(batch)


def _load(args: argparse.Namespace) -> tuple[VQModel, str]:
    device = pick_device(args.device)
    return load_tokenizer(args.checkpoint, args.config).to(device), device


if __name__ == "__main__":
    sys.exit(main())
