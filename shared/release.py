"""Release models shipped inside the package, addressable by name wherever a checkpoint is taken.

``twostage prior sample --checkpoint fmnist-gpt ...`` reads ``shared/release/fmnist-gpt/``: the
exported model folder that ``scripts/train_release.sh`` produced. A path that exists on disk
always wins over a release name.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.checkpoint import CheckpointError

__all__ = [
    "RELEASE_DIR",
    "RELEASE_MODELS",
    "release_names",
    "release_quality",
    "resolve_checkpoint",
]

RELEASE_DIR = Path(__file__).parent / "release"
RELEASE_MODELS = {
    "fmnist-vqgan": "tokenizer: 32x32 grey Fashion-MNIST -> 8x8 codes of 512 (preset vqgan-fmnist)",
    "fmnist-gpt": "class-conditional GPT prior over fmnist-vqgan codes (preset gpt-fmnist)",
    "fmnist-adatgan": "class-conditional AdatGAN prior over fmnist-vqgan codes "
    "(preset adatgan-prior-fmnist)",
    "fmnist-dcgan": "class-conditional pixel DCGAN, 32x32 grey (preset dcgan-fmnist)",
    "fmnist-adatgan-pixel": "pixel AdatGAN, 32x32 grey (preset adatgan-fmnist)",
}


def release_names() -> tuple[str, ...]:
    return tuple(RELEASE_MODELS)


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it exists (or is no release name), else the shipped model folder."""
    given = Path(path)
    if given.exists() or str(path) not in RELEASE_MODELS:
        return given
    folder = RELEASE_DIR / str(path)
    if not folder.is_dir():
        raise CheckpointError(f"release model {path} is not in this installation ({folder})")
    return folder


def release_quality(name: str) -> dict:
    """The measured figures of a release model (``quality.json`` written by
    ``scripts/fmnist_quality.py``): {"measured": how, title: {"fid", "kid", ...}}, or {}."""
    path = RELEASE_DIR / "quality.json"
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    label = f"real Inception, {record['num']} samples vs {record['num']} test images"
    rows = record["rows"].values()
    mine = {
        r["title"]: {k: v for k, v in r.items() if k != "title"}
        for r in rows
        if r["title"].split(" ")[0].rstrip(",") == name
    }
    return {"measured": label, **mine}
