import pytest
import torch

from shared.gan_losses import LeCam, discriminator_loss, generator_loss
from stage1_vqgan.config import LossConfig
from stage1_vqgan.losses import VQGANLoss, adaptive_weight


def test_adaptive_weight_is_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.nn.Parameter(torch.randn(3, 4))
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    rec, gan = (w * a).sum(), (w * b).sum()
    got = adaptive_weight(rec, gan, w, delta=1e-4, max_weight=1e4)
    assert got.item() == pytest.approx((a.norm() / (b.norm() + 1e-4)).item(), rel=1e-6)
    assert not got.requires_grad
    tiny = adaptive_weight((w * a).sum(), (w * b * 1e-9).sum(), w, delta=1e-12, max_weight=50.0)
    assert tiny.item() == 50.0


def test_gan_losses_on_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    hinge = 0.5 * (torch.tensor([0.0, 0.5]).mean() + torch.tensor([0.0, 1.5]).mean())
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(hinge.item())
    sp = torch.nn.functional.softplus
    vanilla = 0.5 * (sp(-real).mean() + sp(fake).mean())
    assert discriminator_loss("vanilla", real, fake).item() == pytest.approx(vanilla.item())
    assert generator_loss("hinge", fake).item() == pytest.approx(0.75)
    assert generator_loss("non_saturating", fake).item() == pytest.approx(sp(-fake).mean().item())
    with pytest.raises(ValueError):
        generator_loss("wasserstein", fake)


def test_lecam_penalises_outputs_beyond_the_opposite_ema():
    reg = LeCam(decay=0.0)
    value = reg(torch.tensor([3.0]), torch.tensor([-1.0]))
    # with decay 0 the EMAs equal the current means: relu(3 - -1)^2 + relu(3 - -1)^2
    assert value.item() == pytest.approx(32.0)


def test_generator_loss_adds_adaptive_gan_term_only_when_logits_given():
    loss = VQGANLoss(LossConfig(perceptual_weight=0.0, disc_weight=0.5))
    last = torch.nn.Parameter(torch.randn(3, 3))
    x = torch.zeros(1, 3)
    xrec = (last @ torch.ones(3)).unsqueeze(0)
    before, logs = loss.generator(x, xrec, torch.tensor(0.1), None, last)
    assert "g_loss" not in logs
    assert before.item() == pytest.approx(xrec.abs().mean().item() + 0.1, rel=1e-6)
    fake = (xrec * 2).sum().reshape(1, 1)
    after, logs = loss.generator(x, xrec, torch.tensor(0.1), fake, last)
    assert logs["d_weight"] > 0
    expected = before.item() + float(logs["d_weight"]) * -fake.item()
    assert after.item() == pytest.approx(expected, rel=1e-5)
    assert not loss.disc_active(9999) and loss.disc_active(10000)
