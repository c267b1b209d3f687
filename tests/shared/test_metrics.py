import json

import numpy as np
import pytest
import torch
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from shared.inception import build_fid_inception, inception_available
from shared.metrics import (
    FeatureStats,
    FrechetDistance,
    InceptionScore,
    ReconstructionEvaluator,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mae,
    mse,
    psnr,
    ssim,
)
from shared.weights import WeightsUnavailable

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def inception():
    return build_fid_inception("random")


def astronaut(top: int, left: int, height: int, width: int) -> np.ndarray:
    """A float64 (H, W, 3) crop of skimage's astronaut in [0, 1]."""
    return data.astronaut()[top : top + height, left : left + width] / 255.0


def to_tensor(*images: np.ndarray) -> torch.Tensor:
    """(H, W, 3) arrays in [0, 1] -> (B, 3, H, W) float64 in [-1, 1]."""
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in images]) * 2 - 1


def photo_batch(n: int, size: int = 48) -> torch.Tensor:
    return to_tensor(*(astronaut(60 + 37 * i, 90 + 23 * i, size, size) for i in range(n))).float()


def add_noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + std * noise).clamp(-1, 1)


# --- per-image metrics -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 64), (96, 80)])
def test_psnr_and_ssim_match_skimage(shape):
    rng = np.random.default_rng(0)
    clean = astronaut(100, 150, *shape)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
    blurred = filters.gaussian(clean, sigma=1.2, channel_axis=-1)
    for other in (noisy, blurred):
        ours_psnr = psnr(to_tensor(clean), to_tensor(other)).item()
        ours_ssim = ssim(to_tensor(clean).float(), to_tensor(other).float()).item()
        ref_ssim = structural_similarity(
            clean,
            other,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert ours_psnr == pytest.approx(peak_signal_noise_ratio(clean, other), abs=1e-3)
        assert ours_ssim == pytest.approx(ref_ssim, abs=1e-4)


def test_per_image_metrics_are_per_image_on_the_unit_scale():
    x = photo_batch(3, 16)
    y = x.clone()
    y[1] = (y[1] + 0.2).clamp(-1, 1)
    diff = (x - y) / 2
    assert torch.allclose(mse(x, y), diff.pow(2).flatten(1).mean(1))
    assert torch.allclose(mae(x, y), diff.abs().flatten(1).mean(1))
    assert ssim(x, y)[0] == pytest.approx(1.0) and ssim(x, y)[1] < 0.999
    assert psnr(x, y)[1] == pytest.approx(-10 * mse(x, y)[1].log10().item(), rel=1e-5)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x[..., :10, :], y[..., :10, :])


# --- Frechet distance, KID, IS -----------------------------------------------------------------


def test_frechet_distance_by_hand():
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 4 + 1 - 2 * 2)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected)


def test_frechet_distance_matches_the_sqrtm_formula():
    from scipy.linalg import sqrtm

    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    b = torch.randn(200, 16, generator=g) @ torch.randn(16, 16, generator=g)
    s1, s2 = torch.cov(a.T).double(), torch.cov(b.T).double()
    mu1, mu2 = a.mean(0).double(), b.mean(0).double()
    reference = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace()
    reference -= 2 * np.trace(sqrtm(s1.numpy() @ s2.numpy())).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference.item(), rel=1e-9)


def test_feature_stats_stream_the_covariance_and_keep_the_first_rows():
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) + 3
    stats = FeatureStats(keep=20)
    for chunk in features.split(7):
        stats.update(chunk)
    mean, cov = stats.mean_cov()
    assert stats.n == 50 and cov.dtype == torch.float64
    assert torch.allclose(mean, features.double().mean(0))
    assert torch.allclose(cov, torch.cov(features.double().T))
    assert torch.equal(stats.features, features[:20])


def test_frechet_distance_class_with_a_simple_feature_fn():
    fd = FrechetDistance(lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))
    real = photo_batch(12, 32)
    fd.update(real, real=True)
    fd.update(real, real=False)
    distances = [fd.compute()]
    for std in (0.1, 0.3, 0.8):
        fd.fake.reset()
        fd.update(add_noise(real, std), real=False)
        distances.append(fd.compute())
    assert abs(distances[0]) < 1e-6 * fd.real.mean_cov()[1].trace().item()
    assert distances == sorted(distances)
    fd.reset()
    assert fd.real.n == fd.fake.n == 0


@pytest.mark.slow
def test_fid_with_the_random_inception_is_zero_for_equal_sets_and_grows_with_noise(inception):
    real = photo_batch(4, 32)
    with torch.inference_mode():
        features = [inception(add_noise(real, std))[0] for std in (0.0, 0.1, 0.3, 0.8)]
    fd = FrechetDistance(inception)
    fd.update_features(features[0], real=True)
    distances = []
    for fake in features:
        fd.fake.reset()
        fd.update_features(fake, real=False)
        distances.append(fd.compute())
    scale = fd.real.mean_cov()[1].trace().item()
    assert abs(distances[0]) < 1e-3 * scale
    assert distances[1] > 1e-3 * scale
    assert distances == sorted(distances)


