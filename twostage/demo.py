"""``twostage demo``: the shipped Fashion-MNIST models, then the whole pipeline from nothing to
``index.html`` on real data.

First samples a grid per class from the shipped priors ``fmnist-gpt`` and ``fmnist-adatgan``
(seconds, no training; the report shows their measured FID and class agreement). Then trains
the tokenizer, a class-conditional GPT prior and an AdatGAN prior on ``builtin:fashion-mnist``
(``builtin:shapes`` when Fashion-MNIST is not installed) and samples a grid per class from both
priors; trains a second tokenizer and an unconditional GPT prior on random crops of a real
texture photograph (scikit-image's brick wall) and paints a wide image (4x2 training windows)
of it by sliding-window sampling; runs CLIP guidance when CLIP weights are on disk; benchmarks
the tokenizer; and writes ``index.html`` with every picture beside its figures and the command
that made it. ``--tiny``: the same in about a minute; default: about 15 minutes on 2 CPU cores;
``--scale base --device cuda``: 64 px and many more steps, for a GPU."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.cli import add_device, add_output, run_main
from shared.data import load_photo
from shared.images import from_uint8, save_grid
from shared.options import ArgumentParser
from shared.release import release_quality
from shared.run import RunError, claim, read_metrics, replaces
from shared.weights import WeightsUnavailable, resolve
from stage2_prior.clip.model import DEFAULT as CLIP_MODEL
from twostage.cli import main as twostage
from twostage.demo_pipeline import (
    DATA,
    RELEASE_PRIORS,
    SCALES,
    TEXTURE_PHOTO,
    TEXTURE_ZOOM,
    Step,
    demo_data,
    plan,
)
from twostage.demo_report import write_index

MARKER = "demo.json"  # what makes a folder a demo folder (the plan, the timings, the figures)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_output(
        p, "folder for the demo's results", "replace an earlier demo folder", default="runs/demo"
    )
    p.add_argument("--scale", choices=list(SCALES), default="default", help="size of the run")
    p.add_argument("--tiny", action="store_const", const="tiny", dest="scale", help="--scale tiny")
    add_device(p, " (sampling, metrics)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage demo") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    out = prepare_demo_dir(Path(args.output), args.overwrite).resolve()
    scale = SCALES[args.scale]
    data, why = demo_data()
    print(f"training data: {data} ({why})", flush=True)
    steps = plan(scale, out, args.device, data)
    record = {
        "scale": args.scale,
        "data": data,
        "data_note": why,
        "classes": list(DATA[data][1]),
        "texture": TEXTURE_PHOTO,
        "steps": {},
        "figures": {},
    }
    total = len(steps)
    started = time.perf_counter()
    for i, (key, step) in enumerate(steps.items(), 1):
        title = step[0].title if isinstance(step, list) else step.title
        print(f"\n[{i}/{total}] {title}", flush=True)
        begun = time.perf_counter()
        commands = STAGES.get(key, run_steps)(key, step, out, scale, record)
        record["steps"][key] = {
            "title": title,
            "commands": commands,
            "seconds": round(time.perf_counter() - begun, 1),
        }
        (out / MARKER).write_text(json.dumps(record, indent=2))
        claim(out, "demo", [p.name for p in out.iterdir()])
    record["minutes"] = round((time.perf_counter() - started) / 60, 2)
    (out / MARKER).write_text(json.dumps(record, indent=2))
    index = write_index(out, record)
    claim(out, "demo", [p.name for p in out.iterdir()])
    print(f"\ndemo done in {record['minutes']} min: open {index}")
    return 0


def prepare_demo_dir(out: Path, overwrite: bool) -> Path:
    """An empty folder for the demo; an earlier demo is replaced only with ``overwrite``, and
    only when it holds nothing but what the demo wrote (:func:`shared.run.replaces`)."""
    if replaces(out, "demo", overwrite):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    claim(out, "demo", [])
    return out


def run(step: Step, out: Path) -> str:
    """Run one command in this process; its shell form for the report."""
    command = step.command(out)
    print(f"$ {command}", flush=True)
    if twostage(step.argv) != 0:
        raise RunError(f"demo step '{step.key}' failed (see the error above)")
    return command


def run_steps(key: str, step: Step | list[Step], out: Path, scale, record: dict) -> list[str]:
    steps = step if isinstance(step, list) else [step]
    commands = [run(s, out) for s in steps]
    if key.endswith("_samples"):  # one grid: a row per class
        rows = [_pngs(out / key / f"class_{k}") for k in range(len(steps))]
        save_grid(torch.cat(rows), out / f"{key}.png", nrow=len(rows[0]))
        if key in RELEASE_PRIORS:
            record["figures"][key] = release_quality(RELEASE_PRIORS[key])
    elif key.endswith("prior") or key.endswith("tokenizer"):
        record["figures"][key] = _last_eval(out / Path(step.argv[step.argv.index("--output") + 1]))
    return commands


def texture_step(key: str, step: Step, out: Path, scale, record: dict) -> list[str]:
    """Write the crops of the texture photograph (and pictures of the photo and the crops) that
    the texture tokenizer and prior train on, then train the tokenizer."""
    side = scale.resolution * TEXTURE_ZOOM
    crops = write_crops(load_photo(TEXTURE_PHOTO), out / "texture" / "crops", scale, side)
    save_grid(crops[:16], out / "texture_crops.png", nrow=8)
    photo = Image.fromarray(load_photo(TEXTURE_PHOTO))
    shrunk = [round(n / TEXTURE_ZOOM) for n in photo.size]  # the scale of the crops
    photo.resize(shrunk, Image.Resampling.LANCZOS).save(out / "texture_photo.png")
    note = (
        f"# the demo wrote {len(crops)} random {side} px crops of the photo '{TEXTURE_PHOTO}', "
        f'shrunk to {scale.resolution} px, into "$DEMO/texture/crops"'
    )
    return [note, *run_steps(key, step, out, scale, record)]


def write_crops(photo: np.ndarray, folder: Path, scale, side: int) -> torch.Tensor:
    """``scale.texture_crops`` random ``side`` px squares of ``photo`` (uint8 (H,W,3)), shrunk
    to ``scale.resolution`` px, as PNGs in ``folder``; returns them as (N,3,R,R) in [-1,1]."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, (h, w) = np.random.default_rng(0), photo.shape[:2]
    crops = []
    for i in range(scale.texture_crops):
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side])
        crop = crop.resize((scale.resolution,) * 2, Image.Resampling.LANCZOS)
        crop.save(folder / f"crop_{i:05d}.png")
        crops.append(from_uint8(np.asarray(crop)))  # (3,R,R): the photo's gray in RGB
    return torch.stack(crops)


