"""AdatGAN efficiency benchmark, each figure a ratio against a baseline run here.

Section ``attention``: one attention layer (``shared.attention``) at N = 256, 1024, 4096 and
16384 tokens (16x16 ... 128x128 grids): additive ("Adat", O(N)) vs. dot-product attention
through ``F.scaled_dot_product_attention`` (the baseline; PyTorch picks a fused kernel that
never stores the N x N map), plus dot-product attention with its N x N map materialised (what
``return_maps=True`` does, and the O(N^2) memory the thesis's Table 5.9 counts). For each:
forward time and forward+backward time (``torch.utils.benchmark``, median), the peak memory of
one call (CUDA allocations, or the resident set size on CPU; every variant runs in a fresh
subprocess so one heap does not hide the next), and the matmul MACs per image of every kind
(``torch.utils.flop_counter`` on the meta device; elementwise products are not counted).
fp32 on CPU, bf16 autocast on CUDA. One JSON line per N after a header line.

Section ``generators``: whole generators at 64x64, the AdatGAN generator of ``adatgan-celeba64``
(2x2 patches from 32x32 tokens) against the baseline, a ViTGAN-style generator
(``gan_direct.vitgan``: 8x8 tokens of width 384, 4 blocks, patch INR): parameters, MACs per
image, and images/s of a forward pass (inference mode, batch ``--gen-batch``). The thesis puts
them at 0.9 vs 2.6 GMACs (34.6%, "about 2.9x fewer FLOPs").

    python scripts/bench_attention.py [--device cpu|cuda] [--quick] [--section attention|generators]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from shared.attention import build_attention
from stage1_vqgan.benchmark import PeakMemory

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOKENS = (256, 1024, 4096, 16384)
KINDS = ("additive", "fastformer", "linformer", "swin", "dot")  # the thesis's comparison
VARIANTS = {"additive": ("additive", False), "dot": ("dot", False), "dot_map": ("dot", True)}


def _grid(n: int) -> tuple[int, int]:
    side = int(n**0.5)
    return side, n // side


def _autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure_attention(variant: str, n: int, args) -> dict:
    """In this process: ms and peak MiB of one forward and of one forward+backward."""
    from torch.utils import benchmark  # imported here: it warns about CUDA on CPU machines

    kind, maps = VARIANTS[variant]
    device = torch.device(args.device)
    torch.manual_seed(0)
    attn = build_attention(kind, args.dim, args.heads, grid=_grid(n)).to(device)
    x = torch.randn(args.batch, n, args.dim, device=device)
    x_grad = x.clone().requires_grad_(True)

    def forward():
        with torch.inference_mode(), _autocast(args.device):
            return attn(x, return_maps=maps)

    def forward_backward():
        attn.zero_grad(set_to_none=True)
        x_grad.grad = None
        with _autocast(args.device):
            out = attn(x_grad, return_maps=maps)
        (out[0] if maps else out).float().square().mean().backward()

    calls = {"fwd": forward} if args.forward_only else {"fwd": forward, "train": forward_backward}
    row = {}
    for name, fn in calls.items():
        if name in args.skip:
            row |= {f"{name}_ms": None, f"{name}_mib": None}
            continue
        timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        seconds = timer.blocked_autorange(min_run_time=args.min_time).median
        with PeakMemory(device) as mem:  # after the timing runs warmed everything up
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        row |= {f"{name}_ms": round(seconds * 1e3, 3), f"{name}_mib": _round(mem.peak_mib)}
    return row


def _round(v, digits=1):
    return None if v is None else round(v, digits)


def in_subprocess(variant: str, n: int, args, skip: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--measure", variant, "--tokens", str(n)]
    cmd += ["--device", args.device, "--dim", str(args.dim), "--heads", str(args.heads)]
    cmd += ["--batch", str(args.batch), "--min-time", str(args.min_time)]
    cmd += ["--forward-only"] if args.forward_only else []
    cmd += [f"--skip={','.join(skip)}"] if skip else []
    # glibc then hands every freed tensor back to the OS, so the RSS peak of a warm call counts
    # all of that call's tensors
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def macs_per_image(kind: str, n: int, args) -> int:
    """Matmul multiply-accumulates of one forward for one image (meta tensors, no compute)."""
    with torch.device("meta"):
        attn = build_attention(kind, args.dim, args.heads, grid=_grid(n))
        x = torch.empty(1, n, args.dim)
    with FlopCounterMode(display=False) as counter:
        attn(x)
    return counter.get_total_flops() // 2


def map_gib(n: int, args) -> float:
    """GiB of one fp32 N x N map per layer (all heads, the whole batch)."""
    return args.batch * args.heads * n * n * 4 / 2**30


def attention_row(n: int, args) -> dict:
    rows = {}
    for variant in VARIANTS:
        skip = []
        if variant == "dot_map":  # logits + softmax forward; about twice that with backward
            skip = [
                name
                for name, maps in (("fwd", 2), ("train", 4))
                if maps * map_gib(n, args) > args.max_map_gib
            ]
        rows[variant] = in_subprocess(variant, n, args, skip)
    base, fast = rows["dot"], rows["additive"]
    names = {"fwd_ms": "fwd_time", "fwd_mib": "fwd_memory"}
    names |= {"train_ms": "train_time", "train_mib": "train_memory"}
    ratios = {names[k]: round(base[k] / fast[k], 2) for k in base if base[k] and fast[k]}
    h, w = _grid(n)
    row = {
        "N": n,
        "grid": f"{h}x{w}",
        **rows,
        "dot/additive": ratios,
        "gmacs_per_image": {k: round(macs_per_image(k, n, args) / 1e9, 4) for k in KINDS},
        "dot_map_gib": round(map_gib(n, args), 2),
    }
    print(json.dumps(row), flush=True)
    return row


def attention_section(args) -> None:
    print(
        f"# attention: dim {args.dim}, heads {args.heads}, batch {args.batch}, "
        f"{'bf16 autocast' if args.device.startswith('cuda') else 'fp32'}; "
        "ms = median time of one call, mib = peak memory of one call, "
        "fwd = forward (inference mode), train = forward+backward; "
        "dot/additive = ratio of the dot-product figure to the additive one; "
        f"dot_map runs skipped (null) when its N x N maps would pass {args.max_map_gib} GiB",
        flush=True,
    )
    for n in TOKENS[:2] if args.quick else TOKENS:
        attention_row(n, args)


def generators() -> dict[str, torch.nn.Module]:
    from gan_direct.presets import preset_networks
    from gan_direct.vitgan import ViTGANGenerator

    torch.manual_seed(0)
    return {"adatgan": preset_networks("adatgan-celeba64")[1], "vitgan": ViTGANGenerator()}


def generators_section(args) -> None:
    print(
        f"# generators at 64x64: forward images/s at batch {args.gen_batch} "
        f"({'bf16 autocast' if args.device.startswith('cuda') else 'fp32'}), MACs per image; "
        "vitgan/adatgan = ratio of the ViTGAN-style baseline's MACs to AdatGAN's, "
        "adatgan/vitgan = ratio of AdatGAN's images/s to the baseline's",
        flush=True,
    )
    from bench_gans import generator_row  # this script's folder is on sys.path

    rows = {
        name: generator_row(name, net, args.gen_batch, args.device, args.min_time)
        for name, net in generators().items()
    }
    for row in rows.values():
        print(json.dumps(row), flush=True)
    a, v = rows["adatgan"], rows["vitgan"]
    ratios = {
        "vitgan/adatgan_macs": round(v["mmacs"] / a["mmacs"], 2),
        "adatgan/vitgan_images_per_s": round(a["samples_per_s"] / v["samples_per_s"], 2),
    }
    print(json.dumps(ratios), flush=True)


SECTIONS = {"attention": attention_section, "generators": generators_section}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--section", choices=list(SECTIONS), action="append", help="default: all")
    p.add_argument("--quick", action="store_true", help="N = 256 and 1024 only, short timings")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--gen-batch", type=int, default=None, help="default 16 (CPU), 64 (CUDA)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per figure")
    p.add_argument("--forward-only", action="store_true", help="skip forward+backward")
    p.add_argument("--max-map-gib", type=float, default=8.0)
    p.add_argument("--measure", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    p.add_argument("--skip", type=lambda s: s.split(","), default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.min_time = min(args.min_time, 0.2)
    if args.gen_batch is None:
        args.gen_batch = 64 if args.device.startswith("cuda") else 16
    if args.measure:
        print(json.dumps(measure_attention(args.measure, args.tokens, args)))
        return
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"# {name}, torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        flush=True,
    )
    for section in args.section or SECTIONS:
        SECTIONS[section](args)


if __name__ == "__main__":
    main()
