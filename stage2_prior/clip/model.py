"""One CLIP model for guidance and reranking: open_clip, with weights from the shared resolver.

``--clip MODEL[:PRETRAINED]``: ``MODEL`` is an open_clip architecture (``ViT-B-32``) or a JSON
file with an open_clip model config (its stem names it); ``PRETRAINED`` is a tag (default
``openai``) resolved offline by :mod:`shared.weights`, a local weights file, or ``random``
(untrained weights: for tests and timing only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared.config import ConfigError
from shared.weights import resolve

DEFAULT = "ViT-B-32:openai"


def split_spec(spec: str) -> tuple[str, str]:
    """``"MODEL[:PRETRAINED]"`` -> (model, pretrained); Windows-style drive colons are not
    special-cased: a weights path holding ':' must be given through ``--clip-weights``."""
    model, _, pretrained = spec.partition(":")
    if not model:
        raise ConfigError(f"--clip '{spec}' names no model")
    return model, pretrained or "openai"


class ClipModel(nn.Module):
    """Frozen open_clip model: ``encode_text(list[str]) -> (N, D)``, ``encode_image(images
    (N, 3, S, S) in [0, 1]) -> (N, D)`` (``S = image_size``; normalised here)."""

    def __init__(self, model: nn.Module, tokenizer, name: str):
        super().__init__()
        self.model, self.tokenizer, self.name = model.eval().requires_grad_(False), tokenizer, name
        cfg = getattr(model.visual, "preprocess_cfg", {})
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.4815, 0.4578, 0.4082))))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.2686, 0.2613, 0.2758))))
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.mean.device)
        return self.model.encode_text(tokens).float()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Gray images (N, 1, S, S) are repeated to RGB."""
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        x = (images - self.mean[:, None, None]) / self.std[:, None, None]
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True)
        return self.model.encode_image(x).float()


def load_clip(spec: str = DEFAULT, weights: str | None = None, device="cpu") -> ClipModel:
    """The CLIP model of ``spec`` (see the module docstring); ``weights`` overrides where the
    pretrained file is looked for. Missing weights raise ``WeightsUnavailable`` naming the file."""
    import open_clip

    model, pretrained = split_spec(spec)
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"CLIP model config {path} does not exist")
        open_clip.add_model_config(path)
        model = path.stem
    if model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model '{model}' (see open_clip.list_models())")
    if pretrained == "random":
        path = None
    elif weights or Path(pretrained).is_file():
        path = Path(weights or pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP weights file {path} does not exist")
    else:
        path = resolve(f"clip:{model}:{pretrained}")
    logging.disable(logging.WARNING)  # open_clip logs "initialized randomly" for pretrained=None
    try:
        net = open_clip.create_model(model, pretrained=str(path) if path else None, device=device)
    finally:
        logging.disable(logging.NOTSET)
    return ClipModel(net, open_clip.get_tokenizer(model), f"{model}:{pretrained}").to(device)
