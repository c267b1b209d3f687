"""Code-index files: ``CODES.npy`` (N x h x w int64 indices into a tokenizer's codebook) with
``CODES.files.txt`` (the source image of each, one path a line), as ``twostage vqgan encode``
writes them and ``vqgan decode`` and ``prior nll`` read them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.data import DataError
from shared.errors import first_line


def write_codes(out: Path, codes: np.ndarray, names: list[str]) -> None:
    """``out`` (.npy of ``codes``) and ``out.files.txt`` (one source path a line, as the file
    system spells it, so any file name fits): both complete or neither, each written to a
    temporary file and renamed into place."""
    listing = b"".join(os.fsencode(n) + b"\n" for n in names)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = out.with_suffix(".files.txt")
    temps = [out.with_name(f".{out.name}.tmp"), files.with_name(f".{files.name}.tmp")]
    try:
        with open(temps[0], "wb") as f:
            np.save(f, codes)
        temps[1].write_bytes(listing)
        os.replace(temps[0], out)
        os.replace(temps[1], files)
    finally:
        for t in temps:
            t.unlink(missing_ok=True)


def read_codes(path: str | Path, n_embed: int) -> np.ndarray:
    """A (N, h, w) int64 array of code indices from a .npy file, validated against the codebook."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"codes file not found: {path}")
    try:
        codes = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path} is not a .npy array ({first_line(e)})") from None
    if codes.ndim == 2:
        codes = codes[None]
    if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer):
        raise DataError(
            f"{path}: expected integer codes of shape N x h x w, got {codes.dtype} {codes.shape}"
        )
    if codes.size and (codes.min() < 0 or codes.max() >= n_embed):
        raise DataError(
            f"{path}: code values must lie in [0, {n_embed - 1}], found "
            f"[{codes.min()}, {codes.max()}]"
        )
    return codes.astype(np.int64)
