"""The prior networks by the name a run's config gives them (``prior: gpt | adatgan``) and by
the ``model_type`` their ``config.json`` saves, and the one mapping from a run's config to a
network: the layers of its config section plus what the tokenizers and the data fix."""

from __future__ import annotations

import dataclasses

from shared.config import ConfigError
from shared.pretrained import build_checked
from stage2_prior.adatgan_prior import AdatPriorGenerator
from stage2_prior.config import AdatGeneratorLayers, GPTLayers, PriorConfig
from stage2_prior.gpt import GPTPrior
from stage2_prior.prior import PriorNetwork

# PriorConfig.prior -> (network, its config section, the fields its spec takes from there, name)
NETWORKS = {
    "gpt": (GPTPrior, "model", GPTLayers, "model (GPT prior config)"),
    "adatgan": (AdatPriorGenerator, "adatgan", AdatGeneratorLayers, "adatgan (prior config)"),
}
BY_MODEL_TYPE = {entry[0].model_type: entry[0] for entry in NETWORKS.values()}


def network_class(prior: str) -> type[PriorNetwork]:
    """The network class of ``PriorConfig.prior``."""
    return NETWORKS[prior][0]


def build_network(cfg: PriorConfig, **fixed) -> PriorNetwork:
    """A fresh ``cfg.prior`` network: the layers of its config section (``model`` or
    ``adatgan``) and ``fixed``, the spec fields the tokenizers and data fix (``n_codes``,
    ``window``, ``condition``, ...); a bad combination is a one-line :class:`ConfigError`
    naming the section."""
    net_class, section, layers, name = NETWORKS[cfg.prior]
    chosen = getattr(cfg, section)
    kwargs = {f.name: getattr(chosen, f.name) for f in dataclasses.fields(layers)}
    return build_checked(lambda: net_class(**kwargs, **fixed), name, ConfigError)
