import pytest
import torch

from shared.gan_losses import bcr_penalty, mode_seeking_penalty, r1_penalty


def test_r1_matches_the_analytic_gradient_of_a_quadratic_discriminator():
    # D(x) = sum(a * x^2) per sample -> grad = 2 a x, R1 = mean_b sum (2 a x_b)^2
    torch.manual_seed(0)
    a = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (a * x.square()).flatten(1).sum(1)
    r1 = r1_penalty(logits, x)
    expected = (2 * a.detach() * x.detach()).square().flatten(1).sum(1).mean()
    assert r1.item() == pytest.approx(expected.item(), rel=1e-6)
    # differentiable w.r.t. D's parameters: d/da mean_b sum 4 a^2 x^2 = 8 a mean_b x^2
    r1.backward()
    torch.testing.assert_close(a.grad, 8 * a.detach() * x.detach().square().mean(0))


def test_r1_by_hand_on_tiny_numbers_and_patch_logits():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    # patch logits (B, 2): [3 x0, x1^2]; grad per sample = [3, 2 x1]
    logits = torch.stack([3 * x[:, 0], x[:, 1] ** 2], dim=1)
    # sample 0: 9 + 16 = 25, sample 1: 9 + 4 = 13 -> mean 19
    assert r1_penalty(logits, x).item() == pytest.approx(19.0)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.zeros(2), torch.zeros(2, 2))


def test_bcr_by_hand():
    real, real_aug = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    fake, fake_aug = torch.tensor([-1.0, 0.5]), torch.tensor([-1.0, -0.5])
    # real: (1 + 4) / 2 = 2.5, fake: (0 + 1) / 2 = 0.5
    assert bcr_penalty(real, real_aug, fake, fake_aug).item() == pytest.approx(3.0)
    got = bcr_penalty(real, real_aug, fake, fake_aug, real_weight=10.0, fake_weight=0.1)
    assert got.item() == pytest.approx(25.05)
    # patch logits are averaged over every element
    p = bcr_penalty(torch.ones(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4))
    assert p.item() == pytest.approx(1.0)


def test_bcr_gradient_reaches_both_logits_of_a_pair():
    real = torch.tensor([1.0, 3.0], requires_grad=True)
    real_aug = torch.tensor([0.0, 1.0], requires_grad=True)
    fake, fake_aug = torch.zeros(2), torch.zeros(2)
    bcr_penalty(real, real_aug, fake, fake_aug).backward()
    # d/dr mean((r - t)^2) = (r - t) for a batch of 2
    torch.testing.assert_close(real.grad, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(real_aug.grad, -real.grad)


def test_mode_seeking_by_hand_and_against_collapse():
    # pairs (0, 2) and (1, 3): output gaps 2 and 1, latent gaps 1 and 2 -> ratios 2 and 0.5
    fake = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [2.0, 2.0]])
    z = torch.tensor([[0.0], [0.0], [1.0], [2.0]])
    expected = (1 / (2 + 1e-5) + 1 / (0.5 + 1e-5)) / 2
    assert mode_seeking_penalty(fake, z).item() == pytest.approx(expected)
    # a collapsed generator (same output for every latent) is penalised far more
    collapsed = mode_seeking_penalty(torch.ones(4, 2), z)
    assert collapsed.item() > 1e4
    with pytest.raises(ValueError, match="even batch"):
        mode_seeking_penalty(torch.zeros(3, 2), torch.zeros(3, 1))


def test_mode_seeking_gradient_spreads_a_collapsing_generator():
    """Descending the term alone pulls apart the outputs of distinct latents."""
    torch.manual_seed(0)
    g = torch.nn.Linear(4, 8)
    with torch.no_grad():
        g.weight.mul_(0.01)  # nearly constant outputs
    z = torch.randn(16, 4)
    opt = torch.optim.SGD(g.parameters(), lr=1e-3)
    before = mode_seeking_penalty(g(z), z).item()
    for _ in range(20):
        opt.zero_grad()
        mode_seeking_penalty(g(z), z).backward()
        opt.step()
    assert mode_seeking_penalty(g(z), z).item() < before / 2
