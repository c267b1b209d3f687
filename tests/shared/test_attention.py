import math

import pytest
import torch

from shared.attention import (
    ATTENTION_KINDS,
    AdditiveAttention,
    DotProductAttention,
    SwinWindowAttention,
    build_attention,
)

GRID = (16, 16)  # 256 tokens: two 8x8 windows per side for swin
DIM, HEADS = 32, 4

VARIANTS = [  # (kind, extra kwargs)
    ("additive", {}),
    ("additive", {"local_logits": True}),
    ("fastformer", {}),
    ("linformer", {}),
    ("swin", {}),
    ("swin", {"shift": True}),
    ("dot", {}),
    ("l2", {}),
]
MAP_SHAPES = {
    "additive": (2, HEADS, 256),
    "fastformer": (2, HEADS, 2, 256),
    "linformer": (2, HEADS, 256, 64),
    "swin": (2, HEADS, 4, 64, 64),
    "dot": (2, HEADS, 256, 256),
    "l2": (2, HEADS, 256, 256),
}


def _ids(variant):
    kind, kw = variant
    return "-".join([kind, *kw])


def _build(kind, **kw):
    torch.manual_seed(0)
    return build_attention(kind, DIM, HEADS, grid=GRID, **kw)


def _tokens(n=GRID[0] * GRID[1], batch=2):
    return torch.randn(batch, n, DIM, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_maps_have_the_documented_shape_and_sum_to_one(variant):
    kind, kw = variant
    y, maps = _build(kind, **kw)(_tokens(), return_maps=True)
    assert y.shape == (2, 256, DIM)
    assert maps.shape == MAP_SHAPES[kind]
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_output_is_the_same_with_or_without_maps(variant):
    attn = _build(variant[0], **variant[1])
    x = _tokens()
    torch.testing.assert_close(attn(x), attn(x, return_maps=True)[0])


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_gradients_reach_every_parameter_and_the_input(variant):
    attn = _build(variant[0], **variant[1])
    x = _tokens().requires_grad_(True)
    attn(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_additive_attention_matches_a_hand_computed_case():
    """1 head, dim 2, 3 tokens: q = x, k = x + 1, v = 2x, y = r + (0.5, -0.5)."""
    attn = AdditiveAttention(dim=2, heads=1)
    eye = torch.eye(2)
    with torch.no_grad():
        attn.to_qkv.weight.copy_(torch.cat([eye, eye, 2 * eye]))
        attn.to_qkv.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]))
        attn.pool.w.copy_(torch.tensor([[math.sqrt(2) * math.log(2), 0.0]]))
        attn.to_out.weight.copy_(eye)
        attn.to_out.bias.copy_(torch.tensor([0.5, -0.5]))
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    y, alpha = attn(x, return_maps=True)
    # logits w.q / sqrt(2) = ln2 * q[0] = (ln2, 0, ln2) -> exp (2, 1, 2) -> alpha (.4, .2, .4)
    torch.testing.assert_close(alpha, torch.tensor([[[0.4, 0.2, 0.4]]]))
    # q_G = .4 (1, 0) + .2 (0, 1) + .4 (1, 1) = (.8, .6)
    # k = (2, 1), (1, 2), (2, 2); v = (2, 0), (0, 2), (2, 2); r = q_G * k * v
    r = torch.tensor([[[3.2, 0.0], [0.0, 2.4], [3.2, 2.4]]])
    torch.testing.assert_close(y, r + torch.tensor([0.5, -0.5]))


@pytest.mark.parametrize("kind", ["additive", "fastformer", "dot"])
def test_permuting_tokens_permutes_outputs_and_maps(kind):
    attn, x = _build(kind), _tokens()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(2))
    y, maps = attn(x, return_maps=True)
    y_perm, maps_perm = attn(x[:, perm], return_maps=True)
    torch.testing.assert_close(y_perm, y[:, perm])
    if kind != "dot":
        torch.testing.assert_close(maps_perm, maps[..., perm])


