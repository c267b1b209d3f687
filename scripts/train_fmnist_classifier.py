"""Train the FD-FMNIST feature classifier on the 60k Fashion-MNIST training images, report its
accuracy on the 10k test images and write its weights + metadata (JSON beside the weights).

Runs on one CPU thread (about 5 minutes): reproducible for a seed and unharmed by a busy machine.

    python scripts/train_fmnist_classifier.py [--epochs 8] [--seed 0] [--output PATH] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from shared.config import DataConfig
from shared.data import build_dataset
from shared.fmnist_classifier import FEATURE_DIM, TRAIN_COMMAND, FashionMNISTClassifier

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "shared/assets/fmnist_classifier.safetensors"
BATCH_SIZE = 256
LR = 3e-3
MAX_SHIFT = 2
RESAMPLE_SIZES = (20, 64)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float in [-1, 1] and labels (N,) long for "train" or "val" (test)."""
    cfg = DataConfig(source="builtin:fashion-mnist", resolution=28, channels=1, flip=False)
    ds = build_dataset(cfg, split=split)
    images = torch.from_numpy(ds.images.copy()).float().div_(127.5).sub_(1.0)
    return images[:, None], torch.from_numpy(ds.labels.astype("int64"))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to MAX_SHIFT pixels (background fill) and horizontal flips; half of the
    batches are resampled to a random size in RESAMPLE_SIZES (the model resizes them back to 28),
    so that features barely depend on the resolution that images arrive at."""
    b, _, h, w = x.shape
    padded = F.pad(x, (MAX_SHIFT,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * MAX_SHIFT + 1, (2, b, 1), generator=gen)
    rows, cols = dy + torch.arange(h), dx + torch.arange(w)
    shifted = padded[torch.arange(b)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], shifted.flip(-1), shifted)
    if torch.rand((), generator=gen) < 0.5:
        size = int(torch.randint(RESAMPLE_SIZES[0], RESAMPLE_SIZES[1] + 1, (), generator=gen))
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(-1, 1)
    return x


@torch.no_grad()
def accuracy(model: FashionMNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    preds = torch.cat([model(x).argmax(1) for x in images.split(1000)])
    return (preds == labels).float().mean().item()


def train(epochs: int, seed: int) -> tuple[FashionMNISTClassifier, float]:
    """The trained model (eval mode) and its test accuracy."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("val")
    model = FashionMNISTClassifier()
    steps = epochs * (len(x_train) // BATCH_SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(len(x_train), generator=gen)
        batches = order[: len(order) // BATCH_SIZE * BATCH_SIZE].view(-1, BATCH_SIZE)
        for idx in batches:
            loss = F.cross_entropy(model(augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        acc = accuracy(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / len(batches):.4f}, "
            f"test accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return model.eval(), acc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing weights file")
    args = p.parse_args(argv)
    if args.output.exists() and not args.overwrite:
        p.error(f"{args.output} exists (the shipped weights?); pass --overwrite or --output")
    start = time.perf_counter()
    model, acc = train(args.epochs, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.output, metadata={"format": "pt"})
    args.output.chmod(0o644)
    meta = {
        "test_accuracy": round(acc, 4),
        "epochs": args.epochs,
        "seed": args.seed,
        "params": sum(p.numel() for p in model.parameters()),
        "feature_dim": FEATURE_DIM,
        "trained_on": "Fashion-MNIST train (60k)",
        "command": TRAIN_COMMAND,
    }
    args.output.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    minutes = (time.perf_counter() - start) / 60
    print(f"test accuracy {acc:.4f}; wrote {args.output} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
