"""A folder of real photographs to try the own-images path without your own: random square
crops of the photographs bundled with scikit-image / scikit-learn, one class sub-folder per
photograph, saved as JPEG (as a camera would).

    python scripts/photo_crops.py photos/ --per-class 75 --classes brick grass coffee chelsea
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from shared.data import PHOTO_NAMES, load_photo


def write_crops(out: Path, classes: list[str], per_class: int, seed: int = 0) -> int:
    """``per_class`` crops (side 1/4 to 1/2 of the photo's shorter side, 96 px JPEGs) of each
    photograph in ``classes`` into ``out/NAME/``; returns the number of files written."""
    rng = np.random.default_rng(seed)
    for name in classes:
        photo = load_photo(name)
        h, w = photo.shape[:2]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            side = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[y : y + side, x : x + side]).resize(
                (96, 96), Image.LANCZOS
            )
            crop.save(folder / f"{name}_{i:03d}.jpg", quality=92)
    return len(classes) * per_class


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path, help="folder to create (must not exist)")
    p.add_argument("--per-class", type=int, default=75)
    p.add_argument("--classes", nargs="+", default=["brick", "grass", "coffee", "chelsea"],
                   choices=PHOTO_NAMES)  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.output.exists():
        p.error(f"{args.output} already exists")
    n = write_crops(args.output, args.classes, args.per_class, args.seed)
    print(f"wrote {n} crops of {len(args.classes)} photographs into {args.output}")


if __name__ == "__main__":
    main()
