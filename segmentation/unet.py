"""The U-Net of the segmentation chapter: a contracting path of conv blocks and 2x2 max pools, a
bottleneck, and an expanding path of 2x2 transposed convs whose outputs are concatenated with
the skip of the same scale; a 1x1 conv gives per-pixel class logits.

Widths are ``base, 2*base, ..., 2**(levels-1)*base`` (64..512 by default), the bottleneck has
``2**levels*base`` channels at H/2**levels. With 3 input channels, 3 classes, base 64 and 4
levels it has 31,031,875 parameters."""

from __future__ import annotations

import torch
from torch import nn

from shared.limits import check_limit
from shared.pretrained import Pretrained


class ConvBlock(nn.Sequential):
    """Conv3x3(in, out) - ReLU - Conv3x3(out, out) - ReLU, padding 1 (size kept), biases on."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class DownBlock(nn.Module):
    """(B,in,H,W) -> (pooled (B,out,H/2,W/2), skip (B,out,H,W))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBlock(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv(x)
        return self.pool(skip), skip


class UpBlock(nn.Module):
    """(B,in,H,W) and skip (B,in/2,2H,2W) -> (B,out,2H,2W): upsample to in/2 channels, concat
    [x, skip] (in channels), conv block."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(Pretrained):
    """Images (B,in_channels,H,W) (in [-1,1] in this project) -> logits (B,num_classes,H,W);
    H and W must be multiples of ``2**levels``."""

    model_type = "unet"

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 64, levels: int = 4
    ):
        super().__init__()
        if in_channels < 1 or num_classes < 1 or base_channels < 1 or levels < 1:
            raise ValueError(
                "U-Net: in_channels, num_classes, base_channels and levels must be positive, got "
                f"{in_channels}, {num_classes}, {base_channels}, {levels}"
            )
        check_limit("classes", num_classes, "U-Net num_classes")
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "base_channels": base_channels,
            "levels": levels,
        }
        self.num_classes = num_classes
        self.factor = 2**levels
        widths = [base_channels * 2**i for i in range(levels)]
        self.downs = nn.ModuleList(
            DownBlock(c_in, c_out)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.bottleneck = ConvBlock(widths[-1], 2 * widths[-1])
        self.ups = nn.ModuleList(UpBlock(2 * w, w) for w in reversed(widths))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"U-Net input is {h}x{w}: height and width must be multiples of {self.factor} "
                f"({len(self.downs)} levels of 2x2 pooling); pad or crop the image"
            )
        skips = []
        for down in self.downs:
            x, skip = down(x)
            skips.append(skip)
        x = self.bottleneck(x)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        return self.head(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) in [-1,1], any H and W -> class ids (B,H,W) long: the image is padded
        right/bottom (edge pixels repeated) to a multiple of ``factor`` and the result cropped."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.factor, -w % self.factor
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self(x)[..., :h, :w].argmax(dim=1)
