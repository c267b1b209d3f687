"""``twostage demo``: train ``vqgan-tiny`` on ``builtin:shapes`` and report on it (a few minutes on
CPU): held-out reconstructions, a loss plot and a short summary."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from shared.cli import run_main
from shared.config import build_config, read_preset
from shared.data import build_dataset
from shared.images import quantize_8bit, save_grid
from shared.metrics import psnr
from shared.run import RunError, is_run_dir, read_metrics
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.train import train


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--output", default="runs/demo", help="folder for the demo's results")
    p.add_argument("--max-steps", type=int, help="training steps (preset: 600)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of vqgan-tiny")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage demo") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    out = prepare_demo_dir(Path(args.output), args.overwrite)
    overrides = list(args.overrides)
    if args.max_steps:
        overrides.append(f"train.max_steps={args.max_steps}")
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"), overrides=overrides)
    print(f"[1/3] training vqgan-tiny on {cfg.data.source} for {cfg.train.max_steps} steps")
    started = time.perf_counter()
    run = train(cfg, out / "tokenizer")
    minutes = (time.perf_counter() - started) / 60
    print("[2/3] reconstructing held-out images")
    summary = report(run, cfg, out)
    summary["train_minutes"] = round(minutes, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("[3/3] plotting the losses")
    plot_losses(run, out / "losses.png")
    lines = [f"{k}: {v}" for k, v in summary.items()]
    (out / "summary.md").write_text(
        "# twostage demo\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
    )
    print("\n".join(lines))
    print(f"results in {out}: reconstructions.png, losses.png, summary.md")
    return 0


def prepare_demo_dir(out: Path, overwrite: bool) -> Path:
    """An empty folder for the demo; an earlier demo is replaced only with ``overwrite``."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunError(f"{out} already exists; pass --overwrite to replace it")
        if not (out / "summary.json").is_file() and not is_run_dir(out / "tokenizer"):
            raise RunError(f"refusing to overwrite {out}: it is not a twostage demo folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


@torch.no_grad()
def report(run: Path, cfg: VQGANConfig, out: Path, n: int = 64) -> dict:
    """Held-out PSNR of the trained tokenizer vs. the same architecture at initialisation."""
    model = load_tokenizer(run)
    data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    x = torch.stack([data[i]["image"] for i in range(min(n, len(data)))])
    rec = quantize_8bit(model.decode(model.encode(x)))
    torch.manual_seed(cfg.train.seed)
    untrained = type(model).from_config(cfg.model).eval()
    rec0 = quantize_8bit(untrained.decode(untrained.encode(x)))
    save_grid(torch.cat([x[:16], rec[:16]]), out / "reconstructions.png", nrow=16)
    codes = model.encode(x)
    return {
        "held_out_images": len(x),
        "psnr_db": round(psnr(rec, x).mean().item(), 2),
        "psnr_at_init_db": round(psnr(rec0, x).mean().item(), 2),
        "codebook_usage": round(codes.unique().numel() / model.n_embed, 3),
        "tokens_per_image": int(codes[0].numel()),
        "steps": cfg.train.max_steps,
    }


def plot_losses(run: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run)
    train = [r for r in records if "rec" in r]
    val = [r for r in records if "val/psnr" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot([r["step"] for r in train], [r["rec"] for r in train], label="reconstruction")
    if any("g_loss" in r for r in train):
        g = [r for r in train if "g_loss" in r]
        a.plot([r["step"] for r in g], [r["d_loss"] for r in g], label="discriminator")
    a.set_xlabel("step")
    a.set_title("training losses")
    a.legend()
    b.plot([r["step"] for r in val], [r["val/psnr"] for r in val], marker="o")
    b.set_xlabel("step")
    b.set_title("held-out PSNR (dB)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
