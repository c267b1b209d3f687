"""The release models shipped in the package: each loads by name and makes what it should."""

import numpy as np
import pytest
import torch
from PIL import Image

from gan_direct.sample import generate, load_generator
from shared.checkpoint import CheckpointError
from shared.config import DataConfig
from shared.data import build_dataset
from shared.fmnist_classifier import load_fmnist_classifier
from shared.metrics import psnr
from shared.release import RELEASE_DIR, release_names, release_quality, resolve_checkpoint
from stage1_vqgan import load_tokenizer
from stage2_prior import load_prior
from twostage.cli import main as twostage

PER_CLASS = 10


@pytest.fixture(scope="module")
def garments():
    cfg = DataConfig(source="builtin:fashion-mnist", resolution=32, channels=1, flip=False)
    val = build_dataset(cfg, "val", seed=0)
    return torch.stack([val[i]["image"] for i in range(64)])


@pytest.fixture(scope="module")
def classifier():
    return load_fmnist_classifier()


def agreement(classifier, images, labels) -> float:
    with torch.inference_mode():
        return (classifier(images).argmax(1) == labels).float().mean().item()


def test_every_release_name_resolves_to_a_shipped_folder(tmp_path, monkeypatch):
    for name in release_names():
        assert resolve_checkpoint(name) == RELEASE_DIR / name
        assert (RELEASE_DIR / name / "config.json").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fmnist-gpt").mkdir()  # a path on disk wins over a release name
    assert resolve_checkpoint("fmnist-gpt") == tmp_path.joinpath("fmnist-gpt").relative_to(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer("fmnist-nothing")


def test_the_tokenizer_reconstructs_held_out_garments(garments):
    tok = load_tokenizer("fmnist-vqgan")
    with torch.inference_mode():
        codes = tok.encode(garments)
        recon = tok.decode(codes).clamp(-1, 1)
    assert codes.shape == (64, 8, 8)
    assert psnr(garments, recon).mean() > 20


@pytest.mark.parametrize("name", ["fmnist-gpt", "fmnist-adatgan"])
def test_priors_sample_the_requested_class(name, classifier):
    prior = load_prior(name)
    labels = torch.arange(10).repeat_interleave(PER_CLASS)
    idx = prior.sample(len(labels), condition=labels, generator=torch.Generator().manual_seed(0))
    images = prior.decode(idx)
    assert images.shape == (len(labels), 1, 32, 32)
    chance = 0.1
    assert (
        agreement(classifier, images, labels)
        > {"fmnist-gpt": 6, "fmnist-adatgan": 4}[name] * chance
    )


def test_the_adatgan_prior_draws_different_garments_within_a_class():
    """Mean pixel L1 (images in [-1, 1]) between two samples of one class, per class: the
    collapsed release before the mode-seeking term measured 0.035-0.089, this one 0.27-0.50."""
    prior = load_prior("fmnist-adatgan")
    labels = torch.arange(10).repeat_interleave(16)
    idx = prior.sample(len(labels), condition=labels, generator=torch.Generator().manual_seed(0))
    images = prior.decode(idx).view(10, 16, -1)
    pairs = (images[:, :, None] - images[:, None]).abs().mean(-1).sum((1, 2)) / (16 * 15)
    assert pairs.min() > 0.15, pairs


@pytest.mark.parametrize("name", ["fmnist-dcgan", "fmnist-adatgan-pixel"])
def test_pixel_gans_generate_garments(name, classifier):
    gen = load_generator(name)
    images = generate(gen, 100, seed=0, device="cpu")
    assert images.shape == (100, 1, 32, 32) and images.std() > 0.2
    with torch.inference_mode():
        confidence = classifier(images).softmax(1).max(1).values.mean()
    assert confidence > 0.5  # the classifier sees garments, not noise


def test_prior_sample_by_name_writes_pngs(tmp_path):
    out = tmp_path / "dresses"
    argv = ["prior", "sample", "--checkpoint", "fmnist-gpt", "--class", "3", "--num", "6"]
    assert twostage([*argv, "--seed", "0", "--output", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6 and np.asarray(Image.open(pngs[0])).shape[:2] == (32, 32)


def test_benchmark_by_name_runs(tmp_path):
    argv = ["vqgan", "benchmark", "--checkpoint", "fmnist-vqgan", "--data", "builtin:fashion-mnist"]
    argv += ["--resolution", "32", "--num-images", "16", "--inception", "off"]
    assert twostage([*argv, "--output", str(tmp_path / "bench")]) == 0


def test_the_measured_figures_ship_with_the_models():
    figures = release_quality("fmnist-gpt")
    rows = [r for k, r in figures.items() if k != "measured"]
    assert rows and all(r["fid"] > 0 and 0 <= r["class_agreement"] <= 1 for r in rows)


def test_a_prior_trains_over_the_release_tokenizer_by_name(tmp_path):
    argv = ["prior", "train", "--config", "gpt-fmnist", "--tokenizer", "fmnist-vqgan"]
    argv += ["--max-steps", "2", "--output", str(tmp_path / "run"), "codes.max_images=64"]
    argv += ["codes.max_val_images=16", "model.n_layer=1", "model.n_embd=32", "model.n_head=2"]
    assert twostage([*argv, "train.eval_images=16", "train.progress=false"]) == 0
    prior = load_prior(tmp_path / "run")
    assert prior.tokenizer.codebook.shape == load_tokenizer("fmnist-vqgan").codebook.shape
