"""Decoding image and mask files: what a folder holds, one image as PIL "RGB"/"L", one mask as
raw class ids, and whether a file decodes at all (checked once per file version)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from shared.data.errors import DataError
from shared.limits import check_limit

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive, by extension, case-insensitive), sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def load_image(path: str | Path, channels: int = 3, min_side: int = 0) -> Image.Image:
    """Decode an image file to mode "RGB" (channels=3) or "L" (channels=1), honouring EXIF
    orientation; alpha is composited onto white and 16-bit data is scaled to 8 bit. JPEGs may be
    decoded at a reduced scale whose shorter side is still >= ``min_side``."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit follows
            with Image.open(path) as im:
                if min_side and im.format == "JPEG":
                    w, h = im.size
                    scale = min_side / min(w, h)
                    im.draft(im.mode, (int(w * scale + 1), int(h * scale + 1)))
                w, h = im.size
                check_limit("pixels", w * h, f"a {w}x{h} image")  # from the header, before decoding
                im.load()
                return convert(ImageOps.exif_transpose(im), channels)
    except Exception as e:
        raise DataError(f"cannot read image {path}: {reason(e)}") from None


def convert(im: Image.Image, channels: int) -> Image.Image:
    """``im`` in mode "RGB" (channels=3) or "L": float and 16-bit data scaled to 8 bit,
    transparency composited onto white."""
    mode = "RGB" if channels == 3 else "L"
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    elif im.mode.startswith("I"):
        a = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    if im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im if im.mode == mode else im.convert(mode)


def reason(e: Exception) -> str:
    """The first line of ``e``'s message, or its type's name."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def decode_problem(path: Path, mask: Path | None, channels: int, resolution: int) -> str | None:
    """None if the image (and its mask, of the same size) decodes fully as training will
    decode it, else the one-line reason naming the file. Remembered per file, size and
    modification time, so the train and val scans of one run decode each file once."""

    def stamp(p: Path | None) -> tuple | None:
        if p is None:
            return None
        try:
            st = p.stat()
        except OSError:
            return (str(p), -1, -1)
        return (str(p), st.st_size, st.st_mtime_ns)

    return decode_problem_cached(stamp(path), stamp(mask), channels, resolution)


@functools.lru_cache(maxsize=1 << 16)
def decode_problem_cached(
    image: tuple, mask: tuple | None, channels: int, resolution: int
) -> str | None:
    path = Path(image[0])
    try:
        im = load_image(path, channels, resolution if mask is None else 0)
        if mask is not None:
            m = read_mask(Path(mask[0]))
            if m.size != im.size:
                return f"mask {mask[0]} is {m.size}, image {path} is {im.size}"
    except DataError as e:
        return str(e)
    return None


def header_problem(path: Path) -> str | None:
    """None if PIL can open the file's header, else a short reason."""
    try:
        with Image.open(path):
            pass
    except Exception as e:
        return reason(e)
    return None


def read_mask(path: Path) -> Image.Image:
    """A mask file as a mode "I" image of raw class ids (palette indices for mode P)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit follows
            with Image.open(path) as im:
                w, h = im.size
                check_limit("pixels", w * h, f"a {w}x{h} mask")  # from the header, before decoding
                ids = np.asarray(ImageOps.exif_transpose(im))
    except Exception as e:
        raise DataError(f"cannot read mask {path}: {reason(e)}") from None
    if ids.ndim == 3 and (ids == ids[..., :1]).all():
        ids = ids[..., 0]
    if ids.ndim != 2:
        raise DataError(f"mask {path} must be single-channel (mode L or P)")
    return Image.fromarray(ids.astype(np.int32))
