"""Reconstruction benchmark of tokenizers on a set of images, in one pass per tokenizer.

Protocol (defaults): the shorter side is resized to ``resolution`` and the centre is cropped; the
reconstruction goes through an 8-bit round trip before any metric; PSNR/SSIM/MSE/MAE on [0, 1];
LPIPS (VGG, AlexNet); rFID and KID of reconstructions against the originals and the Inception
Score of the reconstructions (Inception-v3 FID weights); codebook usage over the whole set.

Any tokenizer plugs in through :class:`Tokenizer`: ``encode(x) -> (B,h,w)`` indices,
``decode(indices) -> images``, ``n_embed`` and ``downsample_factor``."""

from __future__ import annotations

import contextlib
import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from shared.config import DataConfig
from shared.data import build_dataset
from shared.images import quantize_8bit
from shared.metrics import ReconstructionEvaluator
from stage1_vqgan.load import load_tokenizer


class Tokenizer(Protocol):
    n_embed: int
    downsample_factor: int

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, indices: torch.Tensor) -> torch.Tensor: ...


@dataclass
class BenchmarkProtocol:
    """How images are prepared and compared (recorded in the results)."""

    resolution: int = 256
    crop: str = "center"  # shorter side resized to `resolution`, then this crop
    round_trip_8bit: bool = True
    num_images: int | None = None
    batch_size: int = 16
    lpips_backbone: str = "pretrained"
    inception: str = "pretrained"


@dataclass
class TokenizerResult:
    name: str
    source: str
    metrics: dict = field(default_factory=dict)
    per_image: dict = field(default_factory=dict)
    code_counts: list[int] = field(default_factory=list)
    unavailable: dict = field(default_factory=dict)


def load_any_tokenizer(source: str, config: str | None = None) -> Tokenizer:
    """Our checkpoints and taming ones through :func:`load_tokenizer`; another project's tokenizer
    through ``py:MODULE:FUNCTION`` (a function returning a :class:`Tokenizer`, given the config)."""
    if source.startswith("py:"):
        module, _, func = source[3:].partition(":")
        factory: Callable = getattr(importlib.import_module(module), func)
        return factory(config) if config else factory()
    return load_tokenizer(source, config)


def codebook_stats(counts: torch.Tensor) -> dict[str, float]:
    """Usage (fraction of codes ever used), entropy in bits and perplexity of a code histogram."""
    p = counts.double() / counts.sum().clamp(min=1)
    nz = p[p > 0]
    entropy = float(-(nz * nz.log2()).sum())
    return {
        "usage": float((counts > 0).double().mean()),
        "entropy_bits": entropy,
        "perplexity": 2.0**entropy,
    }


class PeakMemory:
    """Working memory of a block: its peak minus what was in use when it started (CUDA
    allocations on GPU, resident set size on Linux CPUs; None where neither can be read)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, None

    def _now_and_peak(self) -> tuple[float, float] | None:
        if self.device.type == "cuda":
            return (
                torch.cuda.memory_allocated(self.device) / 2**20,
                torch.cuda.max_memory_allocated(self.device) / 2**20,
            )
        status = Path("/proc/self/status")
        if not status.exists():
            return None
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        start = self._now_and_peak()
        self._start = start[0] if start else None
        return self

    def __exit__(self, *exc):
        end = self._now_and_peak()
        if end is not None and self._start is not None:
            self.peak_mib = max(end[1] - self._start, 0.0)


def fit_channels(x: torch.Tensor, target) -> torch.Tensor:
    """(B, C, H, W) images as ``target`` channels (an int, or a tokenizer's input channels):
    RGB -> grey by the channel mean, grey -> RGB by repetition."""
    channels = (
        target
        if isinstance(target, int)
        else getattr(target, "config", {}).get("in_channels", x.shape[1])
    )
    if x.shape[1] == channels:
        return x
    return x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)


def round_trip(tok: Tokenizer, x: torch.Tensor) -> torch.Tensor:
    """Encode and decode (B, C, H, W) images in [-1, 1], with ``x``'s channels back."""
    return fit_channels(tok.decode(tok.encode(fit_channels(x, tok))).float(), x.shape[1])


def benchmark_tokenizer(
    tok: Tokenizer, name: str, source: str, data, protocol: BenchmarkProtocol, device: torch.device
) -> TokenizerResult:
    """Encode/decode every image once, timing both, and feed the evaluator."""
    evaluator = ReconstructionEvaluator(
        device, lpips_backbone=protocol.lpips_backbone, inception=protocol.inception
    )
    n = len(data) if protocol.num_images is None else min(protocol.num_images, len(data))
    counts = torch.zeros(tok.n_embed, dtype=torch.long)
    encode_s = decode_s = 0.0
    tokens = 0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        warm = torch.stack([data[0]["image"]]).to(device)
        round_trip(tok, warm)
    bar = tqdm(total=n, desc=name, unit="img", dynamic_ncols=True)
    peak_mib = None
    with torch.inference_mode():
        for start in range(0, n, protocol.batch_size):
            x = torch.stack(
                [data[i]["image"] for i in range(start, min(n, start + protocol.batch_size))]
            )
            x = x.to(device)
            sync()
            with PeakMemory(device) as memory:
                t0 = time.perf_counter()
                idx = tok.encode(fit_channels(x, tok))
                sync()
                t1 = time.perf_counter()
                rec = fit_channels(tok.decode(idx).float().clamp(-1, 1), x.shape[1])
                sync()
            if memory.peak_mib is not None:
                peak_mib = max(peak_mib or 0.0, memory.peak_mib)
            encode_s += t1 - t0
            decode_s += time.perf_counter() - t1
            if protocol.round_trip_8bit:
                rec = quantize_8bit(rec)
            evaluator.update(x.float(), rec)
            counts += torch.bincount(idx.flatten().cpu(), minlength=tok.n_embed)
            tokens = idx[0].numel()
            bar.update(len(x))
    bar.close()
    result = evaluator.compute()
    per_image = result.pop("per_image", {})
    unavailable = result.pop("unavailable", {})
    metrics = {
        **result,
        **codebook_stats(counts),
        "codebook_size": tok.n_embed,
        "tokens_per_image": tokens,
        "bits_per_image": tokens * math.log2(tok.n_embed),
        "encode_img_s": n / max(encode_s, 1e-9),
        "decode_img_s": n / max(decode_s, 1e-9),
        "peak_memory_mib": peak_mib,
        "num_images": n,
    }
    return TokenizerResult(name, source, metrics, per_image, counts.tolist(), unavailable)


def benchmark_data(source: str, protocol: BenchmarkProtocol):
    cfg = DataConfig(source=source, resolution=protocol.resolution, crop=protocol.crop, flip=False)
    return build_dataset(cfg, "all")
