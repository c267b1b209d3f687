"""``twostage info PRESET``: parameters and MACs of every network a preset builds, as one JSON
line ``{"<network>": {"params": int, "macs": int}, ...}``.

MACs are ``torch.utils.flop_counter`` FLOPs / 2 of one forward pass on a batch of 1 (matmuls
and convolutions; norms, activations and softmaxes are not counted). Presets are looked up by
name in the ``configs/`` of every package; the stage modules are imported by name, lazily."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from shared.cli import run_main
from shared.config import ConfigError, DataConfig, build_config, preset_names, read_preset
from shared.data import FashionMNISTDataset, ShapesDataset, build_dataset
from shared.options import ArgumentParser

PACKAGES = ("stage1_vqgan", "stage2_prior", "gan_direct", "segmentation")
# prior presets are costed unconditional, over a 16x16 grid (unless the preset sets a window) of
# 1024 codes of width 256 (those of vqgan-f16-1024)
PRIOR_CODES = 1024
CODE_DIM = 256
PRIOR_WINDOW = [16, 16]

Networks = dict[str, tuple[nn.Module, tuple]]


def cost(net: nn.Module, *inputs) -> dict[str, int]:
    """``{"params": number of parameters, "macs": multiply-accumulates of net(*inputs)}``."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder path escapes the counter
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net.eval()(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    params = sum(p.numel() for p in net.parameters())
    return {"params": params, "macs": counter.get_total_flops() // 2}


def _vqgan(name: str) -> Networks:
    config = importlib.import_module("stage1_vqgan.config")
    cfg = build_config(config.VQGANConfig, read_preset(name, "stage1_vqgan"))
    model = importlib.import_module("stage1_vqgan.model").VQModel.from_config(cfg.model)
    disc = importlib.import_module("stage1_vqgan.discriminator").PatchDiscriminator(
        cfg.model.out_channels, cfg.loss.disc_ndf, cfg.loss.disc_layers
    )
    res = cfg.model.resolution
    return {
        "tokenizer": (model, (torch.randn(1, cfg.model.in_channels, res, res),)),
        "discriminator": (disc, (torch.randn(1, cfg.model.out_channels, res, res),)),
    }


def _prior(name: str) -> Networks:
    config = importlib.import_module("stage2_prior.config")
    cfg = build_config(config.PriorConfig, read_preset(name, "stage2_prior"))
    window = cfg.model.window or PRIOR_WINDOW
    if cfg.prior == "adatgan":
        adat = importlib.import_module("stage2_prior.adatgan_prior")
        a = cfg.adatgan
        net = adat.AdatPriorGenerator(
            n_codes=PRIOR_CODES,
            window=window,
            z_dim=a.z_dim,
            dims=a.dims,
            heads=a.heads,
            mlp_dim=a.mlp_dim,
            embed_dim=CODE_DIM,
        )
        disc = adat.AdatPriorDiscriminator(CODE_DIM, window, a.d_dim, a.heads, a.mlp_dim)
        return {
            "generator": (net, (torch.randn(1, a.z_dim),)),
            "discriminator": (disc, (torch.randn(1, CODE_DIM, *window),)),
        }
    m = cfg.model
    net = importlib.import_module("stage2_prior.gpt").GPTPrior(
        n_codes=PRIOR_CODES,
        window=window,
        condition="none",
        n_layer=m.n_layer,
        n_head=m.n_head,
        n_embd=m.n_embd,
    )
    tokens = torch.randint(0, PRIOR_CODES, (1, net.spec.block_size))
    return {"prior": (net, (tokens,))}


def data_classes(cfg: DataConfig) -> int:
    """The classes of ``cfg``'s data without reading it where it is a builtin (their class
    lists are constants), so that describing a preset never needs its dataset installed; a
    folder is listed (its class sub-folders)."""
    builtins = {
        "builtin:shapes": ShapesDataset.num_classes,
        "builtin:fashion-mnist": FashionMNISTDataset.num_classes,
    }
    if cfg.source in builtins:
        return builtins[cfg.source]
    return build_dataset(cfg, "val").num_classes


def _gan(name: str) -> Networks:
    train = importlib.import_module("gan_direct.train")
    gan_config = importlib.import_module("gan_direct.config").GANConfig
    preset = build_config(gan_config, read_preset(name, "gan_direct"))
    classes = data_classes(preset.data) if preset.conditional else 0
    cfg, gen, disc = train.preset_networks(name, num_classes=classes)
    labels = torch.zeros(1, dtype=torch.long) if gen.num_classes else None
    extra = (labels,) if labels is not None else ()
    sample = torch.randn(1, *train.data_shape(cfg.data))
    return {
        "generator": (gen, (torch.randn(1, gen.z_dim), *extra)),
        "discriminator": (disc, (sample, *extra)),
    }


def _unet(name: str) -> Networks:
    config = importlib.import_module("segmentation.config")
    cfg = build_config(config.SegmentationConfig, read_preset(name, "segmentation"))
    m, res = cfg.model, cfg.data.resolution
    # num_classes 0 = from the data: known for builtin:shapes, else costed with one class
    shapes = ShapesDataset.num_mask_classes
    classes = m.num_classes or (shapes if cfg.data.source == "builtin:shapes" else 1)
    net = importlib.import_module("segmentation.unet").UNet(
        cfg.data.channels, classes, m.base_channels, m.levels
    )
    return {"unet": (net, (torch.randn(1, cfg.data.channels, res, res),))}


BUILDERS: dict[str, Callable[[str], Networks]] = {
    "stage1_vqgan": _vqgan,
    "stage2_prior": _prior,
    "gan_direct": _gan,
    "segmentation": _unet,
}


def all_presets() -> dict[str, str]:
    """Every shipped preset name -> its package."""
    return {name: pkg for pkg in PACKAGES for name in preset_names(pkg)}


def preset_info(name: str) -> dict[str, dict[str, int]]:
    """``{network: {"params", "macs"}}`` of the networks the preset ``name`` builds."""
    presets = all_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(sorted(presets))}")
    torch.manual_seed(0)
    networks = BUILDERS[presets[name]](name)
    return {net: cost(module, *inputs) for net, (module, inputs) in networks.items()}


def _main(argv: Sequence[str] | None, prog: str) -> int:
    p = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("preset", help="preset name, e.g. adatgan-cifar10-lee, vqgan-f16-1024")
    args = p.parse_args(argv)
    print(json.dumps(preset_info(args.preset)))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "twostage info") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)
