"""Image datasets: folders of images (optionally with class sub-folders and segmentation masks)
and the builtins ``builtin:shapes``, ``builtin:fashion-mnist`` and ``builtin:photos``.

Items are dicts with "image" float (C,H,W) in [-1,1], "label" long scalar (-1 if unlabeled) and,
for datasets with masks, "mask" long (H,W). Augmentation is a pure function of
(seed, epoch, index), so it does not depend on DataLoader workers.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from shared.config import DataConfig
from shared.limits import check_limit
from shared.points import POINT_SOURCES, PointDataset
from shared.shapes import SHAPE_NAMES, render_shapes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
BUILTINS = (
    "builtin:shapes",
    "builtin:fashion-mnist",
    "builtin:photos",
    "builtin:swissroll",
    "builtin:gaussians",
)
SPLITS = ("train", "val", "all")
MIN_VAL_IMAGES = 8  # fewer validation images: the data summary warns
DATA_FILE = "data.json"  # in a run folder: the data summary
CLASSES_FILE = "classes.json"  # in an exported model folder: the class names of its data

SHAPES_LENGTHS = {"train": 10000, "val": 256}
SHAPES_SEEDS = {"train": 1_000_003, "val": 2_000_003}

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "TWOSTAGE_FASHION_MNIST"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# shipped models trained before class names were stored (shared/release/NAME)
RELEASE_CLASSES = {
    name: FASHION_MNIST_CLASSES for name in ("fmnist-gpt", "fmnist-adatgan", "fmnist-dcgan")
}

_SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "retina", "rocket",
)  # fmt: skip
_SKLEARN_PHOTOS = ("china", "flower")
PHOTO_NAMES = sorted(_SKIMAGE_PHOTOS + _SKLEARN_PHOTOS)
PHOTO_VAL_NAMES = ("coffee", "rocket")


class DataError(ValueError):
    """A data problem a user can fix; the message is one line."""


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


def data_summary(train: Dataset, val: Dataset | None = None, source: str | None = None) -> dict:
    """What a training run will see, from each split's :meth:`ImageDataset.describe`: image
    counts, the split rule, image size, classes ``{"id", "name", "images"}`` (images over both
    splits, None where unknown), masks, skipped files and ``warnings`` (a tiny validation split).
    ``source`` names a dataset that cannot describe itself (2-D points). JSON-serialisable;
    :func:`format_data_summary` prints it."""
    t = _describe(train, source)
    v = _describe(val, source, mask_ids=False) if val is not None else {"images": 0}
    counts = t.get("class_counts")
    if counts is not None and val is not None:
        counts = [a + b for a, b in zip(counts, v.get("class_counts") or [], strict=False)]
        counts = counts if len(counts) == len(t["classes"]) else None
    classes = t.get("classes", [])
    masks = t.get("masks")
    if masks is not None:
        masks = {"images": masks["images"] + v["images"], "max_id": masks["max_id"]}
    summary = {
        "source": t["source"],
        "kind": t["kind"],
        "train_images": t["images"],
        "val_images": v["images"],
        "split_rule": t.get("split_rule"),
        "val_option": t.get("val_option"),
        **{k: t.get(k) for k in ("resolution", "channels", "crop", "flip")},
        "classes": [
            {"id": i, "name": name, "images": counts[i] if counts else None}
            for i, name in enumerate(classes)
        ],
        "masks": masks,
        "skipped": t.get("skipped", 0),
    }
    summary["warnings"] = [w for w in (_val_warning(summary),) if w]
    return summary


def _describe(dataset: Dataset, source: str | None, mask_ids: bool = True) -> dict:
    describe = getattr(dataset, "describe", None)
    if describe is not None:
        return describe(mask_ids)
    kind = "points" if hasattr(dataset, "points") else "other"
    return {"source": source or type(dataset).__name__, "kind": kind, "images": len(dataset)}


def _val_warning(s: dict) -> str | None:
    """A one-line warning when the validation split is too small to judge a run by."""
    n_val, total = s["val_images"], s["train_images"] + s["val_images"]
    if s["kind"] == "points" or n_val >= MIN_VAL_IMAGES:
        return None
    text = (
        "no validation images: validation metrics and the overfitting check are off"
        if n_val == 0
        else f"only {n_val} validation image{'s' * (n_val > 1)}: validation metrics are noise and "
        "overfitting goes unseen"
    )
    if s["val_option"] != "data.val_fraction":
        return f"{text} ({s['split_rule']})"
    need = math.ceil(100 * MIN_VAL_IMAGES / max(total, 1)) / 100
    if need <= 0.5:
        return f"{text}; set data.val_fraction={need:g} (about {MIN_VAL_IMAGES} of {total} images)"
    return f"{text}; {total} images are too few to hold out {MIN_VAL_IMAGES}: add images"


def format_data_summary(s: dict) -> str:
    """:func:`data_summary` as the lines a training command prints first."""
    n_train, n_val = s["train_images"], s["val_images"]
    what = "2-D points" if s["kind"] == "points" else "images"
    head = f"data: {s['source']} ({s['kind']}): {n_train} training and {n_val} validation {what}"
    if s["skipped"]:
        head += f"; {s['skipped']} unreadable file{'s' * (s['skipped'] > 1)} skipped"
    lines = [head]
    if s.get("split_rule"):
        lines.append(f"  split: {s['split_rule']}")
    if s.get("resolution"):
        res, colour = s["resolution"], "RGB" if s["channels"] == 3 else "grayscale"
        crop = "random crops" if s["crop"] == "random" else "centre crops"
        flip = ", random horizontal flips" if s["flip"] else ""
        lines.append(f"  images: {res}x{res} px {colour} (data.resolution; {crop}{flip})")
    if s["kind"] != "points":
        named = [
            f"{c['id']}={c['name']}" + (f" ({c['images']})" if c["images"] is not None else "")
            for c in s["classes"]
        ]
        hint = " (one sub-folder per class gives labels)" if s["kind"] == "folder" else ""
        lines.append("  classes: " + (", ".join(named) if named else f"no labels{hint}"))
    if s["masks"]:
        m = s["masks"]
        lines.append(f"  masks: {m['images']} (ids 0..{m['max_id']})")
    lines += [f"warning: {w}" for w in s["warnings"]]
    return "\n".join(lines)


def save_class_names(folder: str | Path, names: list[str]) -> None:
    """Store the class names of a model's data (id = position) as ``classes.json`` in its
    exported ``folder``; nothing for no names."""
    if names:
        text = json.dumps({"class_names": list(names)}, indent=2, ensure_ascii=False)
        (Path(folder) / CLASSES_FILE).write_text(text + "\n", encoding="utf-8")


def load_class_names(folder: str | Path, num_classes: int) -> list[str] | None:
    """The class names stored with the model in ``folder`` (:func:`save_class_names`), the
    data summary of a run folder, or those of a shipped release model; None when the model
    has none (or they do not fit its ``num_classes``)."""
    folder = Path(folder)
    for path in (folder / CLASSES_FILE, folder / DATA_FILE):
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                names = record.get("class_names") or [c["name"] for c in record["classes"]]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if names and len(names) == num_classes and all(isinstance(n, str) for n in names):
                return list(names)
    from shared.release import RELEASE_DIR

    release = RELEASE_CLASSES.get(folder.name)
    if release and folder.resolve().parent == RELEASE_DIR.resolve():
        return list(release) if len(release) == num_classes else None
    return None


def class_id(value: str | int, names: list[str] | None, num_classes: int) -> int:
    """``--class`` as given, a class name (exact, else case-insensitive) or an id, -> the id.
    Anything else is a one-line :class:`DataError` listing the valid names with their ids."""
    text = str(value).strip()
    if names:
        if text in names:
            return names.index(text)
        folded = [i for i, n in enumerate(names) if n.casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
    if text.isdigit() and int(text) < num_classes:
        return int(text)
    if names:
        choices = "choose one of " + ", ".join(f"{i}={n}" for i, n in enumerate(names))
    else:
        choices = f"choose an id in 0..{num_classes - 1} (the model stores no class names)"
    raise DataError(f"--class {text}: {choices}")


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive, by extension, case-insensitive), sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Decode an image file to mode "RGB" (channels=3) or "L" (channels=1), honouring EXIF
    orientation; alpha is composited onto white and 16-bit data is scaled to 8 bit."""
    return _load_image(Path(path), channels)


