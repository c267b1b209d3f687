"""``twostage segment``: train a U-Net on images with masks; predict label maps for images."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segmentation.config import SegmentationConfig
from segmentation.train import MAX_LABEL_CLASSES, load_unet, train
from shared.cli import (
    action_parser,
    add_device,
    add_output_folder,
    add_train_action,
    base_config,
    input_images,
    pick_device,
    run_actions,
    training_overrides,
)
from shared.config import build_config
from shared.data import DataError, list_images, load_image, read_mask
from shared.images import from_uint8, save_png
from shared.options import positive_int
from shared.outputs import IMAGE_OUTPUT_RULE, OutputFolder, image_outputs
from stage1_vqgan import colorize_mask, confusion_matrix, segmentation_scores

PREVIEW_DIR = "preview"


def build_parser(prog: str = "twostage segment") -> argparse.ArgumentParser:
    p, sub = action_parser(prog, __doc__.splitlines()[0])
    t = add_train_action(
        sub, "train a U-Net preset (twostage info lists them) on --data with masks"
    )
    t.add_argument("--masks", help="mask folder parallel to the --data folder (data.masks)")

    s = sub.add_parser(
        "predict",
        help="write a label map (PNG of class ids) for every image",
        description=f"Write a label map (PNG of class ids) for every image; {IMAGE_OUTPUT_RULE} "
        f"(colour previews likewise under DIR/{PREVIEW_DIR}/).",
    )
    s.add_argument("--checkpoint", required=True, help="run folder or exported model folder")
    s.add_argument("--input", required=True, help="an image or a folder of images (recursive)")
    add_output_folder(s, "the label maps")
    s.add_argument("--masks", help="true masks parallel to --input: also print mIoU / accuracy")
    s.add_argument(
        "--batch-size", type=positive_int, default=8, help="images of one size per forward"
    )
    add_device(s)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage segment") -> int:
    return run_actions(build_parser, {"train": cmd_train, "predict": cmd_predict}, argv, prog)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    masks = [f"data.masks={args.masks}"] if args.masks else []
    cfg = build_config(
        SegmentationConfig,
        base_config(args, "segmentation"),
        overrides=masks + training_overrides(args),
    )
    out = train(cfg, args.output, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        print(f"run written to {out} (exported U-Net in {out / 'model' / 'unet'})")
    return 0


def mask_index(folder: Path) -> dict[str, Path]:
    """Mask files under ``folder`` by relative path without suffix (``a/b`` for ``a/b.png``)."""
    if not folder.is_dir():
        raise DataError(f"mask folder not found: {folder}")
    index: dict[str, Path] = {}
    for path in list_images(folder):
        index.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return index


def match_masks(rels: dict[Path, Path], folder: Path, num_classes: int) -> dict[Path, torch.Tensor]:
    """The true mask (H,W) long of every image (``rels``: path -> path relative to --input),
    read and checked (size, ids < ``num_classes``) before anything is written."""
    index, truth = mask_index(folder), {}
    for path, rel in rels.items():
        key = rel.with_suffix("").as_posix()
        if key not in index:
            raise DataError(f"no mask for {path} in {folder} (expected {key}.png)")
        mask = np.asarray(read_mask(index[key])).astype(np.int64)
        size = image_size(path)
        if (mask.shape[1], mask.shape[0]) != size:
            raise DataError(
                f"mask {index[key]} is {mask.shape[1]}x{mask.shape[0]}, image {path} "
                f"is {size[0]}x{size[1]}"
            )
        if int(mask.max(initial=0)) >= num_classes:
            raise DataError(
                f"mask {index[key]} holds id {int(mask.max())}; the model has {num_classes} classes"
            )
        truth[path] = torch.from_numpy(mask)
    return truth


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file as :func:`shared.data.load_image` returns it (EXIF
    rotations by 90 degrees swap them), from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _batches(
    paths: list[Path], channels: int, batch_size: int
) -> Iterator[tuple[list[Path], torch.Tensor]]:
    """Consecutive images of one size: (paths, (B,C,H,W) in [-1,1]), normalised as in
    training (uint8 / 127.5 - 1)."""
    batch_paths: list[Path] = []
    batch: list[torch.Tensor] = []
    for path in paths:
        x = from_uint8(np.asarray(load_image(path, channels)))
        if batch and (x.shape != batch[0].shape or len(batch) == batch_size):
            yield batch_paths, torch.stack(batch)
            batch_paths, batch = [], []
        batch_paths.append(path)
        batch.append(x)
    if batch:
        yield batch_paths, torch.stack(batch)


def cmd_predict(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    src, out = Path(args.input), folder.path
    paths = input_images(src)
    rels = {p: p.relative_to(src) if src.is_dir() else Path(p.name) for p in paths}
    labels = image_outputs(paths, src, out)
    previews = image_outputs(paths, src, out, PREVIEW_DIR)
    targets = [*labels.values(), *previews.values()]
    if len(set(targets)) < len(targets):
        raise DataError(
            f"{src} has a '{PREVIEW_DIR}' sub-folder, whose label maps would meet the colour "
            "previews; rename it"
        )
    folder.check(targets)
    device = pick_device(args.device)
    net = load_unet(args.checkpoint).to(device)
    n = net.num_classes
    if n > MAX_LABEL_CLASSES:
        raise DataError(
            f"the model has {n} classes; label maps hold at most {MAX_LABEL_CLASSES} (8 bit)"
        )
    truth = match_masks(rels, Path(args.masks), n) if args.masks else {}
    folder.claim(targets)
    confusion = torch.zeros(n, n, dtype=torch.long)
    for batch_paths, x in _batches(paths, net.config["in_channels"], args.batch_size):
        pred = net.predict(x.to(device)).cpu()
        for path, ids in zip(batch_paths, pred, strict=True):
            labels[path].parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ids.numpy().astype(np.uint8)).save(labels[path])
            save_png(colorize_mask(ids[None])[0], previews[path])
            if path in truth:
                confusion += confusion_matrix(ids, truth[path], n)
    print(f"wrote {len(paths)} label maps to {out} (colour previews in {out / PREVIEW_DIR})")
    if truth:
        print(json.dumps({"images": len(truth), **segmentation_scores(confusion)}))
    return 0
