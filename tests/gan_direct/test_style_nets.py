"""ProGAN and StyleGAN2-style networks (``gan_direct/progan.py``, ``gan_direct/stylegan.py``) and
their layers (``shared/equalized.py``), at tiny sizes."""

import math

import pytest
import torch
import torch.nn.functional as F

from gan_direct.growing import blend_reals, progressive_schedule
from gan_direct.progan import ProGANDiscriminator, ProGANGenerator
from gan_direct.stylegan import StyleGANDiscriminator, StyleGANGenerator
from shared.equalized import EqualConv2d, EqualLinear, MinibatchStd, PixelNorm

TINY = dict(resolution=16, channels=3, channel_base=64, max_channels=16)  # 16, 8, 4 channels
Z = 8
STYLE = dict(TINY, z_dim=Z, w_dim=8, mapping_layers=2)


def grads_of(module: torch.nn.Module) -> dict[str, bool]:
    """name -> whether the parameter got a non-zero gradient."""
    return {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()
    }


# ---------------------------------------------------------------- equalised layers


def test_equal_layers_scale_at_run_time():
    torch.manual_seed(0)
    lin = EqualLinear(4, 3, lr_mul=0.01, bias_init=1.0)
    assert torch.allclose(lin(torch.zeros(2, 4)), torch.ones(2, 3))  # effective bias = bias_init
    x = torch.randn(5, 4)
    assert torch.allclose(lin(x), x @ (lin.weight * 0.01 / 2).t() + 1.0, atol=1e-6)
    conv = EqualConv2d(2, 3, 3, padding=1)
    y = torch.randn(1, 2, 5, 5)
    ref = F.conv2d(y, conv.weight / math.sqrt(18), conv.bias, padding=1)
    assert torch.allclose(conv(y), ref, atol=1e-6)
    pn = PixelNorm()(torch.randn(2, 6, 3, 3) * 5)
    assert torch.allclose(pn.square().mean(1), torch.ones(2, 3, 3), atol=1e-5)


