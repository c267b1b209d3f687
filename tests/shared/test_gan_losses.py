import pytest
import torch

from shared.gan_losses import bcr_penalty, r1_penalty


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
