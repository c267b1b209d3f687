"""Sampling benchmark for the priors, each figure a ratio against a baseline run here.

1. tokens/s of one window sampled with the key/value cache vs. recomputing every token's
   prefix (the baseline), for 16x16 and 32x32 token grids (the window is the grid);
2. a 32x32 grid through a 16x16 sliding window: taming's reference rule (one forward of the
   window's prefix per token, the baseline) vs. the fast variant that reuses cached keys/values
   while the window stays put;
3. images/s of a 16x16 grid from the AdatGAN prior (``adatgan-prior-16x16`` widths, one forward
   pass, then one draw per cell) vs. the GPT prior sampling it token by token with the key/value
   cache (the baseline); decoding is left out of both;
each with the peak memory of the sampling call (CUDA allocations, or the resident set size on
CPU; every measurement runs in a fresh subprocess so one variant's heap does not hide the next
one's) and a check that the two variants give the same tokens for the same seed. Times are
single runs (one call samples hundreds of tokens).

    python scripts/bench_sampling.py [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from stage1_vqgan.benchmark import PeakMemory
from stage2_prior.adatgan_prior import AdatPriorGenerator
from stage2_prior.gpt import GPTPrior

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(window: tuple[int, int], args, device) -> GPTPrior:
    torch.manual_seed(0)
    net = GPTPrior(
        n_codes=1024,
        window=list(window),
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
    )
    return net.to(device).eval()


CASES = {  # name: (window, grid, baseline label, fast label)
    "16x16 grid, 16x16 window": ((16, 16), (16, 16), "no cache", "KV cache"),
    "32x32 grid, 32x32 window": ((32, 32), (32, 32), "no cache", "KV cache"),
    "32x32 grid, sliding 16x16 window": ((16, 16), (32, 32), "reference", "fast"),
}


def build_adatgan(window: tuple[int, int], device) -> AdatPriorGenerator:
    torch.manual_seed(0)
    net = AdatPriorGenerator(
        n_codes=1024, window=list(window), dims=[1024, 256, 128], embed_dim=256
    )
    return net.to(device).eval()


GAN_CASE = "16x16 grid: AdatGAN prior vs GPT prior"


def measure(case: str, cached: bool, args) -> dict:
    """Sample one case in this process: seconds, tokens/s, peak MiB and the tokens; the GAN
    case runs the AdatGAN prior (``cached`` False) or the KV-cached GPT prior."""
    window, grid = ((16, 16), (16, 16)) if case == GAN_CASE else CASES[case][:2]
    device = args.device
    gan = case == GAN_CASE and not cached
    net = build_adatgan(window, device) if gan else build(window, args, device)
    g = torch.Generator(device=device).manual_seed(0)
    with PeakMemory(torch.device(device)) as mem:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = net.sample(args.batch, grid, generator=g, cached=cached, top_k=args.top_k)
        if gan:  # one forward is short: time a second call, after the warm-up above
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = net.sample(args.batch, grid, generator=g, top_k=args.top_k)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    n = args.batch * grid[0] * grid[1]
    return {
        "seconds": seconds,
        "tokens_per_s": n / seconds,
        "images_per_s": args.batch / seconds,
        "peak_mib": mem.peak_mib,
        "tokens": tokens.flatten().tolist(),
        "params": net.param_count(),
    }


def in_subprocess(case: str, cached: bool, args) -> dict:
    cmd = [sys.executable, __file__, "--measure", case, "--device", args.device]
    cmd += ["--batch", str(args.batch), "--n-layer", str(args.n_layer)]
    cmd += ["--n-head", str(args.n_head), "--n-embd", str(args.n_embd), "--top-k", str(args.top_k)]
    cmd += ["--cached"] if cached else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(case: str, args) -> dict:
    *_, base_label, fast_label = CASES[case]
    base = in_subprocess(case, False, args)
    fast = in_subprocess(case, True, args)
    row = {
        "case": case,
        f"{base_label} tokens/s": round(base["tokens_per_s"], 1),
        f"{fast_label} tokens/s": round(fast["tokens_per_s"], 1),
        "speed-up": round(base["seconds"] / fast["seconds"], 2),
        f"{base_label} peak MiB": _mib(base["peak_mib"]),
        f"{fast_label} peak MiB": _mib(fast["peak_mib"]),
        "same tokens": base["tokens"] == fast["tokens"],
    }
    print(json.dumps(row), flush=True)
    return row


def compare_gan(args) -> dict:
    gpt = in_subprocess(GAN_CASE, True, args)
    gan = in_subprocess(GAN_CASE, False, args)
    row = {
        "case": GAN_CASE,
        "GPT (KV cache) images/s": round(gpt["images_per_s"], 2),
        "AdatGAN images/s": round(gan["images_per_s"], 2),
        "speed-up": round(gpt["seconds"] / gan["seconds"], 1),
        "GPT params M": round(gpt["params"] / 1e6, 1),
        "AdatGAN params M": round(gan["params"] / 1e6, 1),
        "GPT peak MiB": _mib(gpt["peak_mib"]),
        "AdatGAN peak MiB": _mib(gan["peak_mib"]),
    }
    print(json.dumps(row), flush=True)
    return row


def _mib(v):
    return None if v is None else round(v, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="only the 16x16 case")
    p.add_argument("--measure", choices=[*CASES, GAN_CASE], help=argparse.SUPPRESS)
    p.add_argument("--cached", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.cached, args)))
        return
    params = build((16, 16), args, "cpu").param_count()
    print(
        f"# GPT {args.n_layer} layers x {args.n_embd} ({params / 1e6:.1f}M parameters), "
        f"batch {args.batch}, top-k {args.top_k}, {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    for case in list(CASES)[:1] if args.quick else CASES:
        compare(case, args)
    compare_gan(args)


if __name__ == "__main__":
    main()
