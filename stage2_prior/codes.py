"""Code grids for prior training: images (and their condition maps) encoded once by the stage-1
tokenizers and cached on disk, keyed by the tokenizers' weights and the data, so later runs reuse
them and a changed tokenizer rebuilds them; plus the dataset of random window crops.

A cache folder is written whole (into a hidden sibling, then renamed), so concurrent runs never
read a partial one; its ``meta.json`` holds the key and the SHA-256 of every array. Reading checks
the hashes, the shapes and that every code lies in the tokenizer's vocabulary: a damaged or
tampered folder is encoded again, with a warning. Several processes share the encoding and the
main process writes the one folder, identical to a single process's. Extraction leaves the
global random state untouched, so a run trains identically on a cold or a warm cache."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from shared.config import DataConfig
from shared.data import DataError, ImageDataset, build_dataset
from stage1_vqgan import VQModel
from stage2_prior.gpt import coord_tokens

CACHE_ENV = "TWOSTAGE_CACHE"
FORMAT_VERSION = 2  # 2: meta.json = {"key", "sha256"}; arrays checked when read
ARRAYS = ("codes", "labels", "cond")


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


def tokenizer_identity(tokenizer: VQModel, cond_tokenizer: VQModel | None = None) -> dict:
    """The fingerprints that enter the cache key: ``{"tokenizer", "cond_tokenizer"}``."""
    return {"tokenizer": fingerprint(tokenizer), "cond_tokenizer": fingerprint(cond_tokenizer)}


def data_fingerprint(cfg: DataConfig, dataset: ImageDataset) -> dict:
    """What identifies the images: the source (for folders: every file's path, size and
    modification time) and the settings that change pixels. Paths enter as their bytes, so a
    file name that is not UTF-8 is as good as any."""
    ident = {k: getattr(cfg, k) for k in ("source", "resolution", "channels", "masks")}
    ident["val_fraction"] = cfg.val_fraction
    items = getattr(dataset, "items", None)
    if items is not None:
        h = hashlib.sha256()
        for entry in items:
            for p in entry[:2]:
                if p is not None:
                    st = Path(p).stat()
                    h.update(os.fsencode(Path(p).resolve()))
                    h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
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


@dataclass
class Expected:
    """What a cached :class:`CodeSet` must look like to be used."""

    count: int  # grids (images, twice when mirrored)
    grid: tuple[int, int] | None  # (H, W) of the code grids, None if unknown
    n_codes: int  # codes lie in [0, n_codes)
    num_classes: int  # labels lie in [0, num_classes) when > 0
    cond: bool  # condition grids present
    n_cond_codes: int | None  # condition codes lie in [0, n_cond_codes); None: only >= 0


class CacheError(ValueError):
    """A code cache folder that cannot be used (the message says why)."""


def load_code_set(folder: Path, key: dict | None = None, expected: Expected | None = None):
    """The :class:`CodeSet` cached in ``folder``. With ``key``/``expected``, raises
    :class:`CacheError` unless the folder holds exactly that key, arrays whose hashes match
    ``meta.json`` and codes that fit ``expected``. Arrays never load pickled objects."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        hashes = meta["sha256"]
        if not isinstance(hashes, dict):
            raise TypeError("sha256 is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CacheError(f"unreadable meta.json ({type(e).__name__})") from None
    if key is not None and meta.get("key") != _jsonable(key):
        raise CacheError("meta.json holds another key")
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        if name not in hashes and not path.exists():
            continue
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise CacheError(f"{path.name}: {e.strerror or type(e).__name__}") from None
        if hashlib.sha256(raw).hexdigest() != hashes.get(name):
            raise CacheError(f"{path.name} does not match its hash in meta.json")
        try:
            arrays[name] = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise CacheError(f"{path.name}: {e}") from None
    if "codes" not in arrays or "labels" not in arrays:
        raise CacheError("codes.npy or labels.npy is missing")
    code_set = CodeSet(arrays["codes"], arrays["labels"], arrays.get("cond"))
    if expected is not None:
        problem = check_code_set(code_set, expected)
        if problem:
            raise CacheError(problem)
    return code_set


def check_code_set(code_set: CodeSet, expected: Expected) -> str | None:
    """Why ``code_set`` does not fit ``expected`` (None if it does)."""
    codes, labels, cond = code_set.codes, code_set.labels, code_set.cond
    grid = expected.grid
    shape = (expected.count, *grid) if grid else None
    if codes.ndim != 3 or codes.dtype.kind not in "iu" or (shape and codes.shape != shape):
        want = f"{shape}" if shape else f"({expected.count}, H, W)"
        return f"codes have shape {codes.shape} ({codes.dtype}), expected {want} integers"
    if len(codes) != expected.count:
        return f"{len(codes)} code grids, expected {expected.count}"
    if codes.size and (codes.min() < 0 or codes.max() >= expected.n_codes):
        return (
            f"codes range over [{codes.min()}, {codes.max()}], outside the tokenizer's "
            f"vocabulary of {expected.n_codes}"
        )
    if labels.shape != (expected.count,) or labels.dtype.kind not in "iu":
        return f"labels have shape {labels.shape} ({labels.dtype}), expected ({expected.count},)"
    k = expected.num_classes  # labels only matter (as class ids) for labelled data
    if k and labels.size and (labels.min() < 0 or labels.max() >= k):
        return f"labels range over [{labels.min()}, {labels.max()}], the data has {k} classes"
    if expected.cond != (cond is not None):
        return "condition codes are " + ("missing" if expected.cond else "unexpected")
    if cond is not None:
        if cond.shape != codes.shape or cond.dtype.kind not in "iu":
            return f"condition codes have shape {cond.shape}, expected {codes.shape}"
        top = expected.n_cond_codes
        if cond.size and (cond.min() < 0 or (top is not None and cond.max() >= top)):
            return f"condition codes range over [{cond.min()}, {cond.max()}], vocabulary {top}"
    return None


@contextmanager
def rng_untouched(device: str | torch.device = "cpu") -> Iterator[None]:
    """The global random states (Python, NumPy, torch CPU and CUDA ``device``) are the same
    after the block as before it."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    py, npy = random.getstate(), np.random.get_state()  # noqa: NPY002 (set_seed's)
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)  # noqa: NPY002


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
    identity: dict | None = None,
    state: PartialState | None = None,
) -> tuple[CodeSet, Path]:
    """Encode ``split`` of ``data`` (centre crops at ``data.resolution``, plus mirrored copies
    when ``data.flip``) into a cached :class:`CodeSet`; returns it and its cache folder.
    ``max_images``: only the split's first N images (None: all).

    ``encode_maps(masks (B,H,W) long) -> codes (B,h,w)`` encodes the condition maps (needs a
    dataset with masks); ``cond_tokenizer`` enters the cache key and bounds the condition codes.
    ``identity`` is :func:`tokenizer_identity` of the two when the caller has it already.
    With a ``state`` of several processes, every process calls this: each encodes its share of
    the batches, the main process stores the one cache folder and the others then read it; the
    arrays are those of a single process. The global random state is left as it was: a cold
    cache and a warm one give the same run."""
    plain = dataclasses.replace(data, crop="center", flip=False)
    dataset = build_dataset(plain, split, seed=0)
    if encode_maps is not None and not dataset.has_masks:
        raise DataError(
            f"{data.source} has no segmentation masks to condition on (set data.masks=FOLDER)"
        )
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    identity = identity or tokenizer_identity(tokenizer, cond_tokenizer)
    flip = bool(data.flip) and split == "train"
    key = {
        "version": FORMAT_VERSION,
        "tokenizer": identity["tokenizer"],
        "cond_tokenizer": identity["cond_tokenizer"] if encode_maps is not None else "none",
        "data": data_fingerprint(plain, dataset),
        "split": split,
        "images": n,
        "flip": flip,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    f = tokenizer.downsample_factor
    job = _Job(
        tokenizer,
        dataset,
        n,
        flip,
        encode_maps,
        batch_size,
        device,
        progress,
        Path(cache_dir or default_cache_dir()) / digest[:20],
        key,
        Expected(
            count=n * (2 if flip else 1),
            grid=(plain.resolution // f,) * 2 if plain.resolution % f == 0 else None,
            n_codes=tokenizer.n_embed,
            num_classes=dataset.num_classes,
            cond=encode_maps is not None,
            n_cond_codes=cond_tokenizer.n_embed if cond_tokenizer is not None else None,
        ),
    )
    if state is None or state.num_processes == 1:
        return _extract_alone(job), job.folder
    return _extract_sharded(job, state), job.folder


@dataclass
class _Job:
    """One extraction: the first ``n`` images of ``dataset`` and the cache folder they go to."""

    tokenizer: VQModel
    dataset: ImageDataset
    n: int
    flip: bool
    encode_maps: Callable[[torch.Tensor], torch.Tensor] | None
    batch_size: int
    device: str | torch.device
    progress: bool
    folder: Path
    key: dict
    expected: Expected

    def lookup(self) -> tuple[CodeSet | None, bool]:
        """The cached set (None when absent or unusable, with a warning) and whether the
        folder is there but damaged."""
        if not self.folder.exists():
            return None, False
        try:
            return load_code_set(self.folder, self.key, self.expected), False
        except CacheError as e:
            warnings.warn(
                f"code cache {self.folder} is unusable ({e}); encoding again", stacklevel=4
            )
            return None, True

    def encode(self, indices: range) -> CodeSet | None:
        """Codes of the images ``indices`` (None if there are none), leaving the global random
        state untouched."""
        if not len(indices):
            return None
        with rng_untouched(self.device):
            return _encode(
                self.tokenizer,
                Subset(self.dataset, indices),
                self.flip,
                self.encode_maps,
                self.batch_size,
                self.device,
                self.progress,
            )

    def store(self, code_set: CodeSet, replace: bool) -> CodeSet:
        return _store(code_set, self.folder, self.key, self.expected, replace=replace)


def _extract_alone(job: _Job) -> CodeSet:
    """The cached set, or all of it encoded by this process and stored."""
    found, damaged = job.lookup()
    if found is not None:
        return found
    return job.store(_concat([job.encode(range(job.n))]), damaged)


def _extract_sharded(job: _Job, state: PartialState) -> CodeSet:
    """The main process looks the set up; on a miss every process encodes its share and the
    main process stores the gathered parts, which the others then read from disk."""
    main = state.is_main_process
    found, damaged = job.lookup() if main else (None, False)
    missing = [found is None]
    torch.distributed.broadcast_object_list(missing, src=0)
    if missing[0]:
        share = _share(job.n, job.batch_size, state.num_processes, state.process_index)
        parts = [None] * state.num_processes if main else None
        torch.distributed.gather_object(job.encode(share), parts, dst=0)
        if main:
            found = job.store(_concat(parts), damaged)
    state.wait_for_everyone()
    return found if main else _extract_alone(job)


def _share(n: int, batch_size: int, processes: int, index: int) -> range:
    """The images process ``index`` of ``processes`` encodes: a contiguous run of whole
    batches, so each batch (and its mirror images) is the one a single process encodes."""
    batches = -(-n // batch_size)
    first, end = batches * index // processes, batches * (index + 1) // processes
    return range(min(first * batch_size, n), min(end * batch_size, n))


def _concat(parts: list[CodeSet | None]) -> CodeSet:
    """The parts (None: empty) one after the other."""
    parts = [p for p in parts if p is not None]
    conds = [p.cond for p in parts if p.cond is not None]
    return CodeSet(
        np.concatenate([p.codes for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate(conds) if conds else None,
    )


def _encode(tokenizer, images, flip, encode_maps, batch_size, device, progress) -> CodeSet:
    """Codes of ``images`` in order, each batch followed by its mirror images when ``flip``;
    the tokenizer in eval mode, the loader with its own generator."""
    codes, conds, labels = [], [], []
    loader = DataLoader(
        images,
        batch_size=batch_size,
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
    )
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        for batch in tqdm(
            loader, desc=f"encode {images.dataset.split}", disable=not progress, dynamic_ncols=True
        ):
            for mirror in [False, True] if flip else [False]:
                x = batch["image"].to(device)
                x = x.flip(-1) if mirror else x
                codes.append(tokenizer.encode(x).cpu().numpy())
                labels.append(batch["label"].numpy())
                if encode_maps is not None:
                    m = batch["mask"].to(device)
                    conds.append(encode_maps(m.flip(-1) if mirror else m).cpu().numpy())
    finally:
        tokenizer.train(was_training)
    return CodeSet(
        np.concatenate(codes).astype(np.int32),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(conds).astype(np.int32) if conds else None,
    )


def _jsonable(key: dict) -> dict:
    return json.loads(json.dumps(key, default=str))


def _store(
    code_set: CodeSet, folder: Path, key: dict, expected: Expected, replace: bool = False
) -> CodeSet:
    """Write ``code_set`` into a hidden sibling, then rename it to ``folder``: a cache folder
    is complete or absent, whatever runs at the same time. ``replace`` first moves a damaged
    ``folder`` aside. When another process got there first, its (checked) codes are returned,
    so concurrent runs train on the same codes."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{folder.name}_", dir=folder.parent))
    try:
        hashes = {}
        for name in ARRAYS:
            array = getattr(code_set, name)
            if array is not None:
                buf = io.BytesIO()
                np.save(buf, array, allow_pickle=False)
                (tmp / f"{name}.npy").write_bytes(buf.getvalue())
                hashes[name] = hashlib.sha256(buf.getvalue()).hexdigest()
        meta = {"key": _jsonable(key), "sha256": hashes}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if replace:
            _discard(folder)
        try:
            os.replace(tmp, folder)
            return code_set
        except OSError:  # another process wrote it first: use theirs if it is good
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        return load_code_set(folder, key, expected)
    except CacheError:
        return code_set


def _discard(folder: Path) -> None:
    """Move ``folder`` out of the way (atomically), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".old_{folder.name}_", dir=folder.parent))
    with contextlib.suppress(OSError):  # gone already: another process replaced it
        os.replace(folder, trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)


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
