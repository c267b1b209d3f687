"""The demo's plan: every stage as the ``twostage`` command line that runs it, sized by a scale.

A :class:`Step` is one command (``argv`` after ``twostage``) with a title;
:func:`plan` lists them for a scale, an output folder and the data the demo trains on
(:func:`demo_data`). Running a step is calling the real command in this process, so what
``index.html`` shows is exactly what ran."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shared.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_ENV, ShapesDataset


@dataclass(frozen=True)
class Scale:
    """Sizes of one demo scale. Steps are optimizer steps; ``resolution`` is the image size."""

    tokenizer_steps: int
    texture_tokenizer_steps: int
    prior_steps: int
    texture_prior_steps: int
    adatgan_steps: int
    bench_images: int
    per_class: int  # samples per class in each class grid
    code_images: int  # training images encoded for the priors
    val_code_images: int  # validation images encoded for the priors' NLL
    texture_crops: int  # random crops of the texture photograph the texture stages train on
    resolution: int = 32
    clip_steps: int = 30
    tokenizer: list[str] = field(default_factory=list)  # extra overrides per network
    texture_tokenizer: list[str] = field(default_factory=list)
    gpt: list[str] = field(default_factory=list)
    adatgan: list[str] = field(default_factory=list)


SHORT_GPT = ["model.dropout=0.0"]  # a run this short underfits: the preset's dropout only slows it
SMALL_ADATGAN = ["adatgan.dims=[128,64]", "adatgan.d_dim=64", "adatgan.mlp_dim=256"]
SCALES = {
    # about a minute on 2 CPU cores: every stage runs, the pictures are rough
    "tiny": Scale(
        tokenizer_steps=60,
        texture_tokenizer_steps=60,
        prior_steps=60,
        texture_prior_steps=40,
        adatgan_steps=80,
        bench_images=64,
        per_class=4,
        code_images=1000,
        val_code_images=200,
        texture_crops=300,
        clip_steps=5,
        tokenizer=["train.batch_size=16", "model.restart_unused_steps=20"],
        gpt=["model.n_layer=2", "model.n_embd=64", "model.n_head=4", *SHORT_GPT],
        adatgan=[*SMALL_ADATGAN, "train.batch_size=32"],
    ),
    # about 15 minutes on 2 CPU cores
    "default": Scale(
        tokenizer_steps=1000,
        texture_tokenizer_steps=500,
        prior_steps=1000,
        texture_prior_steps=500,
        adatgan_steps=1500,
        bench_images=500,
        per_class=8,
        code_images=4000,
        val_code_images=1000,
        texture_crops=2000,
        tokenizer=["train.batch_size=16"],
        gpt=["model.n_embd=128", "model.n_head=4", *SHORT_GPT],
        adatgan=[*SMALL_ADATGAN, "train.batch_size=32"],
    ),
    # a GPU: 64 px images (16x16 codes), wider networks, many more steps
    "base": Scale(
        tokenizer_steps=20000,
        texture_tokenizer_steps=10000,
        prior_steps=20000,
        texture_prior_steps=10000,
        adatgan_steps=20000,
        bench_images=2000,
        per_class=8,
        code_images=50000,
        val_code_images=10000,
        texture_crops=10000,
        resolution=64,
        clip_steps=200,
        tokenizer=["model.ch=64", "model.resolution=64", "train.batch_size=32"],
        texture_tokenizer=["model.ch=64", "model.resolution=64", "train.batch_size=32"],
        gpt=["model.n_layer=8", "model.n_embd=256", "model.n_head=8", "train.batch_size=64"],
        adatgan=["adatgan.dims=[256,128]", "adatgan.d_dim=128", "train.batch_size=64"],
    ),
}
FASHION, SHAPES = "builtin:fashion-mnist", "builtin:shapes"
# per training data: (tokenizer, GPT prior, AdatGAN prior) presets, class names, CLIP prompt
DATA = {
    FASHION: (
        ("vqgan-fmnist", "gpt-fmnist", "adatgan-prior-fmnist"),
        FASHION_MNIST_CLASSES,
        "a black and white photo of a sneaker",
    ),
    SHAPES: (
        ("vqgan-tiny", "gpt-tiny", "adatgan-prior-tiny"),
        ShapesDataset.class_names,
        "a red circle on a blue background",
    ),
}
RELEASE_PRIORS = {"fmnist_gpt_samples": "fmnist-gpt", "fmnist_adatgan_samples": "fmnist-adatgan"}
RELEASE_FLAGS = {"fmnist-gpt": ["--cfg-scale", "2"]}  # guidance: 95% class agreement, not 80%
RELEASE_CLASSES = 10  # Fashion-MNIST
TEXTURE_PHOTO = "brick"  # of shared.data.PHOTO_NAMES: the texture the wide image is painted in
TEXTURE_ZOOM = 3  # a training crop is a (zoom*resolution)^2 patch of the photo, downscaled
GRAY = ["data.channels=1"]  # the texture photograph is grayscale
GRAY_TOKENIZER = [*GRAY, "model.in_channels=1", "model.out_channels=1"]
WIDE_TILES = (4, 2)  # the wide image is this many training windows across and down


def demo_data() -> tuple[str, str]:
    """(source, why): Fashion-MNIST when its files are installed (Debian's
    ``dataset-fashion-mnist`` or ``$TWOSTAGE_FASHION_MNIST``), else ``builtin:shapes``."""
    if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        return FASHION, f"Fashion-MNIST found in {FASHION_MNIST_DIR}"
    root = os.environ.get(FASHION_MNIST_ENV)
    if root and (Path(root).expanduser() / "FashionMNIST" / "raw").is_dir():
        return FASHION, f"Fashion-MNIST found in ${FASHION_MNIST_ENV}={root}"
    return SHAPES, (
        f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set "
        f"${FASHION_MNIST_ENV}): builtin:shapes instead"
    )


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


def wide_size(scale: Scale) -> str:
    """The wide image's ``--size`` (WIDTHxHEIGHT pixels)."""
    return f"{scale.resolution * WIDE_TILES[0]}x{scale.resolution * WIDE_TILES[1]}"


