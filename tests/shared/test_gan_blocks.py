import pytest
import torch
import torch.nn.functional as F

from shared.gan_blocks import (
    FastGANDownBlock,
    PixelShuffleUpsample,
    SelfModulatedLayerNorm,
    SpaceToDepth,
    map_to_tokens,
    space_to_depth,
    tokens_to_map,
)


def test_sln_modulates_by_the_condition_and_is_plain_layernorm_for_zero_weights():
    torch.manual_seed(0)
    sln = SelfModulatedLayerNorm(16, cond_dim=8)
    x, z = torch.randn(2, 5, 16), torch.randn(2, 8)
    out = sln(x, z)
    assert out.shape == x.shape
    assert not torch.allclose(out, sln(x, torch.randn(2, 8)))
    # the samples share x but not z: their outputs differ
    same_x = sln(x[:1].expand(2, -1, -1), z)
    assert not torch.allclose(same_x[0], same_x[1])

    torch.nn.init.zeros_(sln.to_gamma_beta.weight)
    torch.nn.init.zeros_(sln.to_gamma_beta.bias)
    plain = F.layer_norm(x, (16,), eps=1e-6)
    torch.testing.assert_close(sln(x, z), plain)


def test_sln_is_gamma_beta_affine_of_layernorm():
    torch.manual_seed(0)
    sln = SelfModulatedLayerNorm(6, cond_dim=3, hidden_dim=0)  # gamma, beta linear in c
    with torch.no_grad():
        sln.to_gamma_beta.weight.zero_()
        sln.to_gamma_beta.bias.copy_(torch.tensor([1.0] * 6 + [0.5] * 6))
    x = torch.randn(4, 2, 3, 6)  # any number of token dims
    expected = 2.0 * F.layer_norm(x, (6,), eps=1e-6) + 0.5
    torch.testing.assert_close(sln(x, torch.randn(4, 3)), expected)


def test_pixel_shuffle_upsample_quadruples_tokens_and_sets_the_embedding():
    up = PixelShuffleUpsample(64, out_dim=32)
    x = torch.randn(2, 8 * 8, 64)
    y = up(x)
    assert y.shape == (2, 16 * 16, 32)
    assert PixelShuffleUpsample(64)(x).shape == (2, 256, 16)  # locality only
    assert up(torch.randn(2, 4 * 6, 64), size=(4, 6)).shape == (2, 8 * 12, 32)
    rgb = PixelShuffleUpsample(32, 3, factor=4)(torch.randn(1, 4, 32))
    assert tokens_to_map(rgb, (8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="square"):
        up(torch.randn(1, 12, 64))


def test_pixel_shuffle_upsample_is_shuffle_then_conv():
    up = PixelShuffleUpsample(16, out_dim=8)
    x = torch.randn(1, 9, 16)
    expected = up.conv(F.pixel_shuffle(tokens_to_map(x, (3, 3)), 2))
    torch.testing.assert_close(tokens_to_map(up(x), (6, 6)), expected)


def test_token_map_round_trip_is_row_major():
    x = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    m = tokens_to_map(x, (2, 3))
    assert m[0, :, 1, 0].tolist() == x[0, 3].tolist()
    torch.testing.assert_close(map_to_tokens(m), x)


def test_space_to_depth_inverts_pixel_shuffle():
    x = torch.randn(2, 3, 8, 12)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 12, 4, 6)
    torch.testing.assert_close(F.pixel_shuffle(y, 2), x)
    z = torch.randn(2, 16, 3, 5)
    torch.testing.assert_close(SpaceToDepth(2)(F.pixel_shuffle(z, 2)), z)
    # channel c*4 + i*2 + j holds pixel (i, j) of each 2x2 block
    assert y[0, 1 * 4 + 1 * 2 + 0, 2, 3] == x[0, 1, 5, 6]


@pytest.mark.parametrize("batch_norm", [True, False])
def test_fastgan_down_block_halves_resolution_and_passes_gradients(batch_norm):
    torch.manual_seed(0)
    block = FastGANDownBlock(3, 8, batch_norm=batch_norm)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = block(x)
    assert y.shape == (4, 8, 8, 8)
    y.square().mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules())
    assert has_bn == batch_norm


def test_gradients_reach_sln_condition_and_upsample_input():
    sln = SelfModulatedLayerNorm(16, cond_dim=4)
    up = PixelShuffleUpsample(16, 8)
    x = torch.randn(2, 16, 16, requires_grad=True)
    z = torch.randn(2, 4, requires_grad=True)
    up(sln(x, z)).sum().backward()
    assert x.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