def test_additive_output_depends_on_other_tokens_only_through_the_global_query():
    """Duplicating the sequence halves alpha but keeps q_G, so every output stays the same;
    and a token's output changes with another token exactly as q_G does."""
    attn, x = _build("additive"), _tokens()
    y, alpha = attn(x, return_maps=True)
    y2, alpha2 = attn(torch.cat([x, x], dim=1), return_maps=True)
    torch.testing.assert_close(y2, torch.cat([y, y], dim=1))
    torch.testing.assert_close(alpha2, torch.cat([alpha, alpha], dim=-1) / 2)

    q, k, v = attn.to_qkv(x).chunk(3, dim=-1)
    q_global = torch.einsum("bhn,bnhd->bhd", alpha, q.unflatten(-1, (HEADS, -1)))
    r = q_global.flatten(1)[:, None] * k * v
    torch.testing.assert_close(y, attn.to_out(r))


def test_local_logits_use_only_their_heads_channels():
    attn = _build("additive", local_logits=True)
    assert attn.pool.w.shape == (HEADS, DIM // HEADS)
    x = _tokens()
    q_shift = torch.zeros(DIM)
    q_shift[DIM // HEADS :] = 1.0  # moves every q of heads 1..3, leaves head 0 alone
    with torch.no_grad():
        _, alpha = attn(x, return_maps=True)
        attn.to_qkv.bias[:DIM] += torch.randn(DIM) * q_shift
        _, alpha_moved = attn(x, return_maps=True)
    torch.testing.assert_close(alpha_moved[:, 0], alpha[:, 0])


def test_swin_with_one_window_and_no_bias_is_dot_product_attention():
    swin = SwinWindowAttention(DIM, HEADS, grid=(8, 8), window=8)
    dot = DotProductAttention(DIM, HEADS)
    dot.load_state_dict({k: v for k, v in swin.state_dict().items() if k != "rel_bias"})
    with torch.no_grad():
        swin.rel_bias.zero_()
    x = _tokens(64)
    torch.testing.assert_close(swin(x), dot(x))


@pytest.mark.parametrize(
    ("shift", "token", "reached"),
    [
        (False, (5, 5), (slice(0, 8), slice(0, 8))),  # its own 8x8 window
        (True, (5, 5), (slice(4, 12), slice(4, 12))),  # the window shifted by 4
        (True, (0, 0), (slice(0, 4), slice(0, 4))),  # a corner piece the roll wrapped: masked
    ],
)
def test_swin_tokens_mix_only_inside_their_window(shift, token, reached):
    attn = _build("swin", shift=shift)
    x = _tokens(batch=1)
    moved = x.clone().view(1, *GRID, DIM)
    moved[0, token[0], token[1]] += 1.0
    with torch.no_grad():
        changed = (attn(moved.view(1, -1, DIM)) - attn(x)).abs().amax(-1).view(GRID) > 1e-6
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[reached] = True
    assert torch.equal(changed, expected)


def test_factory_builds_every_kind_with_its_own_sizes():
    assert _build("linformer").seq_len == 256
    assert _build("linformer", k=16)(_tokens(), return_maps=True)[1].shape[-1] == 16
    assert _build("swin").window == 8 and _build("swin", shift=True).shift == 4
    assert _build("swin", window=4)(_tokens(), return_maps=True)[1].shape == (2, 4, 16, 16, 16)
    for kind in ATTENTION_KINDS:
        assert _build(kind)(_tokens()).shape == (2, 256, DIM)


def test_unknown_kind_is_a_one_line_error_listing_the_kinds():
    with pytest.raises(ValueError) as err:
        build_attention("flash", DIM, HEADS)
    message = str(err.value)
    assert "\n" not in message and "flash" in message
    assert all(kind in message for kind in ATTENTION_KINDS)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: build_attention("additive", 30, 4), "divisible by heads"),
        (lambda: build_attention("linformer", DIM, HEADS), "seq_len"),
        (lambda: build_attention("swin", DIM, HEADS), "grid"),
        (lambda: build_attention("swin", DIM, HEADS, grid=(12, 16)), "windows"),
    ],
)
def test_bad_sizes_are_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("kind", ["linformer", "swin"])
def test_fixed_length_kinds_refuse_another_sequence_length(kind):
    with pytest.raises(ValueError, match="built for"):
        _build(kind)(_tokens(64))
