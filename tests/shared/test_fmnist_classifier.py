import json
from importlib import resources

import pytest
import torch
from safetensors.torch import save_file

from shared.config import DataConfig
from shared.data import FASHION_MNIST_DIR, build_dataset
from shared.fmnist_classifier import (
    FEATURE_DIM,
    FashionMNISTClassifier,
    fd_fmnist,
    fmnist_feature_fn,
    load_fmnist_classifier,
)
from shared.metrics import FrechetDistance

needs_data = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST test set not installed in {FASHION_MNIST_DIR}",
)


def load_test_set(n: int, resolution: int = 28, channels: int = 1) -> tuple[torch.Tensor, ...]:
    """The first ``n`` Fashion-MNIST test images as the data module serves them, (n, C, R, R) in
    [-1, 1], and their labels (n,)."""
    cfg = DataConfig(
        source="builtin:fashion-mnist", resolution=resolution, channels=channels, flip=False
    )
    ds = build_dataset(cfg, split="val")
    items = [ds[i] for i in range(n)]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    return load_test_set(2000)


@pytest.fixture(scope="module")
def classifier() -> FashionMNISTClassifier:
    return load_fmnist_classifier()


def accuracy(model: FashionMNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def test_committed_weights_are_small_frozen_and_described(classifier):
    assets = resources.files("shared") / "assets"
    assert len((assets / "fmnist_classifier.safetensors").read_bytes()) < 2_000_000
    meta = json.loads((assets / "fmnist_classifier.json").read_text())
    assert meta["feature_dim"] == FEATURE_DIM and meta["test_accuracy"] >= 0.90
    assert meta["params"] == sum(p.numel() for p in classifier.parameters())
    assert not classifier.training
    assert not any(p.requires_grad for p in classifier.parameters())


@needs_data
def test_classifier_is_accurate_on_real_test_images(classifier, test_set):
    acc = accuracy(classifier, *test_set)
    assert acc >= 0.88


@needs_data
def test_rgb_and_other_sizes_are_accepted(classifier, test_set):
    images, labels = test_set[0][:1000], test_set[1][:1000]
    rgb32 = load_test_set(1000, resolution=32, channels=3)[0]
    with torch.no_grad():
        features = classifier.features(rgb32)
        acc = float((classifier.head(features).argmax(1) == labels).float().mean())
    assert features.shape == (1000, FEATURE_DIM) and acc >= 0.85
    uniform = torch.rand(rgb32.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert fd_fmnist(images, rgb32) < 0.1 * fd_fmnist(rgb32, uniform)


def test_identical_sets_are_at_distance_zero():
    x = torch.rand(300, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert abs(fd_fmnist(x, x)) < 1e-4


@needs_data
def test_distance_grows_with_corruption(test_set):
    images = test_set[0]
    real, other = images[:1000], images[1000:2000]
    gen = torch.Generator().manual_seed(0)
    noisy = (real + 0.5 * torch.randn(real.shape, generator=gen)).clamp(-1, 1)
    uniform = torch.rand(real.shape, generator=gen) * 2 - 1
    fd_real, fd_noisy, fd_uniform = (fd_fmnist(real, x) for x in (other, noisy, uniform))
    assert fd_real < fd_noisy < fd_uniform
    assert fd_real < 0.1 * fd_noisy


def test_feature_fn_batches_without_gradients(classifier):
    x = torch.rand(70, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    feats = fmnist_feature_fn("cpu", batch_size=32)(x.requires_grad_())
    assert feats.shape == (70, FEATURE_DIM) and feats.dtype == torch.float32
    assert not feats.requires_grad and (feats >= 0).all()
    torch.testing.assert_close(feats, classifier.features(x.detach()), atol=1e-5, rtol=1e-5)


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(B, 1\|3, H, W\)"):
        load_fmnist_classifier().features(torch.zeros(2, 2, 28, 28))
    with pytest.raises(FileNotFoundError, match="train_fmnist_classifier") as info:
        load_fmnist_classifier(tmp_path / "missing.safetensors")
    assert "\n" not in str(info.value)
    save_file({"weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="does not hold FD-FMNIST") as info:
        load_fmnist_classifier(tmp_path / "other.safetensors")
    assert "\n" not in str(info.value)


def test_streaming_frechet_distance_agrees_with_fd_fmnist():
    gen = torch.Generator().manual_seed(2)
    real = torch.rand(300, 1, 28, 28, generator=gen) * 2 - 1
    fake = (real + 0.3 * torch.randn(real.shape, generator=gen)).clamp(-1, 1)
    streaming = FrechetDistance(fmnist_feature_fn("cpu"))
    for batch in real.split(128):
        streaming.update(batch, real=True)
    for batch in fake.split(100):
        streaming.update(batch, real=False)
    assert streaming.compute() == pytest.approx(fd_fmnist(real, fake), rel=1e-5, abs=1e-6)
