"""Pixel-GAN generator throughput, each figure a ratio against a baseline run here.

Every ``gan_direct`` preset's generator (presets whose generator and data shape repeat an
earlier one are skipped) at its default resolution, built at random weights: parameters, MACs
per sample (``shared.flops.cost``) and samples/s of a forward pass (inference mode, batch
``--batch``, median of ``torch.utils.benchmark``), fp32 on CPU, bf16 autocast on CUDA.
The baseline is the DCGAN generator of ``dcgan-cifar64``: ``x_dcgan`` = a generator's
samples/s divided by the baseline's. One JSON line per generator after a header line, then a
Markdown table (what the README shows).

    python scripts/bench_gans.py [--device cpu|cuda] [--batch 64] [--quick] [--preset NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASELINE = "dcgan-cifar64"


def autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generator_row(name: str, net: torch.nn.Module, batch: int, device: str, min_time: float):
    """Parameters, MMACs per sample and forward samples/s of one generator ``net(z[, labels])``."""
    from torch.utils import benchmark

    from shared.flops import cost

    def inputs(n: int, device="cpu") -> tuple:
        z = torch.randn(n, net.z_dim, device=device)
        classes = getattr(net, "num_classes", 0)
        return (z,) if not classes else (z, torch.arange(n, device=device) % classes)

    size = cost(net, *inputs(1))
    row = {"generator": name, "params_m": round(size["params"] / 1e6, 3)}
    row["mmacs"] = round(size["macs"] / 1e6, 2)
    net = net.to(device).eval()
    x = inputs(batch, device)

    def forward():
        with torch.inference_mode(), autocast(device):
            return net(*x)

    for _ in range(3):  # warm-up: kernel selection, allocator, thread pool
        forward()
    timer = benchmark.Timer("fn()", globals={"fn": forward}, num_threads=torch.get_num_threads())
    seconds = timer.blocked_autorange(min_run_time=min_time).median
    row["samples_per_s"] = round(batch / seconds, 1)
    return row


def distinct_presets(names: list[str]) -> dict[str, tuple]:
    """Preset name -> (config, generator) for presets whose generator is not an earlier one's."""
    from gan_direct.presets import data_shape, preset_networks

    seen, out = [], {}
    for name in names:
        torch.manual_seed(0)
        cfg, gen, _ = preset_networks(name)
        key = (json.dumps(cfg.generator, sort_keys=True), data_shape(cfg.data))
        if key not in seen:
            seen.append(key)
            out[name] = (cfg, gen)
    return out


def main() -> None:
    from gan_direct.presets import data_shape
    from shared.config import preset_names

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per figure")
    p.add_argument("--quick", action="store_true", help="batch 8, short timings")
    p.add_argument("--preset", action="append", help="default: every gan_direct preset")
    args = p.parse_args()
    if args.quick:
        args.batch, args.min_time = min(args.batch, 8), 0.2
    names = args.preset or preset_names("gan_direct")
    names = [BASELINE] + [n for n in names if n != BASELINE]
    device_name = torch.cuda.get_device_name(args.device) if args.device != "cpu" else "cpu"
    precision = "bf16 autocast" if args.device.startswith("cuda") else "fp32"
    print(
        f"# {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"forward samples/s at batch {args.batch} ({precision}); x_dcgan = samples/s / "
        f"{BASELINE}'s",
        flush=True,
    )
    rows = []
    for name, (cfg, gen) in distinct_presets(names).items():
        row = generator_row(name, gen, args.batch, args.device, args.min_time)
        row["kind"] = cfg.generator["name"]
        row["output"] = "x".join(map(str, data_shape(cfg.data)))
        row["x_dcgan"] = round(row["samples_per_s"] / rows[0]["samples_per_s"], 3) if rows else 1
        rows.append(row)
        print(json.dumps(row), flush=True)
    header = "preset | generator | output | params (M) | MMACs/sample | samples/s"
    print(f"\n| {header} | x {BASELINE} |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['generator']} | {r['kind']} | {r['output']} | {r['params_m']} | {r['mmacs']} "
            f"| {r['samples_per_s']} | {r['x_dcgan']} |"
        )


if __name__ == "__main__":
    main()
