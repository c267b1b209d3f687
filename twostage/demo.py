"""``twostage demo``: the shipped Fashion-MNIST models, then the whole pipeline on
``builtin:shapes`` from nothing to ``index.html``.

First samples a grid per class from the shipped priors ``fmnist-gpt`` and ``fmnist-adatgan``
(seconds, no training; the report shows their measured FID and class agreement). Then trains
the tokenizer, a tokenizer of segmentation maps, a class-conditional GPT prior, a
segmentation-conditional GPT prior and an AdatGAN prior on ``builtin:shapes``; samples a grid
per class from both class-conditional priors; paints a wide image (4x the training area) from a
generated segmentation map by sliding-window sampling; runs CLIP guidance when CLIP weights are
on disk; benchmarks the tokenizer; and writes ``index.html`` with every picture and the command
that made it. ``--tiny``: the same in about a minute; default: about 14 minutes on 2 CPU cores;
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
from shared.data import ShapesDataset, render_shapes
from shared.images import from_uint8, save_grid, save_png
from shared.options import ArgumentParser
from shared.release import release_quality
from shared.run import RunError, claim, read_metrics, replaces
from shared.weights import WeightsUnavailable, resolve
from stage1_vqgan import colorize_mask
from stage2_prior.clip.model import DEFAULT as CLIP_MODEL
from twostage.cli import main as twostage
from twostage.demo_pipeline import CLIP_PROMPT, RELEASE_PRIORS, SCALES, WIDE_TILES, Step, plan
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
    names = ShapesDataset.class_names
    steps = plan(scale, out, args.device, len(names))
    record = {"scale": args.scale, "classes": names, "steps": {}, "figures": {}}
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


def wide_step(key: str, step: Step, out: Path, scale, record: dict) -> list[str]:
    """Generate the segmentation map (builtin:shapes layouts side by side), then sample."""
    rng = np.random.default_rng(0)
    tiles = [render_shapes(rng, scale.resolution)[1] for _ in range(WIDE_TILES)]
    ids = np.concatenate(tiles, axis=1)
    (out / "wide").mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids).save(out / "wide" / "map.png")  # class ids: what --condition reads
    colour = colorize_mask(torch.from_numpy(ids)[None])[0]
    save_png(colour, out / "wide_map.png")
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
    try:
        resolve(f"clip:{CLIP_MODEL}")
    except WeightsUnavailable as e:
        message = f"skipped: {e}"
        print(message, flush=True)
        record["figures"]["clip"] = {"skipped": message, "prompt": CLIP_PROMPT}
        return [step.command(out)]
    commands = [run(step, out)]
    shutil.copy(out / "clip" / "final.png", out / "clip.png")
    record["figures"]["clip"] = {"prompt": CLIP_PROMPT}
    return commands


STAGES = {"wide": wide_step, "benchmark": benchmark_step, "clip": clip_step}


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
