"""The dataset a ``data`` config names: a folder or one of the builtins."""

from __future__ import annotations

from shared.config import DataConfig
from shared.data.dataset import ImageDataset
from shared.data.errors import DataError
from shared.data.fashion_mnist import FashionMNISTDataset
from shared.data.folders import FolderDataset
from shared.data.photos import PhotoDataset
from shared.data.points import POINT_SOURCES, PointDataset
from shared.data.shapes import ShapesDataset
from shared.data.splits import SPLITS

BUILTINS = (
    "builtin:shapes",
    "builtin:fashion-mnist",
    "builtin:photos",
    "builtin:swissroll",
    "builtin:gaussians",
)


def build_dataset(cfg: DataConfig, split: str = "train", seed: int = 0) -> ImageDataset:
    """The dataset described by ``cfg`` for ``split`` ("train", "val" or "all"); ``seed`` drives
    the augmentation (random crop, flip). The 2-D toy sources give a :class:`PointDataset`
    instead. Raises :class:`DataError` on user mistakes."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    if cfg.channels not in (1, 3):
        raise DataError(f"data.channels must be 1 or 3, got {cfg.channels}")
    if cfg.resolution < 1:
        raise DataError(f"data.resolution must be positive, got {cfg.resolution}")
    if not 0.0 <= cfg.val_fraction <= 1.0:
        raise DataError(f"data.val_fraction must be in [0, 1], got {cfg.val_fraction}")
    source = str(cfg.source)
    if source.startswith("builtin:"):
        if cfg.masks:
            raise DataError(f"data.masks only applies to folder sources, not {source}")
        builders = {
            "builtin:shapes": ShapesDataset,
            "builtin:fashion-mnist": FashionMNISTDataset,
            "builtin:photos": PhotoDataset,
        }
        if source in POINT_SOURCES:
            return PointDataset(source, split)
        if source not in builders:
            raise DataError(f"unknown dataset '{source}'; builtins: {', '.join(BUILTINS)}")
        return builders[source](cfg, split, seed)
    return FolderDataset(cfg, split, seed)
