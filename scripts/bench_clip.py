"""CLIP guidance cost against image size: seconds per step and peak memory of ``twostage clip``'s
step with gradient checkpointing of the decoder and chunked cutouts (ours) against the
notebooks' way (decoder activations kept, all cutouts through CLIP at once: the baseline), in
one table with ratios.

Networks at random weights with the real architectures: the ``vqgan-f16-1024`` tokenizer (the
decoder of taming's ImageNet f16 models) and open_clip ``ViT-B-32``; timings and memory do not
depend on the weights. Each (size, variant) runs in a fresh subprocess (peak RSS on CPU, peak
CUDA allocation on GPU, bf16 autocast there); a variant that runs out of memory reports null.

    python scripts/bench_clip.py [--sizes 128,256,512,1024] [--cutn 64] [--chunk 16] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = {"notebook": (False, None), "ours": (True, "chunk")}  # (checkpointing, chunk)


def measure(size: int, variant: str, args) -> dict:
    from shared.config import build_config, read_preset
    from stage1_vqgan.benchmark import PeakMemory
    from stage1_vqgan.config import VQGANConfig
    from stage1_vqgan.model import VQModel
    from stage2_prior.clip.guidance import Guide, GuideConfig
    from stage2_prior.clip.model import load_clip
    from stage2_prior.clip.prompts import Prompt

    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = build_config(VQGANConfig, read_preset("vqgan-f16-1024", "stage1_vqgan"))
    tok = VQModel.from_config(cfg.model).to(device)
    clip = load_clip("ViT-B-32:random", device=device)
    checkpointing, chunk = VARIANTS[variant]
    guide = Guide(
        tok,
        [clip],
        GuideConfig(
            prompts=[Prompt("a lighthouse in a storm")],
            size=(size, size),
            cutn=args.cutn,
            chunk=args.chunk if chunk else args.cutn,
            checkpointing=checkpointing,
        ),
        device,
    )
    guide.step()  # warm-up
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        for _ in range(args.steps):
            guide.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / args.steps
    return {"s_per_step": round(seconds, 3), "peak_mib": round(mem.peak_mib, 1)}


def in_subprocess(size: int, variant: str, args) -> dict:
    cmd = [sys.executable, __file__, "--measure", variant, "--sizes", str(size)]
    cmd += ["--device", args.device, "--cutn", str(args.cutn), "--chunk", str(args.chunk)]
    cmd += ["--steps", str(args.steps)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        if "out of memory" in done.stderr.lower() or done.returncode in (-9, 137):
            return {"s_per_step": None, "peak_mib": None}
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", default="128,256,512,1024", help="square image sides in pixels")
    p.add_argument("--cutn", type=int, default=64)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--measure", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.measure:
        print(json.dumps(measure(sizes[0], args.measure, args)))
        return
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"# {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; vqgan-f16-1024 "
        f"decoder + ViT-B-32 (random weights), cutn {args.cutn}; notebook = no checkpointing, "
        f"all cutouts at once; ours = checkpointed decoder, chunks of {args.chunk}; "
        "ratios are notebook / ours",
        flush=True,
    )
    for size in sizes:
        rows = {v: in_subprocess(size, v, args) for v in VARIANTS}
        a, b = rows["notebook"], rows["ours"]
        ratios = {k: round(a[k] / b[k], 2) for k in ("s_per_step", "peak_mib") if a[k] and b[k]}
        print(json.dumps({"size": size, **rows, "notebook/ours": ratios}), flush=True)


if __name__ == "__main__":
    main()
