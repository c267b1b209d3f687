"""``builtin:shapes``: procedural toy data, 1-3 bright shapes of one class on a muted, textured
background, with their segmentation masks."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from shared.config import DataConfig
from shared.data.dataset import ImageDataset

SHAPE_NAMES = ["circle", "square", "triangle", "cross"]
SUPERSAMPLE = 4
SHAPES_LENGTHS = {"train": 10000, "val": 256}
SHAPES_SEEDS = {"train": 1_000_003, "val": 2_000_003}


def render_shapes(rng: np.random.Generator, resolution: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One sample: image uint8 (H,W,3), mask uint8 (H,W) with 0 = background and
    label + 1 under the shapes, and the class id label in [0, 4). H = W = resolution."""
    label = int(rng.integers(len(SHAPE_NAMES)))
    background = _background(rng, resolution)
    big = resolution * SUPERSAMPLE
    paint = Image.new("RGB", (big, big))
    cover = Image.new("L", (big, big))
    draw_paint, draw_cover = ImageDraw.Draw(paint), ImageDraw.Draw(cover)
    for _ in range(int(rng.integers(1, 4))):
        size = rng.uniform(0.15, 0.45) * big
        cx, cy = rng.uniform(size / 2, big - size / 2, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        colour = _bright_colour(rng)
        if label == 0:
            box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
            draw_paint.ellipse(box, fill=colour)
            draw_cover.ellipse(box, fill=255)
        else:
            points = _polygon(label, cx, cy, size, angle)
            draw_paint.polygon(points, fill=colour)
            draw_cover.polygon(points, fill=255)
    paint_small = np.asarray(paint.reduce(SUPERSAMPLE), dtype=np.float32)
    alpha = np.asarray(cover.reduce(SUPERSAMPLE), dtype=np.float32)[..., None] / 255.0
    image = background * (1.0 - alpha) + paint_small
    mask = np.where(alpha[..., 0] >= 0.5, label + 1, 0).astype(np.uint8)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask, label


def _polygon(label: int, cx: float, cy: float, size: float, angle: float) -> list[tuple]:
    """Vertices of a square (1), equilateral triangle (2) or plus-shaped cross (3) of extent
    ``size`` around (cx, cy), rotated by ``angle`` radians."""
    if label == 1:
        pts = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    elif label == 2:
        pts = [(math.cos(a) * 0.55, math.sin(a) * 0.55) for a in (-math.pi / 2, 0.52, 2.62)]
    else:
        a, b = 0.5, 0.17
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b)]
        pts += [(b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    c, s = math.cos(angle) * size, math.sin(angle) * size
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _bright_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.65, 1.0), rng.uniform(0.85, 1.0)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.25, 0.65)
    return 255.0 * np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _background(rng: np.random.Generator, resolution: int) -> np.ndarray:
    """Float32 (H,W,3) in [0,255]: a gradient between two muted colours plus stripes or
    low-frequency noise."""
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    y, x = np.meshgrid(coords, coords, indexing="ij")
    phi = rng.uniform(0, 2 * math.pi)
    t = (np.cos(phi) * (x - 0.5) + np.sin(phi) * (y - 0.5)) / math.sqrt(2) + 0.5
    image = _muted_colour(rng) * (1 - t[..., None]) + _muted_colour(rng) * t[..., None]
    if rng.random() < 0.5:
        psi, freq = rng.uniform(0, math.pi), rng.uniform(2, 7)
        wave = np.sin(2 * math.pi * (freq * (np.cos(psi) * x + np.sin(psi) * y) + rng.random()))
        texture = rng.uniform(8, 22) * wave
    else:
        grid = int(rng.integers(3, 7))
        small = Image.fromarray(rng.uniform(0, 255, (grid, grid)).astype(np.float32))
        noise = np.asarray(small.resize((resolution, resolution), Image.Resampling.BICUBIC))
        texture = rng.uniform(0.08, 0.2) * (noise - 127.5)
    return np.clip(image + texture[..., None], 0, 255)


class ShapesDataset(ImageDataset):
    """``builtin:shapes``: generated on the fly, deterministic by (split, index); "all" is train
    followed by val. Always has masks (0 background, class id + 1 under shapes)."""

    class_names = list(SHAPE_NAMES)
    num_classes = len(SHAPE_NAMES)
    num_mask_classes = len(SHAPE_NAMES) + 1
    has_masks = True
    split_rule = (
        f"generated: a fixed train set of {SHAPES_LENGTHS['train']} and val set of "
        f"{SHAPES_LENGTHS['val']}"
    )

    def __init__(self, cfg: DataConfig, split: str, seed: int):
        super().__init__(cfg, split, seed)
        parts = ("train", "val") if split == "all" else (split,)
        self.parts = [(SHAPES_SEEDS[p], SHAPES_LENGTHS[p]) for p in parts]

    def __len__(self) -> int:
        return sum(n for _, n in self.parts)

    def _load(self, index: int) -> tuple[Image.Image, Image.Image, int]:
        part_seed, n = self.parts[0]
        if index >= n:
            part_seed, index = self.parts[1][0], index - n
        rng = np.random.default_rng([part_seed, index])
        image, mask, label = render_shapes(rng, self.resolution)
        return Image.fromarray(image), Image.fromarray(mask.astype(np.int32)), label
