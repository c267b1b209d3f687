"""FD-FMNIST: the Frechet distance between image sets in the 128-d penultimate feature space of a
small Fashion-MNIST classifier. It is our stand-in where Inception weights are absent; it is not
FID and its values are not comparable with FID. Like FID it is biased upwards for small sets:
compare only values computed from the same numbers of images.

Images are float tensors in [-1, 1], (B, C, H, W) with C = 1 or 3 and any H, W.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from torch import nn

from shared.metrics import FrechetDistance

FEATURE_DIM = 128
INPUT_SIZE = 28
WIDTHS = (16, 32, 64)
WEIGHTS_NAME = "fmnist_classifier.safetensors"
TRAIN_COMMAND = "python scripts/train_fmnist_classifier.py"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FashionMNISTClassifier(nn.Module):
    """Three conv blocks of WIDTHS channels (28 -> 14 -> 7 -> 3 pixels), a 128-d feature layer
    (linear, BatchNorm, ReLU) and a 10-way linear head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.body = nn.Sequential(_block(1, w1), _block(w1, w2), _block(w2, w3), nn.Flatten())
        self.embed = nn.Sequential(
            nn.Linear(w3 * 3 * 3, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, num_classes))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) in [-1, 1] -> (B, 1, 28, 28) gray, resized bilinearly with antialias."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1|3, H, W), got shape {tuple(images.shape)}")
        x = images.float().mean(1, keepdim=True)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            size = (INPUT_SIZE, INPUT_SIZE)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 128), non-negative."""
        return self.embed(self.body(self.prepare(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 10)."""
        return self.head(self.features(images))


def _weights_bytes(path: str | Path | None) -> tuple[bytes, str]:
    res = resources.files("shared") / "assets" / WEIGHTS_NAME if path is None else Path(path)
    if not res.is_file():
        raise FileNotFoundError(
            f"FD-FMNIST classifier weights not found at {res}; create them with `{TRAIN_COMMAND}`"
        )
    return res.read_bytes(), str(res)


def load_fmnist_classifier(path: str | Path | None = None) -> FashionMNISTClassifier:
    """The trained classifier (committed weights by default, or ``path``), in eval mode and
    frozen, on the CPU."""
    data, where = _weights_bytes(path)
    model = FashionMNISTClassifier()
    try:
        model.load_state_dict(load_safetensors(data))
    except Exception as e:
        reason = " ".join(str(e).split())
        raise ValueError(f"{where} does not hold FD-FMNIST classifier weights: {reason}") from None
    return model.eval().requires_grad_(False)


def fmnist_feature_fn(
    device: str | torch.device = "cpu", batch_size: int = 256
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function images (B, C, H, W) in [-1, 1] -> FD-FMNIST features (B, 128) float32 on
    ``device``, evaluated in chunks of ``batch_size`` without gradients."""
    model = load_fmnist_classifier().to(device)

    @torch.no_grad()
    def feature_fn(images: torch.Tensor) -> torch.Tensor:
        chunks = images.split(batch_size)
        return torch.cat([model.features(c.to(device)) for c in chunks])

    return feature_fn


def fd_fmnist(
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> float:
    """FD-FMNIST between two image sets (N, C, H, W) in [-1, 1] (N >= 2 each); ``device``
    defaults to that of ``real_images``."""
    distance = FrechetDistance(fmnist_feature_fn(device or real_images.device, batch_size))
    distance.update(real_images, real=True)
    distance.update(fake_images, real=False)
    return distance.compute()
