"""The demo's plan: every stage as the ``twostage`` command line that runs it, sized by a scale.

A :class:`Step` is one command (``argv`` after ``twostage``) with a title;
:func:`plan` lists them for a scale and an output folder. Running a step is calling the real
command in this process, so what ``index.html`` shows is exactly what ran."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Scale:
    """Sizes of one demo scale. Steps are optimizer steps; ``resolution`` is the image size."""

    tokenizer_steps: int
    seg_tokenizer_steps: int
    prior_steps: int
    adatgan_steps: int
    bench_images: int
    per_class: int  # samples per class in each class grid
    code_images: int  # training images encoded for the priors
    resolution: int = 32
    clip_steps: int = 30
    tokenizer: list[str] = field(default_factory=list)  # extra overrides per network
    seg_tokenizer: list[str] = field(default_factory=list)
    gpt: list[str] = field(default_factory=list)
    adatgan: list[str] = field(default_factory=list)


SCALES = {
    # about a minute on 2 CPU cores: every stage runs, the pictures are rough
    "tiny": Scale(
        tokenizer_steps=60,
        seg_tokenizer_steps=30,
        prior_steps=60,
        adatgan_steps=80,
        bench_images=64,
        per_class=4,
        code_images=1000,
        clip_steps=5,
        gpt=["model.n_layer=2", "model.n_embd=64"],
    ),
    # about 14 minutes on 2 CPU cores
    "default": Scale(
        tokenizer_steps=1000,
        seg_tokenizer_steps=300,
        prior_steps=1000,
        adatgan_steps=1500,
        bench_images=500,
        per_class=8,
        code_images=4000,
    ),
    # a GPU: 64 px images (16x16 codes), wider networks, many more steps
    "base": Scale(
        tokenizer_steps=20000,
        seg_tokenizer_steps=5000,
        prior_steps=20000,
        adatgan_steps=20000,
        bench_images=2000,
        per_class=8,
        code_images=50000,
        resolution=64,
        clip_steps=200,
        tokenizer=["model.ch=64", "model.resolution=64", "train.batch_size=32"],
        seg_tokenizer=["model.resolution=64", "model.attn_resolutions=[16]"],
        gpt=["model.n_layer=8", "model.n_embd=256", "model.n_head=8", "train.batch_size=64"],
        adatgan=["adatgan.dims=[256,128]", "adatgan.d_dim=128", "train.batch_size=64"],
    ),
}
CLIP_PROMPT = "a red circle on a blue background"
RELEASE_PRIORS = {"fmnist_gpt_samples": "fmnist-gpt", "fmnist_adatgan_samples": "fmnist-adatgan"}
RELEASE_FLAGS = {"fmnist-gpt": ["--cfg-scale", "2"]}  # guidance: 89% class agreement, not 76%
RELEASE_CLASSES = 10  # Fashion-MNIST
WIDE_TILES = 4  # the wide map is this many training-sized maps side by side


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    argv: list[str]  # after ``twostage``

    def command(self, out: Path) -> str:
        """The shell command, with the demo folder written as ``"$DEMO"``."""
        return "twostage " + " ".join(_quote(w, str(out)) for w in self.argv)


def _quote(word: str, out: str) -> str:
    """``word`` for a POSIX shell; paths inside the demo folder as ``"$DEMO/..."``."""
    if out not in word:
        return shlex.quote(word)
    return '"' + word.replace(out, "$DEMO") + '"'


def _schedule(steps: int) -> list[str]:
    """Evaluate and checkpoint twice per run, log sample grids four times."""
    return [
        f"train.eval_every={max(steps // 2, 1)}",
        f"train.checkpoint_every={max(steps // 2, 1)}",
        f"train.sample_every={max(steps // 4, 1)}",
    ]


def plan(scale: Scale, out: Path, device: str, classes: int) -> dict[str, Step | list[Step]]:
    """The demo's steps in order; the per-class sampling steps are lists."""
    o, res = str(out), str(scale.resolution)
    data = ["--data", "builtin:shapes", "--resolution", res]
    dev = ["--device", device]

    def training(command, config, run, steps, flags=(), overrides=()) -> list[str]:
        head = [command, "train", "--config", config, *data, *flags, "--output", f"{o}/{run}"]
        return head + ["--max-steps", str(steps), *_schedule(steps), *overrides]

    image_codes = ["--tokenizer", f"{o}/tokenizer"]
    map_codes = ["--cond-tokenizer", f"{o}/seg-tokenizer", *image_codes]
    codes = [f"codes.cache_dir={o}/codes", f"codes.max_images={scale.code_images}"]
    steps: dict[str, Step | list[Step]] = {
        key: [
            Step(
                f"{key}_{k}",
                f"Shipped model {name}: Fashion-MNIST garments of every class (no training)",
                ["prior", "sample", "--checkpoint", name, "--class", str(k)]
                + [*RELEASE_FLAGS.get(name, []), "--num", str(scale.per_class), "--seed", str(k)]
                + dev
                + ["--output", f"{o}/{key}/class_{k}"],
            )
            for k in range(RELEASE_CLASSES)
        ]
        for key, name in RELEASE_PRIORS.items()
    }
    steps |= {
        "tokenizer": Step(
            "tokenizer",
            "Stage 1: train the VQGAN tokenizer (vqgan-tiny) on builtin:shapes",
            training(
                "vqgan",
                "vqgan-tiny",
                "tokenizer",
                scale.tokenizer_steps,
                overrides=scale.tokenizer,
            ),
        ),
        "seg_tokenizer": Step(
            "seg_tokenizer",
            "Stage 1: train a tokenizer of segmentation maps (vqgan-seg-tiny)",
            training(
                "vqgan",
                "vqgan-seg-tiny",
                "seg-tokenizer",
                scale.seg_tokenizer_steps,
                overrides=scale.seg_tokenizer,
            ),
        ),
        "class_prior": Step(
            "class_prior",
            "Stage 2: a class-conditional GPT prior over the codes",
            training(
                "prior",
                "gpt-tiny",
                "prior-class",
                scale.prior_steps,
                image_codes,
                codes + scale.gpt,
            ),
        ),
        "seg_prior": Step(
            "seg_prior",
            "Stage 2: a segmentation-conditional GPT prior",
            training(
                "prior", "gpt-tiny", "prior-seg", scale.prior_steps, map_codes, codes + scale.gpt
            ),
        ),
        "adatgan_prior": Step(
            "adatgan_prior",
            "Stage 2: an AdatGAN prior (one forward pass per grid)",
            training(
                "prior",
                "adatgan-prior-tiny",
                "prior-adatgan",
                scale.adatgan_steps,
                image_codes,
                codes + scale.adatgan,
            ),
        ),
    }
    for key, run in (("class_samples", "prior-class"), ("adatgan_samples", "prior-adatgan")):
        steps[key] = [
            Step(
                f"{key}_{k}",
                f"Stage 2: samples of every class from {run}",
                ["prior", "sample", "--checkpoint", f"{o}/{run}", "--class", str(k)]
                + ["--num", str(scale.per_class), "--seed", str(k), *dev]
                + ["--output", f"{o}/{key}/class_{k}"],
            )
            for k in range(classes)
        ]
    wide = f"{scale.resolution * WIDE_TILES}x{scale.resolution}"  # WIDTHxHEIGHT
    steps["wide"] = Step(
        "wide",
        f"A {wide} image from a generated segmentation map, by sliding-window sampling",
        ["prior", "sample", "--checkpoint", f"{o}/prior-seg", "--condition", f"{o}/wide/map.png"]
        + ["--size", wide, "--num", "1", *dev, "--output", f"{o}/wide/sample"],
    )
    steps["benchmark"] = Step(
        "benchmark",
        "Benchmark the tokenizer on held-out builtin:shapes images",
        ["vqgan", "benchmark", "--checkpoint", f"{o}/tokenizer", "--name", "demo-tokenizer"]
        + [*data, "--num-images", str(scale.bench_images), "--batch-size", "32", *dev]
        + ["--output", f"{o}/benchmark"],
    )
    steps["clip"] = Step(
        "clip",
        "CLIP-guided generation through the demo tokenizer's decoder",
        ["clip", CLIP_PROMPT, "--tokenizer", f"{o}/tokenizer", "--size", f"{res}x{res}"]
        + ["--steps", str(scale.clip_steps), "--save-every", str(scale.clip_steps), *dev]
        + ["--output", f"{o}/clip"],
    )
    return steps
