"""``builtin:photos``: the photographs that scikit-image and scikit-learn ship in their wheels."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from shared.config import DataConfig
from shared.data.dataset import ImageDataset, resize_shorter
from shared.data.errors import DataError

_SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "retina", "rocket",
)  # fmt: skip
_SKLEARN_PHOTOS = ("china", "flower")
PHOTO_NAMES = sorted(_SKIMAGE_PHOTOS + _SKLEARN_PHOTOS)
PHOTO_VAL_NAMES = ("coffee", "rocket")


class PhotoDataset(ImageDataset):
    """``builtin:photos``: the photographs shipped with scikit-image and scikit-learn
    (unlabeled); val = :data:`PHOTO_VAL_NAMES`, train = the rest."""

    split_rule = f"val = the photos {' and '.join(PHOTO_VAL_NAMES)}, train = the others"

    def __init__(self, cfg: DataConfig, split: str, seed: int):
        super().__init__(cfg, split, seed)
        self.names = [
            n for n in PHOTO_NAMES if split == "all" or (n in PHOTO_VAL_NAMES) == (split == "val")
        ]
        self._resized: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, index: int) -> tuple[Image.Image, None, int]:
        if index not in self._resized:
            image = Image.fromarray(load_photo(self.names[index]))
            self._resized[index] = resize_shorter(image, None, self.resolution)[0]
        return self._resized[index], None, -1


@functools.lru_cache(maxsize=len(PHOTO_NAMES))
def load_photo(name: str) -> np.ndarray:
    """One of :data:`PHOTO_NAMES` as read-only uint8 (H,W,3); grayscale photos are replicated."""
    if name in _SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        photo = load_sample_image(f"{name}.jpg")
    elif name in _SKIMAGE_PHOTOS:
        import skimage.data

        photo = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else None
        photo = getattr(skimage.data, name)() if photo is None else photo
    else:
        raise DataError(f"unknown photo '{name}'; choose one of: {', '.join(PHOTO_NAMES)}")
    photo = np.asarray(photo, dtype=np.uint8)
    photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo[..., :3]
    photo = np.ascontiguousarray(photo)
    photo.flags.writeable = False
    return photo
