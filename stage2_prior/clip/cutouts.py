"""Random square cutouts of an image with the notebooks' augmentations, differentiable.

Each cutout's side is ``min_side + (max_side - min_side) * u**cut_pow`` with u ~ U(0, 1)
(``max_side`` the image's short side, ``min_side = min(max_side, cut_size)``), at a uniform
position, resized to ``cut_size`` (bilinear, antialiased). Augmentations (torchvision v2, drawn
per cutout from torch's global generator): horizontal flip p 0.5, affine (30 degrees, 10 %
translation) p 0.8, perspective 0.2 p 0.4, saturation jitter 0.01 p 0.7, then Gaussian noise
with a per-cutout std ~ U(0, noise). (The notebooks also jitter hue by 0.01; torchvision's hue
op modifies views in place and cannot be differentiated, so it is left out; ``fill=None``
keeps the geometric ops off the in-place fill path, so uncovered pixels are 0.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

AUGMENT = v2.Compose(
    [
        v2.RandomHorizontalFlip(0.5),
        v2.RandomApply([v2.RandomAffine(30, translate=(0.1, 0.1), fill=None)], p=0.8),
        v2.RandomPerspective(0.2, p=0.4, fill=None),
        v2.RandomApply([v2.ColorJitter(saturation=0.01)], p=0.7),
    ]
)


class Cutouts:
    def __init__(self, cut_size: int, cut_pow: float = 1.0, augment: bool = True, noise=0.1):
        self.cut_size, self.cut_pow, self.augment, self.noise = cut_size, cut_pow, augment, noise

    def __call__(self, image: torch.Tensor, n: int) -> torch.Tensor:
        """``image (1, 3, H, W)`` in [0, 1] -> ``(n, 3, cut_size, cut_size)``."""
        h, w = image.shape[-2:]
        max_side = min(h, w)
        min_side = min(max_side, self.cut_size)
        cuts = []
        for _ in range(n):
            u = torch.rand(()).item() ** self.cut_pow
            side = int(min_side + (max_side - min_side) * u)
            y = int(torch.randint(0, h - side + 1, ()).item())
            x = int(torch.randint(0, w - side + 1, ()).item())
            cut = F.interpolate(
                image[:, :, y : y + side, x : x + side],
                size=(self.cut_size, self.cut_size),
                mode="bilinear",
                antialias=side > self.cut_size,
                align_corners=False,
            )
            cuts.append(AUGMENT(cut) if self.augment else cut)
        out = torch.cat(cuts)
        if self.augment and self.noise > 0:
            sigma = torch.rand(n, 1, 1, 1, device=out.device) * self.noise
            out = out + sigma * torch.randn_like(out)
        return out
