"""The base of the image datasets. Items are dicts with "image" float (C,H,W) in [-1,1], "label"
long scalar (-1 if unlabeled) and, for datasets with masks, "mask" long (H,W). Augmentation is a
pure function of (seed, epoch, index), so it does not depend on DataLoader workers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from shared.config import DataConfig


class ImageDataset(Dataset):
    """Base dataset: subclasses provide :meth:`_load`; this class resizes the shorter side to
    ``resolution``, crops to a square, flips, and builds the item dict."""

    num_classes: int = 0
    class_names: list[str] = []
    num_mask_classes: int = 0
    has_masks: bool = False

    def __init__(self, cfg: DataConfig, split: str, seed: int):
        self.resolution = cfg.resolution
        self.channels = cfg.channels
        self.random_crop = cfg.crop == "random" and split != "val"
        self.flip = cfg.flip and split != "val"
        self.split, self.seed = split, seed
        self.source, self.crop = str(cfg.source), cfg.crop

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> tuple[Image.Image, Image.Image | None, int]:
        """(image "RGB" or "L", mask "I" or None, label) for ``index`` before augmentation."""
        raise NotImplementedError

    kind = "builtin"  # "folder": the images of a folder (describe()["kind"])
    split_rule = "fixed by the dataset"  # how train and val are told apart, in words
    val_option: str | None = None  # the setting that changes the split, if any

    def class_counts(self) -> list[int] | None:
        """Images per class id in this split, or None when counting would decode them."""
        return None

    def describe(self, mask_ids: bool = True) -> dict:
        """This split in numbers, for :func:`data_summary`; ``mask_ids``: find the largest mask
        id (of every split: a folder reads its masks once per dataset object)."""
        masks = None
        if self.has_masks:
            masks = {"images": len(self), "max_id": self.num_mask_classes - 1 if mask_ids else None}
        return {
            "source": self.source,
            "kind": self.kind,
            "images": len(self),
            "split_rule": self.split_rule,
            "val_option": self.val_option,
            "resolution": self.resolution,
            "channels": self.channels,
            "crop": self.crop,
            "flip": self.flip,
            "classes": list(self.class_names) if self.num_classes else [],
            "class_counts": self.class_counts() if self.num_classes else None,
            "masks": masks,
        }

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """``key`` is an index or ``(index, epoch)``; epoch 0 for a plain index."""
        index, epoch = (key[0], key[1]) if isinstance(key, tuple | list) else (key, 0)
        index, n = int(index), len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for dataset of length {n}")
        index %= n
        rng = np.random.default_rng([self.seed, int(epoch), index])
        image, mask, label = self._load(index)
        image, mask = self._augment(image, mask, rng)
        if image.mode != ("RGB" if self.channels == 3 else "L"):
            image = image.convert("RGB" if self.channels == 3 else "L")
        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).div_(127.5).sub_(1.0)
        pixels = pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels[None]
        item = {"image": pixels.contiguous(), "label": torch.tensor(label, dtype=torch.long)}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.asarray(mask).astype(np.int64))
        return item

    def _augment(
        self, image: Image.Image, mask: Image.Image | None, rng: np.random.Generator
    ) -> tuple[Image.Image, Image.Image | None]:
        res = self.resolution
        image, mask = resize_shorter(image, mask, res)
        w, h = image.size
        u = rng.random(3)
        x, y = (int(u[0] * (w - res + 1)), int(u[1] * (h - res + 1)))
        if not self.random_crop:
            x, y = (w - res) // 2, (h - res) // 2
        if (w, h) != (res, res):
            image = image.crop((x, y, x + res, y + res))
            mask = mask.crop((x, y, x + res, y + res)) if mask is not None else None
        if self.flip and u[2] < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mask is not None else None
        return image, mask


def resize_shorter(
    image: Image.Image, mask: Image.Image | None, res: int
) -> tuple[Image.Image, Image.Image | None]:
    """Resize so the shorter side is ``res`` (bicubic for the image, nearest for the mask)."""
    w, h = image.size
    if min(w, h) == res:
        return image, mask
    scale = res / min(w, h)
    size = (max(res, round(w * scale)), max(res, round(h * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    if mask is not None:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return image, mask
