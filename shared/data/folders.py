"""``data.source`` a folder: images found recursively, class labels from sub-folders, masks from
a parallel folder, unreadable files skipped (or refused with ``data.strict``)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import DataConfig
from shared.data.dataset import ImageDataset
from shared.data.decode import (
    IMAGE_EXTENSIONS,
    decode_problem,
    header_problem,
    list_images,
    load_image,
    read_mask,
)
from shared.data.errors import DataError
from shared.data.splits import split_items


class FolderDataset(ImageDataset):
    """Images under a folder (recursive). Class labels come from sub-folder names when every
    image sits in one of >= 2 immediate sub-folders. With ``cfg.masks``, ``a/b.jpg`` pairs
    with ``<masks>/a/b.png`` (any image extension) whose pixel values are class ids."""

    kind = "folder"

    def __init__(self, cfg: DataConfig, split: str, seed: int):
        super().__init__(cfg, split, seed)
        self.root = Path(cfg.source).expanduser()
        self.strict = cfg.strict
        if not self.root.is_dir():
            raise DataError(f"data folder not found: {cfg.source}")
        self.mask_root = Path(cfg.masks).expanduser() if cfg.masks else None
        if self.mask_root is not None and not self.mask_root.is_dir():
            raise DataError(f"mask folder not found: {cfg.masks}")
        candidates = list_images(self.root)
        if not candidates:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {cfg.source}")
        rels = [p.relative_to(self.root) for p in candidates]
        folders = sorted({r.parts[0] for r in rels})
        if all(len(r.parts) == 2 for r in rels) and len(folders) >= 2:
            self.class_names = folders
            self.num_classes = len(folders)
        masks = self._mask_index() if self.mask_root is not None else {}
        pairs, bad = [], []
        for path, rel in zip(candidates, rels, strict=True):
            mask = masks.get(rel.with_suffix("").as_posix()) if self.mask_root else None
            problem = header_problem(path)
            if problem is None and self.mask_root is not None:
                problem = "no mask" if mask is None else header_problem(mask)
            if problem is None:
                pairs.append((path, mask, rel))
            else:
                bad.append(f"{path} ({problem})")
        if bad and self.strict:
            raise DataError(f"cannot use {bad[0]}; set data.strict=false to skip such files")
        if self.strict:  # decode everything now, so a bad file stops the run before training
            for path, mask, _ in pairs:
                problem = decode_problem(path, mask, self.channels, self.resolution)
                if problem is not None:
                    raise DataError(f"{problem}; set data.strict=false to skip such files")
        if not pairs:
            raise DataError(f"no readable image in {cfg.source}, e.g. {bad[0]}")
        if bad:
            warnings.warn(
                f"skipped {len(bad)} of {len(candidates)} image files in {cfg.source}: "
                + ", ".join(bad[:3])
                + (", ..." if len(bad) > 3 else ""),
                stacklevel=3,
            )
        self.all_pairs = pairs
        self.items = split_items(pairs, cfg.val_fraction, split)
        self.has_masks = self.mask_root is not None
        self.skipped = len(bad)
        self.split_rule = (
            f"data.val_fraction={cfg.val_fraction:g} of the files go to val, chosen by a hash "
            "of each path"
        )
        self.val_option = "data.val_fraction"

    def class_counts(self) -> list[int]:
        counts = [0] * self.num_classes
        for _, _, rel in self.items:
            counts[self.class_names.index(rel.parts[0])] += 1
        return counts

    def describe(self, mask_ids: bool = True) -> dict:
        return {**super().describe(mask_ids), "skipped": self.skipped}

    def _mask_index(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for path in list_images(self.mask_root):
            index.setdefault(path.relative_to(self.mask_root).with_suffix("").as_posix(), path)
        return index

    @functools.cached_property
    def num_mask_classes(self) -> int:
        """Largest id over all masks (every split) + 1; 0 without masks. Reads each mask once;
        assign to fix it instead."""
        if not self.has_masks:
            return 0
        top = 0
        for _, mask_path, _ in self.all_pairs:
            try:
                top = max(top, int(np.asarray(read_mask(mask_path)).max(initial=0)))
            except DataError:
                continue
        return top + 1

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int) -> tuple[Image.Image, Image.Image | None, int]:
        for attempt in range(len(self.items)):
            i = (index + attempt) % len(self.items)
            try:
                return self._load_one(i)
            except DataError as e:
                if self.strict:
                    raise
                warnings.warn(f"{e}; using another image instead", stacklevel=2)
        raise DataError(f"no image of {self.root} could be decoded")

    def _load_one(self, index: int) -> tuple[Image.Image, Image.Image | None, int]:
        path, mask_path, rel = self.items[index]
        image = load_image(path, self.channels, self.resolution if mask_path is None else 0)
        label = self.class_names.index(rel.parts[0]) if self.num_classes else -1
        if mask_path is None:
            return image, None, label
        mask = read_mask(mask_path)
        if mask.size != image.size:
            raise DataError(f"mask {mask_path} is {mask.size}, image {path} is {image.size}")
        return image, mask, label
