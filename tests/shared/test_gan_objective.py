import pytest
import torch
from torch import nn

from shared.gan_losses import discriminator_loss
from shared.gan_objective import GANObjective, frozen


class Quadratic(nn.Module):
    """D(x) = sum(a * x^2) per sample: grad_x D = 2 a x."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(3, 4))

    def forward(self, x):
        return (self.a * x.square()).flatten(1).sum(1)


def test_r1_is_taken_on_the_real_inputs_and_weighted_gamma_over_two():
    torch.manual_seed(0)
    d, real, fake = Quadratic(), torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    loss, logs = GANObjective("non_saturating", r1_gamma=4.0).discriminator_loss(d, real, fake)
    expected_r1 = (2 * d.a.detach() * real).square().flatten(1).sum(1).mean()
    assert logs["r1"] == pytest.approx(expected_r1.item(), rel=1e-6)
    adversarial = discriminator_loss("non_saturating", d(real), d(fake))
    assert logs["d_loss"] == pytest.approx(adversarial.item(), rel=1e-6)
    assert loss.item() == pytest.approx(adversarial.item() + 2.0 * expected_r1.item(), rel=1e-6)
    assert not real.requires_grad  # the caller's tensor is left alone
    loss.backward()
    assert d.a.grad is not None


def test_generator_step_trains_g_only_and_leaves_d_trainable_even_when_it_raises():
    d = Quadratic()
    d.a.requires_grad_(True)
    fake = torch.randn(2, 3, 4, requires_grad=True)
    GANObjective("hinge").generator_loss(d, fake).backward()
    assert fake.grad is not None and d.a.grad is None and d.a.requires_grad

    def broken(x):
        raise RuntimeError("boom")

    d.forward = broken
    with pytest.raises(RuntimeError, match="boom"):
        GANObjective("hinge").generator_loss(d, fake)
    assert d.a.requires_grad


def test_frozen_restores_each_parameter_flag():
    net = nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert net.weight.requires_grad and not net.bias.requires_grad


def test_logs_take_the_task_names():
    d, x = Quadratic(), torch.randn(2, 3, 4)
    names = {"d_loss": "loss_d", "d_real": "logits_real"}
    _, logs = GANObjective("hinge", log_names=names).discriminator_loss(d, x, x)
    assert set(logs) == {"loss_d", "logits_real", "d_fake"}
