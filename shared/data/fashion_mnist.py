"""``builtin:fashion-mnist``: the real 28x28 images of Fashion-MNIST from Debian's
``dataset-fashion-mnist`` files, a torchvision root, or a torchvision download."""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import DataConfig
from shared.data.dataset import ImageDataset
from shared.data.decode import reason
from shared.data.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "TWOSTAGE_FASHION_MNIST"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


class FashionMNISTDataset(ImageDataset):
    """``builtin:fashion-mnist``: train = the 60k training set, val = the 10k test set."""

    class_names = list(FASHION_MNIST_CLASSES)
    num_classes = len(FASHION_MNIST_CLASSES)
    split_rule = "train = the training set, val = the test set"

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.num_classes).tolist()

    def __init__(self, cfg: DataConfig, split: str, seed: int):
        super().__init__(cfg, split, seed)
        raw = _fashion_mnist_dir()
        prefixes = {"train": ["train"], "val": ["t10k"], "all": ["train", "t10k"]}[split]
        images = [_read_idx(_find_idx(raw, f"{p}-images-idx3-ubyte")) for p in prefixes]
        labels = [_read_idx(_find_idx(raw, f"{p}-labels-idx1-ubyte")) for p in prefixes]
        self.images = np.concatenate(images) if len(images) > 1 else images[0]
        self.labels = np.concatenate(labels) if len(labels) > 1 else labels[0]
        if self.images.ndim != 3 or len(self.images) != len(self.labels):
            raise DataError(f"Fashion-MNIST files in {raw} are inconsistent")

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index: int) -> tuple[Image.Image, None, int]:
        return Image.fromarray(self.images[index]), None, int(self.labels[index])


def _fashion_mnist_dir() -> Path:
    """The folder holding the Fashion-MNIST IDX files (Debian package, $TWOSTAGE_FASHION_MNIST,
    or a torchvision download into ~/.cache/twostage/fashion-mnist)."""
    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return FASHION_MNIST_DIR
    if os.environ.get(FASHION_MNIST_ENV):
        raw = Path(os.environ[FASHION_MNIST_ENV]).expanduser() / "FashionMNIST" / "raw"
        if raw.is_dir():
            return raw
        raise DataError(f"${FASHION_MNIST_ENV}: no folder {raw}")
    root = Path("~/.cache/twostage/fashion-mnist").expanduser()
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception:
        raise DataError(
            "Fashion-MNIST not found: run `apt-get install dataset-fashion-mnist` or set "
            f"{FASHION_MNIST_ENV} to a torchvision root containing FashionMNIST/raw"
        ) from None
    return root / "FashionMNIST" / "raw"


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"Fashion-MNIST file {stem}[.gz] missing in {folder}")


@functools.lru_cache(maxsize=8)
def _read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file (optionally gzipped) as a read-only array."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {reason(e)}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated")
    return array.reshape(dims)
