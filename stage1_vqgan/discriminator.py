"""PatchGAN discriminator in taming's ``NLayerDiscriminator`` layout (keys ``main.N.*``)."""

from __future__ import annotations

from torch import nn

from shared.pretrained import Pretrained

DISCRIMINATOR_FOLDER = "discriminator"  # its export folder, inside the tokenizer's model folder


class PatchDiscriminator(Pretrained):
    """(B, in_channels, H, W) -> (B, 1, h, w) real/fake logits, one per overlapping patch.

    conv4x4/2 + LReLU, (n_layers - 1) x [conv4x4/2 + BN + LReLU], conv4x4/1 + BN + LReLU,
    conv4x4/1 -> 1 channel; 256x256 input gives a 30x30 map (70 px receptive field).
    Exported with ``save_pretrained`` into the tokenizer's ``discriminator/`` folder."""

    model_type = "vqgan-discriminator"

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        self.config = {"in_channels": in_channels, "ndf": ndf, "n_layers": n_layers}
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.main(x)
