"""Code grids for prior training: images (and their condition maps) encoded once by the stage-1
tokenizers and cached on disk, keyed by the tokenizers' weights and the data, so later runs reuse
them and a changed tokenizer rebuilds them; plus the dataset of random window crops."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from shared.config import DataConfig
from shared.data import DataError, ImageDataset, build_dataset
from stage1_vqgan.model import VQModel
from stage2_prior.gpt import coord_tokens

CACHE_ENV = "TWOSTAGE_CACHE"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "twostage") / "codes"


def fingerprint(model: torch.nn.Module | None) -> str:
    """A hash of a network's configuration and weights ("none" for None)."""
    if model is None:
        return "none"
    h = hashlib.sha256(json.dumps(getattr(model, "config", {}), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(cfg: DataConfig, dataset: ImageDataset) -> dict:
    """What identifies the images: the source (for folders: every file's path, size and
    modification time) and the settings that change pixels."""
    ident = {k: getattr(cfg, k) for k in ("source", "resolution", "channels", "masks")}
    ident["val_fraction"] = cfg.val_fraction
    items = getattr(dataset, "items", None)
    if items is not None:
        h = hashlib.sha256()
        for entry in items:
            for p in entry[:2]:
                if p is not None:
                    st = Path(p).stat()
                    h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        ident["files"] = h.hexdigest()[:16]
    return ident


@dataclass
class CodeSet:
    """codes (N,H,W) and labels (N,) of the images; cond (N,H,W) codes of their maps or None."""

    codes: np.ndarray
    labels: np.ndarray
    cond: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.codes)


def load_code_set(folder: Path) -> CodeSet:
    cond = folder / "cond.npy"
    return CodeSet(
        np.load(folder / "codes.npy"),
        np.load(folder / "labels.npy"),
        np.load(cond) if cond.is_file() else None,
    )


@torch.no_grad()
def extract_codes(
    tokenizer: VQModel,
    data: DataConfig,
    split: str,
    encode_maps=None,
    cond_tokenizer: VQModel | None = None,
    max_images: int | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[CodeSet, Path]:
    """Encode ``split`` of ``data`` (centre crops at ``data.resolution``, plus mirrored copies
    when ``data.flip``) into a cached :class:`CodeSet`; returns it and its cache folder.

    ``encode_maps(masks (B,H,W) long) -> codes (B,h,w)`` encodes the condition maps (needs a
    dataset with masks); ``cond_tokenizer`` only enters the cache key."""
    plain = dataclasses.replace(data, crop="center", flip=False)
    dataset = build_dataset(plain, split, seed=0)
    if encode_maps is not None and not dataset.has_masks:
        raise DataError(
            f"{data.source} has no segmentation masks to condition on (set data.masks=FOLDER)"
        )
    n = len(dataset) if max_images is None or split != "train" else min(max_images, len(dataset))
    key = {
        "version": FORMAT_VERSION,
        "tokenizer": fingerprint(tokenizer),
        "cond_tokenizer": fingerprint(cond_tokenizer) if encode_maps is not None else "none",
        "data": data_fingerprint(plain, dataset),
        "split": split,
        "images": n,
        "flip": bool(data.flip) and split == "train",
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    folder = Path(cache_dir or default_cache_dir()) / digest[:20]
    if (folder / "meta.json").is_file():
        return load_code_set(folder), folder
    codes, conds, labels = [], [], []
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, num_workers=0)
    for batch in tqdm(loader, desc=f"encode {split}", disable=not progress, dynamic_ncols=True):
        views = [False, True] if key["flip"] else [False]
        for flip in views:
            x = batch["image"].to(device)
            x = x.flip(-1) if flip else x
            codes.append(tokenizer.encode(x).cpu().numpy())
            labels.append(batch["label"].numpy())
            if encode_maps is not None:
                m = batch["mask"].to(device)
                conds.append(encode_maps(m.flip(-1) if flip else m).cpu().numpy())
    code_set = CodeSet(
        np.concatenate(codes).astype(np.int32),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(conds).astype(np.int32) if conds else None,
    )
    _write_code_set(code_set, folder, key)
    return code_set, folder


def _write_code_set(code_set: CodeSet, folder: Path, key: dict) -> None:
    """Write into a hidden sibling, then rename: a cache folder is complete or absent."""
    tmp = folder.with_name(f".tmp_{folder.name}_{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "codes.npy", code_set.codes)
    np.save(tmp / "labels.npy", code_set.labels)
    if code_set.cond is not None:
        np.save(tmp / "cond.npy", code_set.cond)
    (tmp / "meta.json").write_text(json.dumps(key, indent=2, default=str))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)


class CodeWindows(Dataset):
    """Windows of a :class:`CodeSet`: random crops of the code grid (centre crops when not
    ``random_crop``) with the matching crop of the condition grid, or its coordinate tokens.

    Items: "codes" (h,w) long, "label" long, and "cond" (h,w) long for spatial/coord."""

    def __init__(
        self,
        code_set: CodeSet,
        window: tuple[int, int],
        random_crop: bool,
        seed: int = 0,
        coord_vocab: int = 0,
        coord_factor: int = 1,
    ):
        self.set, self.window, self.random_crop = code_set, tuple(window), random_crop
        self.seed, self.coord_vocab, self.coord_factor = seed, coord_vocab, coord_factor
        H, W = code_set.codes.shape[1:]
        if window[0] > H or window[1] > W:
            raise DataError(f"window {tuple(window)} is larger than the code grid {(H, W)}")

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, epoch = (key[0], key[1]) if isinstance(key, tuple | list) else (key, 0)
        index = int(index) % len(self)
        (H, W), (h, w) = self.set.codes.shape[1:], self.window
        if self.random_crop:
            rng = np.random.default_rng([self.seed, int(epoch), index])
            top, left = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        else:
            top, left = (H - h) // 2, (W - w) // 2
        crop = (slice(top, top + h), slice(left, left + w))
        item = {
            "codes": torch.from_numpy(self.set.codes[index][crop].astype(np.int64)),
            "label": torch.tensor(int(self.set.labels[index])),
        }
        if self.set.cond is not None:
            item["cond"] = torch.from_numpy(self.set.cond[index][crop].astype(np.int64))
        elif self.coord_vocab:
            item["cond"] = coord_tokens(H, W, self.coord_vocab, self.coord_factor, top, left, h, w)
        return item
