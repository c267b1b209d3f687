"""Code-extraction benchmark: images/s of encoding a training split into a fresh code cache with
one process (the baseline) vs. several processes sharing the batches (``torch.distributed.run``,
one thread each, gloo on CPU), and whether the two cache folders are byte for byte the same.

The tokenizer is the ``vqgan-fmnist`` architecture with random weights on Fashion-MNIST at 32 px
(``vqgan-tiny`` on ``builtin:shapes`` when the Fashion-MNIST files are absent). Each count runs in
fresh processes; the time is rank 0's, from a barrier after start-up to the stored cache (encode,
gather, write), a single run.

    python scripts/bench_codes.py [--images 2000] [--processes 2] [--batch 64] [--flip]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from shared.config import DataConfig, build_config, read_preset
from shared.data import FASHION_MNIST_DIR
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel
from stage2_prior.codes import extract_codes

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def setup(flip: bool) -> tuple[VQModel, DataConfig]:
    """The random-weight tokenizer and the data it encodes."""
    fmnist = FASHION_MNIST_DIR.is_dir()
    preset = read_preset("vqgan-fmnist" if fmnist else "vqgan-tiny", "stage1_vqgan")
    cfg = build_config(VQGANConfig, preset)
    torch.manual_seed(0)
    source = "builtin:fashion-mnist" if fmnist else "builtin:shapes"
    data = DataConfig(source=source, resolution=32, channels=cfg.model.in_channels, flip=flip)
    return VQModel.from_config(cfg.model).eval(), data


def measure(args) -> None:
    """One process of a run: extract into ``args.measure``; rank 0 writes its time as JSON."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    tokenizer, data = setup(args.flip)
    tokenizer.to(state.device)
    state.wait_for_everyone()
    start = time.perf_counter()
    _, folder = extract_codes(
        tokenizer,
        data,
        "train",
        max_images=args.images,
        batch_size=args.batch,
        cache_dir=args.measure,
        device=state.device,
        progress=False,
        state=state,
    )
    seconds = time.perf_counter() - start
    if state.is_main_process:
        row = {"seconds": seconds, "folder": str(folder), "source": data.source}
        (Path(args.measure) / "time.json").write_text(json.dumps(row))


def run(processes: int, cache_dir: Path, args) -> dict:
    """Extract with ``processes`` fresh processes (one thread each); rank 0's figures."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={port}", __file__]
    cmd += ["--measure", str(cache_dir), "--images", str(args.images), "--batch", str(args.batch)]
    cmd += ["--flip"] if args.flip else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads((cache_dir / "time.json").read_text())


def same_folders(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--flip", action="store_true", help="also encode the mirror images")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.processes < 2:
        p.error("--processes must be at least 2 (1 is the baseline)")
    if args.measure:
        measure(args)
        return
    print(
        f"# {args.images} images{' + mirrors' if args.flip else ''}, batch {args.batch}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, one thread per process",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows, folders = {}, {}
        for n in (1, args.processes):
            r = run(n, Path(tmp) / f"p{n}", args)
            folders[n] = Path(r["folder"])
            rows[n] = {
                "processes": n,
                "source": r["source"],
                "images/s": round(args.images / r["seconds"], 1),
                "seconds": round(r["seconds"], 2),
            }
            print(json.dumps(rows[n]), flush=True)
        row = {
            "speed-up": round(rows[args.processes]["images/s"] / rows[1]["images/s"], 2),
            "identical caches": same_folders(folders[1], folders[args.processes]),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
