"""AdatGAN networks: every preset runs, cost figures match the thesis (spec adatgan §5.3, §6.2)."""

import pytest
import torch

from gan_direct.adatgan import AdatDiscriminator, AdatGenerator
from gan_direct.presets import preset_networks
from shared.config import preset_names
from shared.flops import cost

PRESETS = ["adatgan-cifar10", "adatgan-cifar10-lee", "adatgan-celeba64"]
PRESETS += ["adatgan-lsun128", "adatgan-ffhq128", "adatgan-tiny", "adatgan-fmnist"]


def preset(name):
    """(config, generator, discriminator) of an AdatGAN preset."""
    return preset_networks(name)


def test_every_adatgan_preset_is_listed():
    assert {n for n in preset_names("gan_direct") if n.startswith("adatgan-")} == set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_one_step(name):
    torch.manual_seed(0)
    cfg, g, d = preset(name)
    assert isinstance(g, AdatGenerator) and isinstance(d, AdatDiscriminator)
    batch = 2 if cfg.data.resolution <= 64 else 1
    images = g(torch.randn(batch, g.z_dim))
    res, channels = cfg.data.resolution, cfg.data.channels
    assert images.shape == (batch, channels, res, res)
    assert cfg.discriminator["resolution"] == cfg.generator["resolution"] == res
    d.train(batch > 1)  # BatchNorm needs more than one value per channel in training mode
    logits = d(images)
    assert logits.shape[0] == batch and torch.isfinite(logits).all()
    logits.mean().backward()
    assert g.to_tokens.weight.grad is not None and g.to_rgb.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())


# (preset, params, MACs): spec adatgan §0 / §5.3 (G) and §6.2 (D), thesis Tables 5.12 / 5.13
GENERATOR_COST = [
    ("adatgan-cifar10", 19.9e6, 0.76e9),
    ("adatgan-cifar10-lee", 20.2e6, 0.92e9),
    ("adatgan-celeba64", 20.2e6, 0.92e9),
    ("adatgan-lsun128", 26.1e6, 3.29e9),
    ("adatgan-ffhq128", 26.1e6, 3.29e9),
]
DISCRIMINATOR_COST = [
    ("adatgan-cifar10-lee", 6.8e6, 0.71e9),
    ("adatgan-celeba64", 7.0e6, 0.95e9),
    ("adatgan-lsun128", 7.1e6, 1.19e9),
]


@pytest.mark.parametrize(("name", "params", "macs"), GENERATOR_COST)
def test_generator_cost_matches_thesis(name, params, macs):
    _, g, _ = preset(name)
    got = cost(g, torch.randn(1, g.z_dim))
    assert got["params"] == pytest.approx(params, rel=0.03)
    assert got["macs"] == pytest.approx(macs, rel=0.03)


@pytest.mark.parametrize(("name", "params", "macs"), DISCRIMINATOR_COST)
def test_discriminator_cost_matches_spec(name, params, macs):
    cfg, _, d = preset(name)
    res = cfg.data.resolution
    got = cost(d, torch.randn(1, 3, res, res))
    assert got["params"] == pytest.approx(params, rel=0.03)
    assert got["macs"] == pytest.approx(macs, rel=0.03)


def test_conv_d_baseline_costs_about_half_a_gmac():
    d = AdatDiscriminator(attention=False, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    got = cost(d, torch.randn(1, 3, 32, 32))
    assert 0.45e9 < got["macs"] < 0.65e9  # thesis Table 5.5: Conv-D 0.5B


def test_generator_returns_attention_maps_per_stage():
    g = AdatGenerator(dims=[64, 32, 16], resolution=64)
    images, maps = g(torch.randn(2, 128), return_maps=True)
    assert images.shape == (2, 3, 64, 64)
    assert [m.shape for m in maps] == [(2, 4, s, s) for s in (8, 16, 32)]
    for m in maps:
        torch.testing.assert_close(m.sum((-2, -1)), torch.ones(2, 4))


def test_class_conditional_generator_depends_on_label():
    torch.manual_seed(0)
    g = AdatGenerator(dims=[64, 32, 16], num_classes=10)
    z = torch.randn(1, 128).expand(2, -1)
    images = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(images[0], images[1])


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="multiple of 32"):
        AdatGenerator(resolution=48)
    with pytest.raises(ValueError, match="not 16px"):
        AdatDiscriminator(resolution=64, stem=[128, 256])
