"""Tokenizer benchmark: throughput and memory, each as a ratio against a baseline run here.

1. encode+decode images/s for ``vqgan-f16-1024`` at 256x256 and ``vqgan-tiny`` at 32x32:
   baseline = fp32, NCHW, ``no_grad``; ours = ``inference_mode`` + channels_last (+ bf16 autocast
   on CUDA).
2. training steps/s of the full VQGAN step (autoencoder + LPIPS + adaptive GAN weight +
   discriminator) through the real engine: baseline = fp32 NCHW; ours = channels_last
   (+ bf16 on CUDA).
3. nearest-code search over 16384 codes for 32 grids of 16x16 (8192 rows of dim 256): peak
   resident memory (Linux VmHWM) and time, chunked vs. naive (the whole N x K distance matrix),
   each variant in a fresh subprocess.

    python scripts/bench_tokenizer.py [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from contextlib import nullcontext

import torch
from torch.utils import benchmark

from shared.config import build_config, read_preset
from shared.data import build_dataset
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def preset(name: str, *overrides: str) -> VQGANConfig:
    return build_config(VQGANConfig, read_preset(name, "stage1_vqgan"), overrides=list(overrides))


def seconds(fn, min_time: float) -> float:
    fn()
    return (
        benchmark.Timer(stmt="fn()", globals={"fn": fn})
        .blocked_autorange(min_run_time=min_time)
        .median
    )


def autocast(device: str, fast: bool):
    if fast and device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def codec_throughput(cfg: VQGANConfig, batch: int, device: str, min_time: float) -> dict:
    model = VQModel.from_config(cfg.model).to(device).eval()
    r = cfg.data.resolution
    x = torch.rand(batch, 3, r, r, device=device) * 2 - 1

    def run(fast: bool):
        m = model.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
        xi = x.contiguous(memory_format=torch.channels_last) if fast else x.contiguous()
        grad = torch.inference_mode() if fast else torch.no_grad()

        def step():
            with grad, autocast(device, fast):
                m.decode(m.encode(xi))
            if device == "cuda":
                torch.cuda.synchronize()

        return seconds(step, min_time)

    base, ours = run(False), run(True)
    return {"baseline_img_s": batch / base, "ours_img_s": batch / ours, "ratio": base / ours}


def train_throughput(name: str, extra: list[str], device: str, min_time: float) -> dict:
    from shared.engine import Trainer
    from stage1_vqgan.train import VQGANTask

    results = {}
    for fast in (False, True):
        c = preset(
            name,
            "loss.perceptual_backbone=random",
            "loss.disc_start=0",
            "train.progress=false",
            f"train.channels_last={fast}",
            *extra,
        )
        torch.manual_seed(0)
        task = VQGANTask(c)
        data = build_dataset(c.data, "val")
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(task, c.train, tmp, data)
            batch = trainer.fixed_batch(c.train.batch_size)

            def step(trainer=trainer, batch=batch, task=task, fast=fast):
                with autocast(device, fast):  # one AcceleratorState per process: no bf16 flag
                    task.training_step(batch, 1, trainer)
                if device == "cuda":
                    torch.cuda.synchronize()

            results[fast] = seconds(step, min_time)
            trainer.accelerator.end_training()
    return {
        "baseline_steps_s": 1 / results[False],
        "ours_steps_s": 1 / results[True],
        "ratio": results[False] / results[True],
    }


SEARCH_CHILD = """
import json, sys, time, torch
from stage1_vqgan.quantizer import nearest_code
n, k, d, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
g = torch.Generator().manual_seed(0)
z, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident set size (VmHWM) to the current one
before = kib("VmRSS")
t = time.perf_counter()
if mode == "naive":
    idx = (z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * z @ codes.t()).argmin(1)
else:
    idx = nearest_code(z, codes)
t = time.perf_counter() - t
peak = kib("VmHWM") - before
print(json.dumps({"peak_mib": peak / 1024, "seconds": t, "checksum": int(idx.sum())}))
"""


def search_memory(n: int, k: int, d: int) -> dict:
    out = {}
    for mode in ("naive", "chunked"):
        res = subprocess.run(
            [sys.executable, "-c", SEARCH_CHILD, str(n), str(k), str(d), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = json.loads(res.stdout)
    assert out["naive"]["checksum"] == out["chunked"]["checksum"], "search results differ"
    return {
        "rows": n,
        "codes": k,
        "naive_peak_mib": out["naive"]["peak_mib"],
        "chunked_peak_mib": out["chunked"]["peak_mib"],
        "memory_ratio": out["naive"]["peak_mib"] / max(out["chunked"]["peak_mib"], 1e-3),
        "naive_s": out["naive"]["seconds"],
        "chunked_s": out["chunked"]["seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="shorter timings (less precise)")
    args = p.parse_args()
    min_time = 0.5 if args.quick else 2.0
    dev = args.device
    big_batch = 16 if dev == "cuda" else 2
    setups = {
        "vqgan-f16-1024@256": ("vqgan-f16-1024", [f"train.batch_size={big_batch}"]),
        "vqgan-tiny@32": ("vqgan-tiny", ["train.batch_size=16"]),
    }
    report = {
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }
    for label, (name, extra) in setups.items():
        cfg = preset(name, *extra)
        report[f"codec {label}"] = codec_throughput(cfg, cfg.train.batch_size, dev, min_time)
        print(label, "codec", json.dumps(report[f"codec {label}"]), flush=True)
        report[f"train {label}"] = train_throughput(name, extra, dev, min_time)
        print(label, "train", json.dumps(report[f"train {label}"]), flush=True)
    report["nearest-code search 16384"] = search_memory(32 * 256, 16384, 256)
    print("search", json.dumps(report["nearest-code search 16384"]), flush=True)
    print(json.dumps(report, indent=2))
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
