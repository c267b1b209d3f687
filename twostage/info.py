"""``twostage info``: every preset with its size, purpose and whether it suits a CPU (a table);
``twostage info PRESET``: parameters and MACs of every network a preset builds, as one JSON
line ``{"<network>": {"params": int, "macs": int}, ...}``.

A preset's purpose is the ``# purpose:`` first line of its YAML (else its first comment
sentence). It suits a CPU when all its networks together have at most :data:`CPU_MAX_PARAMS`
parameters and, where the preset fixes an image size, its images are at most
:data:`CPU_MAX_RESOLUTION` pixels a side; the table counts parameters on the meta device,
without allocating them.

MACs are those of one forward pass on a batch of 1 (:func:`shared.flops.cost`). Presets are
looked up by name in the ``configs/`` of every stage package."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from importlib import resources
from unittest import mock

import torch
from torch import nn
from torch.nn.utils import parametrizations

from gan_direct.config import GANConfig
from gan_direct.presets import data_shape, preset_networks
from segmentation.config import SegmentationConfig
from segmentation.unet import UNet
from shared.cli import run_main
from shared.config import ConfigError, DataConfig, build_config, preset_names, read_preset
from shared.data import FashionMNISTDataset, ShapesDataset, build_dataset
from shared.flops import cost
from shared.options import ArgumentParser
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.discriminator import PatchDiscriminator
from stage1_vqgan.model import VQModel
from stage2_prior.adatgan_prior import AdatPriorDiscriminator
from stage2_prior.config import PriorConfig
from stage2_prior.networks import build_network
from twostage.cli import COMMANDS

PACKAGES = ("stage1_vqgan", "stage2_prior", "gan_direct", "segmentation")
# prior presets are costed unconditional, over a 16x16 grid (unless the preset sets a window) of
# 1024 codes of width 256 (those of vqgan-f16-1024)
PRIOR_CODES = 1024
CODE_DIM = 256
PRIOR_WINDOW = [16, 16]
CPU_MAX_PARAMS = 5_000_000  # over all the networks of a preset
CPU_MAX_RESOLUTION = 64  # pixels a side, where the preset fixes the image size
CPU_RULE = (
    f"CPU yes: at most {CPU_MAX_PARAMS / 1e6:g}M parameters in all and, where the preset fixes "
    f"an image size, at most {CPU_MAX_RESOLUTION} px a side; the others are sized for a GPU"
)
PURPOSE_RE = re.compile(r"^#\s*purpose:\s*(.+?)\s*$", re.MULTILINE)

Networks = dict[str, tuple[nn.Module, tuple]]


def _vqgan(name: str) -> Networks:
    cfg = build_config(VQGANConfig, read_preset(name, "stage1_vqgan"))
    model = VQModel.from_config(cfg.model)
    disc = PatchDiscriminator(cfg.model.out_channels, cfg.loss.disc_ndf, cfg.loss.disc_layers)
    res = cfg.model.resolution
    return {
        "tokenizer": (model, (torch.randn(1, cfg.model.in_channels, res, res),)),
        "discriminator": (disc, (torch.randn(1, cfg.model.out_channels, res, res),)),
    }


def _prior(name: str) -> Networks:
    cfg = build_config(PriorConfig, read_preset(name, "stage2_prior"))
    window = cfg.model.window or PRIOR_WINDOW
    if cfg.prior == "adatgan":
        a = cfg.adatgan
        net = build_network(cfg, n_codes=PRIOR_CODES, window=window, embed_dim=CODE_DIM)
        disc = AdatPriorDiscriminator(
            CODE_DIM, window, a.d_dim, a.heads, a.mlp_dim, minibatch_std=a.minibatch_std
        )
        return {
            "generator": (net, (torch.randn(1, a.z_dim),)),
            "discriminator": (disc, (torch.randn(1, CODE_DIM, *window),)),
        }
    net = build_network(cfg, n_codes=PRIOR_CODES, window=window)
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
    preset = build_config(GANConfig, read_preset(name, "gan_direct"))
    classes = data_classes(preset.data) if preset.conditional else 0
    cfg, gen, disc = preset_networks(name, num_classes=classes)
    labels = torch.zeros(1, dtype=torch.long) if gen.num_classes else None
    extra = (labels,) if labels is not None else ()
    sample = torch.randn(1, *data_shape(cfg.data))
    return {
        "generator": (gen, (torch.randn(1, gen.z_dim), *extra)),
        "discriminator": (disc, (sample, *extra)),
    }


def _unet(name: str) -> Networks:
    cfg = build_config(SegmentationConfig, read_preset(name, "segmentation"))
    m, res = cfg.model, cfg.data.resolution
    # num_classes 0 = from the data: known for builtin:shapes, else costed with one class
    shapes = ShapesDataset.num_mask_classes
    classes = m.num_classes or (shapes if cfg.data.source == "builtin:shapes" else 1)
    net = UNet(cfg.data.channels, classes, m.base_channels, m.levels)
    return {"unet": (net, (torch.randn(1, cfg.data.channels, res, res),))}


SCHEMAS = {
    "stage1_vqgan": VQGANConfig,
    "stage2_prior": PriorConfig,
    "gan_direct": GANConfig,
    "segmentation": SegmentationConfig,
}
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


def preset_command(package: str) -> str:
    """The ``twostage`` command whose ``train`` takes the presets of ``package``."""
    for command, (module, _) in COMMANDS.items():
        if module == f"{package}.cli":
            return command
    return package


def preset_purpose(name: str, package: str) -> str:
    """The one-line purpose of a shipped preset: its ``# purpose:`` line, else the first
    sentence of its leading comment."""
    text = (resources.files(package) / "configs" / f"{name}.yaml").read_text()
    found = PURPOSE_RE.search(text)
    if found:
        return found.group(1)
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    sentence = " ".join(lines).split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 80 else sentence[:77] + "..."


def preset_params(name: str, package: str) -> int:
    """Parameters of all the networks of a preset, counted on the meta device (nothing is
    allocated); a network that computes while it is built is built on the CPU instead. The
    power iterations spectral norm runs when it is built (the slow part, and no parameter) are
    skipped."""
    torch.manual_seed(0)
    norm = getattr(parametrizations, "_SpectralNorm", None)  # private: absent, nothing skipped
    skip_power = (
        mock.patch.object(norm, "_power_method", lambda self, w, n: None)
        if hasattr(norm, "_power_method")
        else contextlib.nullcontext()
    )
    with skip_power:
        try:
            with torch.device("meta"):
                networks = BUILDERS[package](name)
        except (RuntimeError, NotImplementedError):
            networks = BUILDERS[package](name)
    return sum(p.numel() for net, _ in networks.values() for p in net.parameters())


def preset_resolution(name: str, package: str) -> int | None:
    """The image size (pixels a side) a preset trains at; None for 2-D points and for priors,
    which take their tokenizer's."""
    cfg = build_config(SCHEMAS[package], read_preset(name, package))
    if package == "gan_direct":
        shape = data_shape(cfg.data)
        return shape[-1] if len(shape) == 3 else None
    return cfg.data.resolution or None


