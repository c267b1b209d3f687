import pytest
import torch

from stage1_vqgan.quantizer import VectorQuantizer, nearest_code


def latents(b=2, d=8, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, h, w, generator=g)


def test_shapes_and_nearest_code_match_brute_force():
    vq = VectorQuantizer(32, 8)
    vq.embedding.weight.data.normal_()
    z = latents()
    out = vq(z)
    assert out.z_q.shape == z.shape
    assert out.indices.shape == (2, 4, 4) and out.indices.dtype == torch.long
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(flat, vq.embedding.weight).argmin(1).reshape(2, 4, 4)
    assert torch.equal(out.indices, expected)
    assert torch.allclose(out.z_q, vq.lookup(out.indices), atol=1e-6)


def test_chunked_search_equals_one_shot():
    g = torch.Generator().manual_seed(1)
    z, codes = torch.randn(1000, 16, generator=g), torch.randn(4096, 16, generator=g)
    assert torch.equal(nearest_code(z, codes, chunk=7), nearest_code(z, codes, chunk=1000))


def test_straight_through_gradient_reaches_encoder_and_codebook():
    vq = VectorQuantizer(16, 8)
    z = latents().requires_grad_(True)
    out = vq(z)
    (out.z_q.sum() + out.loss).backward()
    # the straight-through term passes d(sum)/dz_q = 1 unchanged to z
    z2 = latents().requires_grad_(True)
    vq(z2).z_q.sum().backward()
    assert torch.allclose(z2.grad, torch.ones_like(z2))
    assert vq.embedding.weight.grad is not None and vq.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("legacy", [False, True])
def test_beta_placement(legacy):
    beta = 0.25
    vq = VectorQuantizer(16, 8, beta=beta, legacy_beta=legacy)
    vq.embedding.weight.data.normal_()
    z = latents().requires_grad_(True)
    out = vq(z)
    out.loss.backward()
    q = vq.lookup(out.indices)
    commit_grad = 2 * (z - q).detach() / z.numel()
    expected = commit_grad * (1.0 if legacy else beta)
    assert torch.allclose(z.grad, expected, atol=1e-7)
    code_grad_total = vq.embedding.weight.grad.abs().sum()
    vq.embedding.weight.grad = None
    ref = VectorQuantizer(16, 8, beta=beta, legacy_beta=not legacy)
    ref.load_state_dict(vq.state_dict())
    ref(latents()).loss.backward()
    ratio = code_grad_total / ref.embedding.weight.grad.abs().sum()
    assert ratio == pytest.approx(beta if legacy else 1 / beta, rel=1e-4)


def test_usage_and_perplexity_equal_a_direct_count():
    vq = VectorQuantizer(8, 4)
    vq.embedding.weight.data.normal_()
    out = vq(latents(d=4))
    counts = torch.bincount(out.indices.flatten(), minlength=8).float()
    p = counts / counts.sum()
    nz = p[p > 0]
    assert out.usage.item() == pytest.approx((counts > 0).float().mean().item())
    assert out.perplexity.item() == pytest.approx(
        torch.exp(-(nz * nz.log()).sum()).item(), rel=1e-5
    )


def test_ema_moves_used_codes_toward_their_latents():
    vq = VectorQuantizer(4, 2, ema=True, ema_decay=0.5).train()
    vq.embedding.weight.data = torch.tensor(
        [[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]
    )
    vq.ema_sum.copy_(vq.embedding.weight.data)
    target = torch.tensor([1.0, 1.0])
    z = (target + 0.01 * torch.randn(64, 2)).T.reshape(1, 2, 8, 8)
    assert not vq.embedding.weight.requires_grad
    before = vq.embedding.weight[0].clone()
    for _ in range(20):
        vq(z)
    after = vq.embedding.weight[0]
    assert (after - target).norm() < 0.1 * (before - target).norm()
    assert vq(z).indices.unique().tolist() == [0]


def test_restart_revives_dead_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, restart_unused_steps=2).train()
    vq.embedding.weight.data.fill_(100.0)
    vq.embedding.weight.data[0] = 0.0
    z = latents(b=4, d=4)
    assert vq(z).usage.item() == pytest.approx(1 / 16)
    vq(z)  # second unused step: the 15 dead codes are re-seeded from current latents
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    revived = vq.embedding.weight.data[1:]
    dist = torch.cdist(revived, flat).min(1).values
    assert torch.all(dist < 1e-5)
    assert vq(z).usage.item() > 0.5


def test_l2_normalised_codes_use_cosine_similarity():
    vq = VectorQuantizer(32, 8, l2_normalize=True)
    vq.embedding.weight.data.normal_()
    z = latents()
    out = vq(z)
    flat = torch.nn.functional.normalize(z.permute(0, 2, 3, 1).reshape(-1, 8), dim=1)
    codes = torch.nn.functional.normalize(vq.embedding.weight, dim=1)
    assert torch.equal(out.indices.flatten(), (flat @ codes.T).argmax(1))
    assert torch.allclose(vq.codes().norm(dim=1), torch.ones(32))


def test_low_dimensional_lookup():
    vq = VectorQuantizer(64, 16, codebook_dim=4)
    assert vq.embedding.weight.shape == (64, 4)
    z = latents(d=16).requires_grad_(True)
    out = vq(z)
    assert out.z_q.shape == z.shape
    (out.z_q.sum() + out.loss).backward()
    assert vq.in_proj.weight.grad is not None and vq.out_proj.weight.grad is not None
    assert vq.lookup(out.indices).shape == z.shape