def wide_step(key: str, step: Step, out: Path, scale, record: dict) -> list[str]:
    commands = [run(step, out)]
    shutil.copy(out / "wide" / "sample" / "sample_0000.png", out / "wide.png")
    return commands


def benchmark_step(key: str, step: Step, out: Path, scale, record: dict) -> list[str]:
    commands = [run(step, out)]
    results = json.loads((out / "benchmark" / "results.json").read_text())["tokenizers"][0]
    numbers = {k: v for k, v in results.items() if isinstance(v, int | float)}
    record["figures"]["benchmark"] = {**numbers, "unavailable": ", ".join(results["unavailable"])}
    return commands


def clip_step(key: str, step: Step, out: Path, scale, record: dict) -> list[str]:
    """Only with CLIP weights on disk; otherwise the report says how to get them."""
    prompt = DATA[record["data"]][2]
    try:
        resolve(f"clip:{CLIP_MODEL}")
    except WeightsUnavailable as e:
        message = f"skipped: {e}"
        print(message, flush=True)
        record["figures"]["clip"] = {"skipped": message, "prompt": prompt}
        return [step.command(out)]
    commands = [run(step, out)]
    shutil.copy(out / "clip" / "final.png", out / "clip.png")
    record["figures"]["clip"] = {"prompt": prompt}
    return commands


STAGES = {
    "texture_tokenizer": texture_step,
    "wide": wide_step,
    "benchmark": benchmark_step,
    "clip": clip_step,
}


def _last_eval(run_dir: Path) -> dict:
    """The last evaluation of a run: ``{"step": ..., "val/...": ...}`` (empty if none)."""
    evals = [r for r in read_metrics(run_dir) if any(k.startswith("val/") for k in r)]
    last = evals[-1] if evals else {}
    return {k: v for k, v in last.items() if k == "step" or k.startswith("val/")}


def _pngs(folder: Path) -> torch.Tensor:
    """The sample PNGs of a folder as (N,3,H,W) in [-1,1]."""
    paths = sorted(folder.glob("sample_*.png"))
    return torch.stack([from_uint8(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


if __name__ == "__main__":
    sys.exit(main())