def plan(scale: Scale, out: Path, device: str, data: str) -> dict[str, Step | list[Step]]:
    """The demo's steps in order for training data ``data`` (a key of :data:`DATA`); the
    per-class sampling steps are lists."""
    o, res = str(out), str(scale.resolution)
    (tokenizer, gpt, adatgan), classes, prompt = DATA[data]
    dev = ["--device", device]

    def training(command, config, run, source, steps, flags=(), overrides=()) -> list[str]:
        head = [command, "train", "--config", config, "--data", source, "--resolution", res]
        head += [*flags, "--output", f"{o}/{run}", "--max-steps", str(steps)]
        return head + [*_schedule(steps), *overrides]

    image_codes = ["--tokenizer", f"{o}/tokenizer"]
    codes = [f"codes.cache_dir={o}/codes", f"codes.max_images={scale.code_images}"]
    codes.append(f"codes.max_val_images={scale.val_code_images}")
    crops = f"{o}/texture/crops"
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
            f"Stage 1: train the VQGAN tokenizer ({tokenizer}) on {data}",
            training(
                "vqgan", tokenizer, "tokenizer", data, scale.tokenizer_steps, (), scale.tokenizer
            ),
        ),
        "class_prior": Step(
            "class_prior",
            f"Stage 2: a class-conditional GPT prior ({gpt}) over the codes",
            training(
                "prior", gpt, "prior-class", data, scale.prior_steps, image_codes, codes + scale.gpt
            ),
        ),
        "adatgan_prior": Step(
            "adatgan_prior",
            f"Stage 2: an AdatGAN prior ({adatgan}; one forward pass per grid)",
            training(
                "prior",
                adatgan,
                "prior-adatgan",
                data,
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
            for k in range(len(classes))
        ]
    side = scale.resolution * TEXTURE_ZOOM
    steps["texture_tokenizer"] = Step(
        "texture_tokenizer",
        f"Texture, stage 1: a tokenizer (vqgan-tiny) on {scale.texture_crops} random {side} px "
        f"crops of the photograph '{TEXTURE_PHOTO}' (builtin:photos), shrunk to {res} px",
        training(
            "vqgan",
            "vqgan-tiny",
            "texture-tokenizer",
            crops,
            scale.texture_tokenizer_steps,
            (),
            GRAY_TOKENIZER + scale.texture_tokenizer,
        ),
    )
    steps["texture_prior"] = Step(
        "texture_prior",
        "Texture, stage 2: an unconditional GPT prior (gpt-tiny) over the crops' codes",
        training(
            "prior",
            "gpt-tiny",
            "prior-texture",
            crops,
            scale.texture_prior_steps,
            ["--tokenizer", f"{o}/texture-tokenizer"],
            codes + GRAY + scale.gpt,
        ),
    )
    wide = wide_size(scale)
    steps["wide"] = Step(
        "wide",
        f"A {wide} texture ({WIDE_TILES[0]}x{WIDE_TILES[1]} training windows) painted by "
        "sliding-window sampling",
        ["prior", "sample", "--checkpoint", f"{o}/prior-texture", "--size", wide]
        + ["--num", "1", "--seed", "0", *dev, "--output", f"{o}/wide/sample"],
    )
    steps["benchmark"] = Step(
        "benchmark",
        f"Benchmark the tokenizer on held-out {data} images",
        ["vqgan", "benchmark", "--checkpoint", f"{o}/tokenizer", "--name", "demo-tokenizer"]
        + ["--data", data, "--resolution", res, "--num-images", str(scale.bench_images)]
        + ["--batch-size", "32", *dev, "--output", f"{o}/benchmark"],
    )
    steps["clip"] = Step(
        "clip",
        "CLIP-guided generation through the demo tokenizer's decoder",
        ["clip", prompt, "--tokenizer", f"{o}/tokenizer", "--size", f"{res}x{res}"]
        + ["--steps", str(scale.clip_steps), "--save-every", str(scale.clip_steps), *dev]
        + ["--output", f"{o}/clip"],
    )
    return steps