@pytest.mark.parametrize(("batch", "group"), [(8, 4), (6, 3), (3, 3), (5, 1)])
def test_minibatch_std_adds_one_channel_for_any_batch(batch, group):
    torch.manual_seed(0)
    x = torch.randn(batch, 2, 3, 3)
    y = MinibatchStd(group_size=4)(x)
    assert y.shape == (batch, 3, 3, 3) and torch.equal(y[:, :2], x)
    # sample i is in group i mod (B / G); the channel is constant per sample
    n = batch // group
    for i in range(batch):
        members = x[i % n :: n]
        expected = (members.var(0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(y[i, 2], expected.expand(3, 3), atol=1e-6)


# ---------------------------------------------------------------- ProGAN


def test_progan_forward_backward_reaches_every_parameter_mid_fade():
    """Mid fade-in at the last stage both branches are live: every parameter gets a gradient but
    the 4x4 level's toRGB / fromRGB (only used at stage 0, or fading into stage 1). At alpha = 1
    the previous level's toRGB / fromRGB is skipped too (legitimately: not in the graph)."""
    torch.manual_seed(0)
    g, d = ProGANGenerator(**TINY, z_dim=Z), ProGANDiscriminator(**TINY)
    assert g.growth() == (2, 1.0) and d.growth() == (2, 1.0)  # full size after construction
    g.grow(2, 0.5), d.grow(2, 0.5)
    x = g(torch.randn(5, Z))
    assert x.shape == (5, 3, 16, 16)
    logits = d(x)
    assert logits.shape == (5, 1) and torch.isfinite(logits).all()
    logits.mean().backward()

    def idle(levels):
        g_idle = {n for n, ok in grads_of(g).items() if not ok}
        d_idle = {n for n, ok in grads_of(d).items() if not ok}
        assert g_idle == {f"to_rgb.{i}.{p}" for i in levels for p in ("weight", "bias")}
        assert d_idle == {f"from_rgb.{i}.0.{p}" for i in levels for p in ("weight", "bias")}

    idle([0])
    g.zero_grad(set_to_none=True), d.zero_grad(set_to_none=True)
    g.grow(2, 1.0), d.grow(2, 1.0)
    d(g(torch.randn(5, Z))).mean().backward()
    idle([0, 1])


def test_progan_grow_sets_the_resolution_and_is_validated():
    g, d = ProGANGenerator(**TINY, z_dim=Z), ProGANDiscriminator(**TINY)
    z = torch.randn(2, Z)
    for stage, r in ((0, 4), (1, 8), (2, 16)):
        g.grow(stage, 0.3), d.grow(stage, 0.3)
        assert g.current_resolution == r
        x = g(z)
        assert x.shape == (2, 3, r, r) and d(x).shape == (2, 1)
    with pytest.raises(ValueError, match="stage"):
        g.grow(3, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        d.grow(1, 1.5)


def test_progan_fade_in_formula_is_exact():
    torch.manual_seed(0)
    g = ProGANGenerator(**TINY, z_dim=Z)
    z = torch.randn(3, Z)
    with torch.no_grad():
        g.grow(2, 0.0)
        start = g(z)
        skip = F.interpolate(g.to_rgb[1](g.features(z, None, 1)), scale_factor=2)
        assert torch.equal(start, skip)  # alpha = 0: Upsample(toRGB_prev(h_prev))
        assert torch.equal(start, F.interpolate(g.grow(1, 1.0)(z), scale_factor=2))
        end = g.grow(2, 1.0)(z)
        assert torch.equal(end, g.to_rgb[2](g.features(z, None, 2)))
        mid = g.grow(2, 0.25)(z)
        assert torch.allclose(mid, 0.75 * start + 0.25 * end, atol=1e-6)

    d = ProGANDiscriminator(**TINY)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        faded = d.grow(2, 0.0)(x)  # alpha = 0: fromRGB_prev(avgpool(x)), then the rest of D
        assert torch.allclose(faded, d.grow(1, 1.0)(F.avg_pool2d(x, 2)), atol=1e-6)


def test_progressive_schedule():
    expected = {
        0: (0, 1.0),
        9: (0, 1.0),
        10: (1, 0.0),
        15: (1, 0.5),
        20: (1, 1.0),
        29: (1, 1.0),
        30: (2, 0.0),
        38: (2, 0.8),
        40: (2, 1.0),
        49: (2, 1.0),
        50: (2, 1.0),
        10**6: (2, 1.0),
    }
    for step, (stage, alpha) in expected.items():
        got = progressive_schedule(step, 10, 2)
        assert got[0] == stage and got[1] == pytest.approx(alpha), step
    assert progressive_schedule(0, 0, 4) == (4, 1.0)
    assert progressive_schedule(123, -1, 3) == (3, 1.0)
    assert progressive_schedule(500, 10, 0) == (0, 1.0)


def test_blend_reals():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(blend_reals(x, 2, 1.0), x)
    x8 = F.avg_pool2d(x, 2)
    assert torch.allclose(blend_reals(x, 1, 1.0), x8)
    low = F.interpolate(F.avg_pool2d(x8, 2), scale_factor=2, mode="nearest")
    assert torch.allclose(blend_reals(x, 1, 0.0), low)
    assert torch.allclose(blend_reals(x, 1, 0.4), 0.6 * low + 0.4 * x8, atol=1e-6)
    assert blend_reals(x, 0, 0.3).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError):
        blend_reals(x, 3, 1.0)


def test_progan_discriminator_rejects_wrong_resolution():
    d = ProGANDiscriminator(**TINY).grow(1, 1.0)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        d(torch.randn(2, 3, 16, 16))


def test_bad_specs_are_refused():
    for cls in (ProGANGenerator, ProGANDiscriminator, StyleGANGenerator, StyleGANDiscriminator):
        for resolution in (4, 12):
            with pytest.raises(ValueError, match="power of two"):
                cls(resolution=resolution)
        with pytest.raises(TypeError):
            cls(no_such_option=1)


def test_progan_round_trip_keeps_growth(tmp_path):
    torch.manual_seed(0)
    g = ProGANGenerator(**TINY, z_dim=Z).grow(1, 0.25)
    d = ProGANDiscriminator(**TINY).grow(1, 0.25)
    g2 = ProGANGenerator.from_pretrained(g.save_pretrained(tmp_path / "g"))
    d2 = ProGANDiscriminator.from_pretrained(d.save_pretrained(tmp_path / "d"))
    assert g2.growth() == (1, 0.25) and d2.growth() == (1, 0.25)
    assert g2.stage.dtype == torch.long
    z = torch.randn(2, Z)
    with torch.no_grad():
        assert torch.equal(g2(z), g.eval()(z))
        x = torch.randn(4, 3, 8, 8)
        assert torch.equal(d2(x), d.eval()(x))


def test_progan_conditional():
    torch.manual_seed(0)
    g = ProGANGenerator(**TINY, z_dim=Z, num_classes=3)
    d = ProGANDiscriminator(**TINY, num_classes=3)
    z = torch.randn(2, Z)
    a, b = torch.tensor([0, 0]), torch.tensor([1, 2])
    x = g(z, a)
    assert not torch.allclose(x, g(z, b))
    assert not torch.allclose(d(x, a), d(x, b))
    d(x, a).sum().backward()
    assert g.embed.weight.grad is not None and d.project.embed.weight.grad is not None
    with pytest.raises(ValueError, match="labels"):
        g(z)
    with pytest.raises(ValueError, match="labels"):
        d(x.detach())


# ---------------------------------------------------------------- StyleGAN


def test_stylegan_generator_forward_backward():
    """Every parameter gets a gradient, the noise strengths too (they start at 0, but their
    gradient is <noise, upstream gradient>)."""
    torch.manual_seed(0)
    g = StyleGANGenerator(**STYLE)
    assert g.num_ws == 6
    x = g(torch.randn(3, Z))
    assert x.shape == (3, 3, 16, 16) and torch.isfinite(x).all()
    x.square().mean().backward()
    assert all(grads_of(g).values())


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_stylegan_discriminator_any_resolution(resolution):
    torch.manual_seed(0)
    d = StyleGANDiscriminator(**dict(TINY, resolution=resolution))
    logits = d(torch.randn(6, 3, resolution, resolution))  # 6: not a multiple of group size 4
    assert logits.shape == (6, 1)
    logits.mean().backward()
    assert all(grads_of(d).values())
    with pytest.raises(ValueError, match="expected images"):
        d(torch.randn(2, 3, resolution * 2, resolution * 2))


def _noisy_generator(**kwargs) -> StyleGANGenerator:
    g = StyleGANGenerator(**STYLE, **kwargs)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)  # make the noise visible
    return g


def test_stylegan_truncation_and_noise_modes():
    torch.manual_seed(0)
    g = _noisy_generator()
    g.train()(torch.randn(8, Z))  # moves w_avg away from 0
    g.eval()
    z1, z2 = torch.randn(2, Z), torch.randn(2, Z)
    with torch.no_grad():
        same = g(z1, psi=0.0, noise_mode="const"), g(z2, psi=0.0, noise_mode="const")
        assert torch.allclose(*same, atol=1e-5)  # psi = 0: every z maps to w_avg
        assert torch.allclose(same[0][0], same[0][1], atol=1e-5)
        assert torch.equal(g(z1, noise_mode="const"), g(z1, noise_mode="const"))
        assert not torch.allclose(g(z1), g(z1))  # fresh noise each call
        assert not torch.allclose(g(z1, noise_mode="none"), g(z1, noise_mode="const"))
        assert not torch.allclose(g(z1, noise_mode="const"), g(z2, noise_mode="const"))
    with pytest.raises(ValueError, match="noise_mode"):
        g(z1, noise_mode="fixed")


def test_stylegan_mixing_only_in_training():
    torch.manual_seed(0)
    g = StyleGANGenerator(**STYLE, mixing_prob=1.0)
    z = torch.randn(4, Z)
    ws = g.train().styles(z)
    assert ws.shape == (4, g.num_ws, 8)
    assert torch.equal(ws[:, 0], g.mapping(z))
    assert not torch.allclose(ws[:, 0], ws[:, -1])  # crossover in 1..num_ws-1
    ws = g.eval().styles(z)
    assert (ws == ws[:, :1]).all()
    ws = StyleGANGenerator(**STYLE, mixing_prob=0.0).train().styles(z)
    assert (ws == ws[:, :1]).all()


def test_stylegan_w_avg_moves_in_training_only():
    torch.manual_seed(0)
    g = StyleGANGenerator(**STYLE).eval()
    z = torch.randn(4, Z)
    g(z)
    assert torch.equal(g.w_avg, torch.zeros(8))
    with torch.no_grad():
        w = g.mapping(z)
        g.train()(z)
    assert torch.allclose(g.w_avg, 0.005 * w.mean(0), atol=1e-7)


def test_stylegan_conditional_and_round_trip(tmp_path):
    torch.manual_seed(0)
    g = _noisy_generator(num_classes=3)
    d = StyleGANDiscriminator(**TINY, num_classes=3)
    z = torch.randn(2, Z)
    a, b = torch.tensor([0, 1]), torch.tensor([2, 2])
    g.train()(z, a)  # a non-zero w_avg to round-trip
    g.eval()
    with torch.no_grad():
        x = g(z, a, noise_mode="const")
        assert not torch.allclose(x, g(z, b, noise_mode="const"))
        assert not torch.allclose(d(x, a), d(x, b))
        g2 = StyleGANGenerator.from_pretrained(g.save_pretrained(tmp_path / "g"))
        assert torch.equal(g2.w_avg, g.w_avg)
        assert torch.equal(g2(z, a, psi=0.7, noise_mode="const"), g(z, a, 0.7, "const"))
    with pytest.raises(ValueError, match="labels"):
        g(z)
    with pytest.raises(ValueError, match="labels"):
        d(x)