def test_kid_is_about_zero_for_the_same_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    real, other = torch.randn(300, 32, generator=g), torch.randn(300, 32, generator=g)
    same, _ = kernel_inception_distance(real, real, subsets=10, subset_size=100)
    independent, _ = kernel_inception_distance(real, other, subsets=10, subset_size=100)
    shifted, spread = kernel_inception_distance(real, other + 0.5, subsets=10, subset_size=100)
    assert abs(same) < 0.1 * shifted and abs(independent) < 0.1 * shifted and spread > 0
    whole_sets = kernel_inception_distance(real[:10], other[:10] + 2, subsets=3)
    assert whole_sets[0] > 1 and whole_sets[1] == pytest.approx(0, abs=1e-9)


def test_inception_score_limits():
    confident = torch.full((40, 1008), -20.0)
    confident[:, 3] = 20.0
    assert inception_score(confident) == pytest.approx((1.0, 0.0))
    for classes in (2, 5):
        sorted_by_class = torch.full((100, 1008), -20.0)
        sorted_by_class[torch.arange(100), torch.arange(100) * classes // 100] = 20.0
        mean, std = inception_score(sorted_by_class, splits=10)
        assert mean == pytest.approx(classes, rel=1e-6) and std < 1e-6


def test_inception_score_streams_like_one_batch():
    logits = torch.randn(37, 1008, generator=torch.Generator().manual_seed(0)) * 4
    streamed = InceptionScore(splits=5)
    for chunk in logits.split(8):
        streamed.update(chunk)
    assert streamed.compute() == pytest.approx(inception_score(logits, splits=5))


# --- the FID Inception -------------------------------------------------------------------------


def test_inception_outputs_and_pytorch_fid_layout(inception):
    state = inception.state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_var"):
        assert key in state
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in state)
    assert not inception.training and not any(p.requires_grad for p in inception.parameters())
    x = photo_batch(2, 40)[..., :36]
    with torch.inference_mode():
        features, logits = inception(x)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert features.dtype == logits.dtype == torch.float32
    assert torch.allclose(logits, features @ state["fc.weight"].T)


@pytest.mark.slow
def test_inception_loads_pretrained_weights_from_a_path(inception, tmp_path, no_weights):
    assert not inception_available()
    with pytest.raises(WeightsUnavailable, match=INCEPTION_FILE):
        build_fid_inception("pretrained")
    g = torch.Generator().manual_seed(1)
    state = {
        k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in inception.state_dict().items()
    }
    torch.save(state, tmp_path / INCEPTION_FILE)
    loaded = build_fid_inception("pretrained", path=str(tmp_path / INCEPTION_FILE))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    reference = build_fid_inception("random")
    reference.load_state_dict(state)
    x = photo_batch(1, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x)[0], reference(x)[0])
    (no_weights / INCEPTION_FILE).symlink_to(tmp_path / INCEPTION_FILE)
    assert inception_available()


# --- the reconstruction evaluator --------------------------------------------------------------

KEYS = ["psnr", "ssim", "lpips_vgg", "lpips_alex", "mse", "mae"]
KEYS += ["rfid", "kid_mean", "kid_std", "is_mean", "is_std"]


@pytest.mark.slow
def test_evaluator_with_random_networks_reports_everything():
    evaluator = ReconstructionEvaluator("cpu", lpips_backbone="random", inception="random")
    real = photo_batch(4, 48)
    fake = add_noise(real, 0.1)
    with torch.inference_mode():
        evaluator.update(real[:3], fake[:3])
    evaluator.update(real[3:], fake[3:])
    result = evaluator.compute()
    assert [k for k in result if k in KEYS] == KEYS
    assert all(isinstance(result[k], float) for k in KEYS)
    assert result["unavailable"] == {}
    assert set(result["random_weights"]) == set(KEYS[2:4] + KEYS[6:])
    per_image = result["per_image"]
    assert {"psnr", "ssim", "lpips_vgg", "mse"} <= set(per_image)
    assert all(len(values) == 4 for values in per_image.values())
    assert per_image["psnr"] == pytest.approx(psnr(real, fake).tolist(), abs=1e-4)
    assert result["ssim"] == pytest.approx(np.mean(per_image["ssim"]))
    assert result["rfid"] > 0 and result["is_mean"] >= 1
    json.dumps(result)


def test_evaluator_without_weights_names_the_files_and_still_measures_pixels(no_weights):
    evaluator = ReconstructionEvaluator("cpu", keep_per_image=False)
    real = photo_batch(2, 32)
    evaluator.update(real, add_noise(real, 0.05))
    result = evaluator.compute()
    assert result["psnr"] > 20 and 0 < result["ssim"] < 1 and result["mae"] > 0
    assert "per_image" not in result and result["random_weights"] == []
    for key in KEYS[2:4] + KEYS[6:]:
        assert result[key] is None and key in result["unavailable"]
    assert INCEPTION_FILE in result["unavailable"]["rfid"]
    assert "vgg16-397923af.pth" in result["unavailable"]["lpips_vgg"]
    assert "alexnet-owt-7be5be79.pth" in result["unavailable"]["lpips_alex"]
