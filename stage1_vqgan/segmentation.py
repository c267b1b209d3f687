"""Segmentation maps as tokenizer inputs: label maps <-> one-hot maps, decoder logits -> label maps,
colours for viewing, scores, and the mask round trip through a tokenizer of kind "segmentation".

A label map (mask) is a long tensor (B,H,W) of ids in [0, L); the tokenizer of a segmentation
map reads and writes L channels (taming-transformers' ``VQSegmentationModel``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stage1_vqgan.model import VQModel


def mask_to_onehot(mask: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(B,H,W) integer labels in [0, num_labels) -> float (B,num_labels,H,W) in {0,1}."""
    low, high = (int(mask.min()), int(mask.max())) if mask.numel() else (0, 0)
    if low < 0 or high >= num_labels:
        found = low if low < 0 else high
        raise ValueError(
            f"mask label {found} is outside [0, {num_labels - 1}] ({num_labels} labels)"
        )
    return F.one_hot(mask.long(), num_labels).permute(0, 3, 1, 2).float()


def logits_to_mask(logits: torch.Tensor) -> torch.Tensor:
    """(B,L,H,W) per-label scores (logits, probabilities or one-hot) -> (B,H,W) long labels."""
    return logits.argmax(dim=1)


def label_palette() -> torch.Tensor:
    """(256, 3) uint8 colours of labels 0..255: the PASCAL VOC palette (label 0 black, then
    distinct colours from the bits of the id)."""
    ids = torch.arange(256)
    rgb = torch.zeros(256, 3, dtype=torch.long)
    for bit in range(8):
        for c in range(3):
            rgb[:, c] |= ((ids >> (3 * bit + c)) & 1) << (7 - bit)
    return rgb.to(torch.uint8)


def colorize_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B,H,W) labels -> float images (B,3,H,W) in [-1,1], one fixed colour per label
    (:func:`label_palette`, repeating after 256 labels), for sample grids and viewing."""
    palette = label_palette().to(mask.device)
    return palette[mask.long() % 256].permute(0, 3, 1, 2).float() / 127.5 - 1


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(num_labels, num_labels) int64 pixel counts, row = target label, column = predicted label,
    of two (B,H,W) label maps; sum it over batches before :func:`segmentation_scores`."""
    flat = target.flatten().long() * num_labels + pred.flatten().long()
    return torch.bincount(flat, minlength=num_labels**2).view(num_labels, num_labels)


def segmentation_scores(confusion: torch.Tensor) -> dict[str, float]:
    """``pixel_accuracy`` and ``miou`` (IoU averaged over the labels present in the target or the
    prediction), both in [0,1], from a :func:`confusion_matrix`."""
    confusion = confusion.double()
    hits = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - hits
    present = union > 0
    return {
        "pixel_accuracy": (hits.sum() / confusion.sum().clamp(min=1)).item(),
        "miou": (hits[present] / union[present]).mean().item() if present.any() else 0.0,
    }


def encode_mask(tokenizer: VQModel, mask: torch.Tensor) -> torch.Tensor:
    """(B,H,W) labels, H and W divisible by ``tokenizer.downsample_factor`` -> code indices
    (B, H/f, W/f) int64, with a tokenizer of kind "segmentation" (on the mask's device)."""
    _check_kind(tokenizer)
    return tokenizer.encode(mask_to_onehot(mask, tokenizer.config["in_channels"]))


def decode_mask(tokenizer: VQModel, indices: torch.Tensor) -> torch.Tensor:
    """(B,h,w) code indices -> (B, h*f, w*f) long labels, with a tokenizer of kind
    "segmentation"."""
    _check_kind(tokenizer)
    return logits_to_mask(tokenizer.decode(indices))


def _check_kind(tokenizer: VQModel) -> None:
    kind = getattr(tokenizer, "kind", "image")
    if kind != "segmentation":
        raise ValueError(f"this tokenizer encodes {kind}s, not segmentation maps")
