"""Image tensors <-> 8-bit PNG files. Tensors are float in [-1, 1], (C,H,W) or (B,C,H,W)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C,H,W) in [-1,1] -> (H,W,C) uint8 with round((x+1)*127.5); C=1 gives (H,W)."""
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    """(H,W) or (H,W,C) uint8 -> (C,H,W) float in [-1,1]."""
    t = torch.from_numpy(np.array(arr)).float()
    t = t[..., None] if t.ndim == 2 else t
    return t.permute(2, 0, 1) / 127.5 - 1


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit round trip of a PNG: values snapped to the 256 levels, still in [-1,1]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def save_png(x: torch.Tensor, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write one (C,H,W) image as an 8-bit PNG, with optional text metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, str(value))
    Image.fromarray(to_uint8(x)).save(path, pnginfo=info)
    return path


def make_grid(batch: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """(B,C,H,W) -> one (C, rows*(H+pad)+pad, nrow*(W+pad)+pad) image on a white frame."""
    b, c, h, w = batch.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i, img in enumerate(batch.detach().float().cpu()):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y : y + h, x : x + w] = img
    return grid


def save_grid(batch: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save a (B,C,H,W) batch in [-1,1] as one PNG grid."""
    return save_png(make_grid(batch, nrow), path)