def suits_cpu(params: int, resolution: int | None) -> bool:
    """:data:`CPU_RULE`."""
    small = resolution is None or resolution <= CPU_MAX_RESOLUTION
    return params <= CPU_MAX_PARAMS and small


def preset_table() -> list[dict]:
    """One row per shipped preset, in command order (vqgan, prior, gan, segment) then by name:
    ``{"preset", "command", "params", "size", "cpu", "purpose"}``."""
    order = list(COMMANDS)
    rows = []
    for name, package in all_presets().items():
        params = preset_params(name, package)
        resolution = preset_resolution(name, package)
        if resolution:
            size = f"{resolution} px"
        elif package == "gan_direct":
            size = "2-D points"
        else:
            size = "tokenizer's"
        rows.append(
            {
                "preset": name,
                "command": preset_command(package),
                "params": params,
                "size": size,
                "cpu": suits_cpu(params, resolution),
                "purpose": preset_purpose(name, package),
            }
        )
    key = {c: i for i, c in enumerate(order)}
    return sorted(rows, key=lambda r: (key.get(r["command"], len(order)), r["preset"]))


def _count(n: int) -> str:
    if n >= 100_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


def format_table(rows: list[dict]) -> str:
    """The listing ``twostage info`` prints: a table, then the rules behind its columns."""
    head = ("PRESET", "COMMAND", "PARAMS", "SIZE", "CPU", "PURPOSE")
    cells = [
        (r["preset"], r["command"], _count(r["params"]), r["size"], "yes" if r["cpu"] else "no")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head[:5], *cells]) for i in range(5)]
    lines = []
    for c, purpose in [(head[:5], head[5]), *zip(cells, (r["purpose"] for r in rows), strict=True)]:
        left = "  ".join(
            v.rjust(w) if i == 2 else v.ljust(w)
            for i, (v, w) in enumerate(zip(c, widths, strict=True))
        )
        lines.append(f"{left}  {purpose}")
    notes = [
        "",
        "PARAMS: all the networks a preset builds (with its discriminator); priors are counted "
        f"over {PRIOR_CODES} codes and a {PRIOR_WINDOW[0]}x{PRIOR_WINDOW[1]} grid unless the "
        "preset sets its window.",
        "SIZE: the image size it trains at (priors: their tokenizer's).",
        f"{CPU_RULE}.",
        "Train one with: twostage COMMAND train --config PRESET ...; "
        "twostage info PRESET prints its params and MACs per network as JSON.",
    ]
    return "\n".join(lines + notes)


def build_parser(prog: str = "twostage info") -> ArgumentParser:
    p = ArgumentParser(
        prog=prog,
        description="Without PRESET (or with --list): every preset with its size, purpose and "
        "whether it suits a CPU. With PRESET: one JSON line of the parameters and MACs of each "
        "network it builds.",
    )
    p.add_argument(
        "preset",
        nargs="?",
        metavar="PRESET",
        help="preset name, e.g. adatgan-cifar10-lee, vqgan-f16-1024",
    )
    p.add_argument("--list", action="store_true", help="list every preset (the default)")
    return p


def _main(argv: Sequence[str] | None, prog: str) -> int:
    p = build_parser(prog)
    args = p.parse_args(argv)
    if args.preset and args.list:
        p.error("give a PRESET or --list, not both")
    if args.preset:
        print(json.dumps(preset_info(args.preset)))
    else:
        print(format_table(preset_table()))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "twostage info") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)