def _load_image(path: Path, channels: int, min_side: int = 0) -> Image.Image:
    """:func:`load_image`; JPEGs may be decoded at a reduced scale whose shorter side is
    still >= ``min_side``."""
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
                return _convert(ImageOps.exif_transpose(im), channels)
    except Exception as e:
        raise DataError(f"cannot read image {path}: {_reason(e)}") from None


def _convert(im: Image.Image, channels: int) -> Image.Image:
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


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


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
            "kind": "folder" if isinstance(self, FolderDataset) else "builtin",
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
        image, mask = _resize_shorter(image, mask, res)
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


def _resize_shorter(
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


class FolderDataset(ImageDataset):
    """Images under a folder (recursive). Class labels come from sub-folder names when every
    image sits in one of >= 2 immediate sub-folders. With ``cfg.masks``, ``a/b.jpg`` pairs
    with ``<masks>/a/b.png`` (any image extension) whose pixel values are class ids."""

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
            problem = _header_problem(path)
            if problem is None and self.mask_root is not None:
                problem = "no mask" if mask is None else _header_problem(mask)
            if problem is None:
                pairs.append((path, mask, rel))
            else:
                bad.append(f"{path} ({problem})")
        if bad and self.strict:
            raise DataError(f"cannot use {bad[0]}; set data.strict=false to skip such files")
        if self.strict:  # decode everything now, so a bad file stops the run before training
            for path, mask, _ in pairs:
                problem = _decode_problem(path, mask, self.channels, self.resolution)
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
        self.items = _split_items(pairs, cfg.val_fraction, split)
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
        image = _load_image(path, self.channels, self.resolution if mask_path is None else 0)
        label = self.class_names.index(rel.parts[0]) if self.num_classes else -1
        if mask_path is None:
            return image, None, label
        mask = read_mask(mask_path)
        if mask.size != image.size:
            raise DataError(f"mask {mask_path} is {mask.size}, image {path} is {image.size}")
        return image, mask, label


def _decode_problem(path: Path, mask: Path | None, channels: int, resolution: int) -> str | None:
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

    return _decode_problem_cached(stamp(path), stamp(mask), channels, resolution)


@functools.lru_cache(maxsize=1 << 16)
def _decode_problem_cached(
    image: tuple, mask: tuple | None, channels: int, resolution: int
) -> str | None:
    path = Path(image[0])
    try:
        im = _load_image(path, channels, resolution if mask is None else 0)
        if mask is not None:
            m = read_mask(Path(mask[0]))
            if m.size != im.size:
                return f"mask {mask[0]} is {m.size}, image {path} is {im.size}"
    except DataError as e:
        return str(e)
    return None


def _header_problem(path: Path) -> str | None:
    """None if PIL can open the file's header, else a short reason."""
    try:
        with Image.open(path):
            pass
    except Exception as e:
        return _reason(e)
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
        raise DataError(f"cannot read mask {path}: {_reason(e)}") from None
    if ids.ndim == 3 and (ids == ids[..., :1]).all():
        ids = ids[..., 0]
    if ids.ndim != 2:
        raise DataError(f"mask {path} must be single-channel (mode L or P)")
    return Image.fromarray(ids.astype(np.int32))


def _split_items(items: list[tuple], val_fraction: float, split: str) -> list[tuple]:
    """Assign each item (last element a relative path) to val with probability
    ``val_fraction`` by a hash of its path; with >= 2 items and val_fraction > 0, both train
    and val get at least one."""
    if split == "all":
        return items
    keys = [_path_hash(it[-1].as_posix()) for it in items]
    val = {i for i, k in enumerate(keys) if k < val_fraction}
    if len(items) >= 2 and val_fraction > 0:
        order = sorted(range(len(items)), key=keys.__getitem__)
        if not val:
            val = {order[0]}
        if len(val) == len(items):
            val.discard(order[-1])
    return [it for i, it in enumerate(items) if (i in val) == (split == "val")]


def _path_hash(text: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``text`` (a path; a file name that is not
    UTF-8 reaches Python with surrogate escapes, which encode back to its own bytes)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


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
        raise DataError(f"cannot read {path}: {_reason(e)}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated")
    return array.reshape(dims)


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
            self._resized[index] = _resize_shorter(image, None, self.resolution)[0]
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
