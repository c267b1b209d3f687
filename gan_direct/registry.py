"""The registry of pixel-GAN networks: a config names a generator and a discriminator, each
with its own keyword arguments, checked against the network's spec dataclass.

Every generator is a :class:`~gan_direct.network.GANGenerator`, mapping ``(z (B, z_dim), labels
(B,) | None) -> samples (B, *data shape)``; every discriminator a
:class:`~gan_direct.network.GANNetwork` mapping ``(samples, labels | None) -> logits (B, ...)``.
Data decide the sample shape: fields ``channels``/``resolution`` (images) or ``shape`` are set
from the data, and ``num_classes`` from the data's classes when the run is class-conditional."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from gan_direct.network import GANNetwork
from shared.config import ConfigError
from shared.pretrained import build_checked

# name -> "module:Class"; a network class carries its spec dataclass as ``spec_class``
GENERATORS = {
    "mlp": "gan_direct.mlp:MLPGenerator",
    "dcgan": "gan_direct.dcgan:DCGANGenerator",
    "transgan-hybrid": "gan_direct.dcgan:TransGANHybridGenerator",
    "sagan": "gan_direct.sagan:SAGANGenerator",
    "progan": "gan_direct.progan:ProGANGenerator",
    "stylegan": "gan_direct.stylegan:StyleGANGenerator",
    "vitgan": "gan_direct.vitgan:ViTGANGenerator",
    "adatgan": "gan_direct.adatgan:AdatGenerator",
}
DISCRIMINATORS = {
    "mlp": "gan_direct.mlp:MLPDiscriminator",
    "dcgan": "gan_direct.dcgan:DCGANDiscriminator",
    "sagan": "gan_direct.sagan:SAGANDiscriminator",
    "progan": "gan_direct.progan:ProGANDiscriminator",
    "stylegan": "gan_direct.stylegan:StyleGANDiscriminator",
    "vitgan": "gan_direct.vitgan:ViTDiscriminator",
    "adatgan": "gan_direct.adatgan:AdatDiscriminator",
}
ROLES = {"generator": GENERATORS, "discriminator": DISCRIMINATORS}


def network_class(role: str, name: str) -> type[GANNetwork]:
    """The class registered as ``name`` for ``role`` ("generator" or "discriminator")."""
    table = ROLES[role]
    if name not in table:
        raise ConfigError(f"{role}.name: unknown '{name}'; choose one of {', '.join(table)}")
    module, cls = table[name].split(":")
    return getattr(importlib.import_module(module), cls)


def model_types() -> dict[str, type[GANNetwork]]:
    """Exported ``model_type`` -> class, for every registered network."""
    classes = [network_class(role, n) for role, table in ROLES.items() for n in table]
    return {c.model_type: c for c in classes}


def resolve(
    role: str, args: dict[str, Any], data_shape: tuple[int, ...], num_classes: int = 0
) -> dict[str, Any]:
    """``{"name": ..., **every field of the network's spec}``: ``args`` (a config section) with
    the data-driven fields set and the defaults filled in. ``num_classes`` > 0 makes the
    network class-conditional. One-line :class:`ConfigError` on any mistake."""
    args = dict(args)
    name = args.pop("name", None)
    if not name:
        raise ConfigError(f"{role}.name is required; choose one of {', '.join(ROLES[role])}")
    spec_class = network_class(role, name).spec_class
    fields = [f.name for f in dataclasses.fields(spec_class)]
    unknown = [k for k in args if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown key '{role}.{unknown[0]}' for '{name}'; valid keys: {', '.join(fields)}"
        )
    if "shape" in fields:
        args["shape"] = list(data_shape)
    elif len(data_shape) != 3:
        raise ConfigError(f"{role} '{name}' makes images; the data are points of {data_shape}")
    else:
        args["channels"], args["resolution"] = data_shape[0], data_shape[-1]
    if num_classes:
        if "num_classes" not in fields:
            raise ConfigError(f"{role} '{name}' cannot be class-conditional")
        args["num_classes"] = num_classes
    try:
        spec = spec_class(**args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{role} '{name}': {e}") from None
    return {"name": name, **dataclasses.asdict(spec)}


def build(role: str, resolved: dict[str, Any]) -> GANNetwork:
    """The network of a :func:`resolve`-d config section."""
    args = dict(resolved)
    cls = network_class(role, args.pop("name"))
    return build_checked(lambda: cls(**args), f"{role} '{cls.__name__}'", ConfigError)
