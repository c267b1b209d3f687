"""Sampling: logit filters, taming's window rule, KV-cached vs recomputed decoding, sliding
window sizes, classifier-free guidance and condition errors (random tiny networks)."""

import math

import pytest
import torch

from stage2_prior.gpt import GPTPrior, coord_tokens
from stage2_prior.sampling import draw, filter_logits, window_origin


def tiny(condition="none", window=(4, 4), **kw):
    torch.manual_seed(0)
    net = GPTPrior(
        n_codes=32, window=list(window), condition=condition, n_layer=2, n_head=2, n_embd=32, **kw
    )
    return net.double().eval()  # float64: cached and recomputed logits agree to ~1e-15


NETS = {
    "none": lambda: (tiny(), None),
    "class": lambda: (tiny("class", num_classes=3, class_dropout=0.1), torch.tensor([0, 2])),
    "spatial": lambda: (tiny("spatial", n_cond_codes=16), torch.randint(0, 16, (2, 6, 7))),
    "coord": lambda: (tiny("coord", n_cond_codes=64), None),
}


def taming_local(i: int, size: int) -> int:
    """taming's scripts/sample_conditional.py rule for a 16-token window, literally."""
    return i if i <= 8 else (16 - (size - i) if size - i < 8 else 8)


@pytest.mark.parametrize("size", [16, 17, 23, 36, 64])
def test_window_origin_is_tamings_rule(size):
    for i in range(size):
        assert window_origin(i, size, 16) == i - taming_local(i, size)


def test_filter_logits_top_k_and_top_p():
    logits = torch.tensor([[math.log(p) for p in (0.5, 0.3, 0.15, 0.05)]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    kept = ~torch.isinf(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.75
    assert (~torch.isinf(filter_logits(logits, top_p=0.5))).sum() == 1
    assert (~torch.isinf(filter_logits(logits, top_p=0.0))).sum() == 1  # never empty
    assert torch.equal(filter_logits(logits), logits)


def test_draw_follows_the_distribution_and_the_seed():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3)
    g = torch.Generator().manual_seed(0)
    freq = torch.bincount(draw(logits, generator=g), minlength=3) / 20000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)
    a = draw(logits[:50], generator=torch.Generator().manual_seed(3))
    b = draw(logits[:50], generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert draw(logits[:2], temperature=0).tolist() == [0, 0]
    assert set(draw(logits, top_k=1, generator=g).tolist()) == {0}


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("grid", [(4, 4), (6, 7)])
def test_cached_sampling_equals_recomputed_and_has_the_requested_size(kind, grid):
    net, condition = NETS[kind]()
    if kind == "spatial":
        condition = condition[:, : grid[0], : grid[1]]
    guidance = {"cfg_scale": 2.5} if kind == "class" else {}
    out = []
    for cached in (True, False):
        g = torch.Generator().manual_seed(7)
        out.append(net.sample(2, grid, condition, generator=g, cached=cached, **guidance))
    assert out[0].shape == (2, *grid)
    assert torch.equal(out[0], out[1])
    assert out[0].min() >= 0 and out[0].max() < 32


def test_sliding_window_tokens_depend_only_on_their_window():
    """Changing a token outside every window that token (i, j) sees leaves it unchanged:
    the first row's last token is decided before anything far to its left matters."""
    net, _ = NETS["none"]()
    g = torch.Generator().manual_seed(1)
    a = net.sample(1, (4, 12), generator=g)
    assert a.shape == (1, 4, 12)
    ctx = net.context(None, 1, (4, 12))
    # the token at (3, 11) is predicted from the window with origin (0, 8) only
    win = a[:, 0:4, 8:12]
    logits = net.logits(win, ctx)[:, -1]
    other = a.clone()
    other[:, :, :8] = (other[:, :, :8] + 1) % 32
    assert torch.allclose(logits, net.logits(other[:, 0:4, 8:12], ctx)[:, -1])


def test_guidance_changes_samples_and_needs_a_null_class():
    net, labels = NETS["class"]()
    plain = net.sample(2, condition=labels, generator=torch.Generator().manual_seed(0))
    guided = net.sample(
        2, condition=labels, cfg_scale=4.0, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(plain, guided)
    with pytest.raises(ValueError, match="class_dropout"):
        tiny("class", num_classes=3).sample(1, condition=0, cfg_scale=2.0)
    with pytest.raises(ValueError, match="class_dropout"):
        tiny().sample(1, cfg_scale=2.0)


def test_condition_errors_are_clear():
    cls = tiny("class", num_classes=3)
    with pytest.raises(ValueError, match="class-conditional"):
        cls.sample(1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cls.sample(1, condition=5)
    with pytest.raises(ValueError, match="unconditional"):
        tiny().sample(1, condition=1)
    with pytest.raises(ValueError, match="shape"):
        tiny("spatial", n_cond_codes=8).sample(1, (5, 5), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least the training window"):
        tiny().sample(1, (3, 8))
    with pytest.raises(ValueError, match="training window"):
        tiny().nll(torch.zeros(1, 5, 5, dtype=torch.long))


def test_nll_of_a_random_network_is_near_log_k_and_matches_cross_entropy():
    net, labels = NETS["class"]()
    x = torch.randint(0, 32, (2, 4, 4))
    nll = net.nll(x, labels)
    assert nll.shape == (2,) and torch.all((nll - math.log(32)).abs() < 0.5)
    seq = torch.cat([(32 + labels)[:, None], x.flatten(1)], 1)
    logits, _ = net(seq[:, :-1])
    manual = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), x.flatten(1), reduction="none"
    )
    assert torch.allclose(nll, manual.mean(1).to(nll.dtype))


def test_coord_tokens_follow_the_raster_position():
    full = coord_tokens(4, 6, 24)
    assert torch.equal(full.flatten(), torch.arange(24))
    assert torch.equal(coord_tokens(4, 6, 24, 1, 1, 2, 2, 3), full[1:3, 2:5])
