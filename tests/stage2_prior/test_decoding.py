"""The exact fast decoding paths of the GPT prior against its plain forward: the static key/value
cache, the ragged last-token forward, the wavefront schedule and whole samples (random tiny
networks)."""

import pytest
import torch

from stage2_prior.decoding import StaticCache, last_logits
from stage2_prior.gpt import GPTPrior
from stage2_prior.sampling import wavefront, window_origin


def net32(window=(4, 4), layers=3, **kw) -> GPTPrior:
    torch.manual_seed(0)
    net = GPTPrior(n_codes=40, window=list(window), n_layer=layers, n_head=4, n_embd=32, **kw)
    return net.eval()


@torch.no_grad()
def test_static_cache_gives_the_forward_logits_at_every_position():
    net = net32()
    seq = torch.randint(0, 40, (3, 12))
    full = net(seq)[0]
    cache = StaticCache(net, rows=3, length=12)
    got = [cache.prefill(seq[:, :5])]
    got += [cache.step(seq[:, pos], pos) for pos in range(5, 12)]
    assert torch.allclose(torch.stack(got, 1), full[:, 4:], atol=1e-5)
    # a second prefill reuses the cache from position 0
    assert torch.allclose(cache.prefill(seq[:, :2]), full[:, 1], atol=1e-5)


@torch.no_grad()
def test_last_logits_of_ragged_prefixes_equal_each_prefix_alone():
    net = net32()
    tokens = torch.randint(0, 40, (4, 9))
    lengths = torch.tensor([9, 1, 5, 3])
    got = last_logits(net, tokens, lengths)
    for n, length in enumerate(lengths.tolist()):
        alone = net(tokens[n : n + 1, :length])[0][0, -1]
        assert torch.allclose(got[n], alone, atol=1e-5), n
    # what lies after a prefix does not matter
    other = tokens.clone()
    other[1, 1:] = (other[1, 1:] + 7) % 40
    assert torch.allclose(last_logits(net, other, lengths)[1], got[1], atol=1e-6)


@pytest.mark.parametrize("grid,window", [((4, 4), (4, 4)), ((6, 13), (4, 4)), ((36, 64), (16, 16))])
def test_wavefront_orders_every_position_after_what_its_window_shows(grid, window):
    waves = wavefront(grid, window)
    (H, W), (wh, ww) = grid, window
    when = {p: t for t, wave in enumerate(waves) for p in wave}
    assert sorted(when) == [(i, j) for i in range(H) for j in range(W)]
    for (i, j), t in when.items():
        i0, j0 = window_origin(i, H, wh), window_origin(j, W, ww)
        seen = [(a, b) for a in range(i0, i) for b in range(j0, j0 + ww)]
        seen += [(i, b) for b in range(j0, j)]
        assert all(when[p] < t for p in seen), (i, j)
    if grid == window:
        assert len(waves) == H * W
    else:  # rows overlap: far fewer forwards than tokens
        assert len(waves) < 0.7 * H * W


@pytest.mark.parametrize("waves", [True, False])
@pytest.mark.parametrize("kind", ["none", "class", "spatial", "coord"])
def test_fast_sample_equals_the_reference_on_a_wide_canvas(kind, waves):
    """Both schedules of the fast path: waves, and raster order with keys/values reused."""
    kw = {
        "none": {},
        "class": {"num_classes": 3, "class_dropout": 0.1},
        "spatial": {"n_cond_codes": 16},
        "coord": {"n_cond_codes": 64},
    }[kind]
    net = net32(condition=kind, layers=2, **kw).double()
    grid = (5, 11)
    condition = {"class": torch.tensor([2, 0]), "spatial": torch.randint(0, 16, (2, *grid))}
    extra = {"cfg_scale": 1.5} if kind == "class" else {}
    out = [
        net.sample(
            2,
            grid,
            condition.get(kind),
            generator=torch.Generator().manual_seed(5),
            cached=c,
            top_k=20,
            waves=waves,
            **extra,
        )
        for c in (True, False)
    ]
    assert torch.equal(out[0], out[1])


def test_float32_fast_paths_give_the_reference_tokens():
    """In the dtype users sample in, one window (static cache) and a wide canvas (wavefront)."""
    net = net32(window=(4, 6))
    for grid, waves in [((4, 6), None), ((7, 15), True), ((7, 15), False)]:
        fast, ref = (
            net.sample(3, grid, generator=torch.Generator().manual_seed(1), cached=c, waves=waves)
            for c in (True, False)
        )
        assert torch.equal(fast, ref), (grid, waves)
