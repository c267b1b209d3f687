"""Short real trainings of the chapter's GANs: ``toy2d`` brings its samples onto the swiss roll
(sliced Wasserstein distance to held-out points falls by a clear margin), and ``cgan-mnist``
on Fashion-MNIST makes samples that depend on the label they were given, and resemble that
class: judged by a class statistic, the nearest Fashion-MNIST class-mean image. (After a few
hundred CPU steps the samples are still speckled, and the project's Fashion-MNIST classifier,
trained on clean images, calls most of them "shirt"; the class means are robust to that.)"""

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed
from PIL import Image

from gan_direct.cli import main
from gan_direct.evaluate import EVAL_SEED
from gan_direct.presets import preset_networks
from gan_direct.sample import generate
from shared.data import build_dataset
from shared.metrics import sliced_wasserstein
from shared.run import read_metrics

QUIET = ["train.progress=false", "train.num_workers=0"]
TOY_STEPS = 600
CGAN_STEPS = 400


def gan(*argv):
    return main([str(a) for a in argv])


def test_toy2d_samples_move_onto_the_swiss_roll(tmp_path):
    run = tmp_path / "run"
    overrides = [f"train.sample_every={TOY_STEPS // 3}", f"train.eval_every={TOY_STEPS}"]
    overrides += ["train.batch_size=256", *QUIET]
    assert (
        gan("train", "--config", "toy2d", "--output", run, "--max-steps", TOY_STEPS, *overrides)
        == 0
    )
    cfg, _, _ = preset_networks(str(run / "config.yaml"))
    set_seed(cfg.train.seed)  # the generator as training built it, at step 0
    _, untrained, _ = preset_networks(str(run / "config.yaml"))
    real = build_dataset(cfg.data, "val").points
    start = sliced_wasserstein(real, generate(untrained.eval(), len(real), EVAL_SEED, "cpu"))
    end = [r["val/swd"] for r in read_metrics(run) if "val/swd" in r][-1]
    print(f"toy2d swd: step 0 {start:.3f} -> step {TOY_STEPS} {end:.3f}")
    assert end < 0.3 * start
    frames = sorted((run / "samples").glob("step_*.png"))
    assert len(frames) == 3
    gif = Image.open(run / "training.gif")
    assert gif.n_frames == 3
    out = tmp_path / "samples"
    assert gan("sample", "--checkpoint", run, "--num", 500, "--output", out) == 0
    lines = (out / "samples.csv").read_text().splitlines()
    assert lines[0] == "x,y" and len(lines) == 501 and (out / "samples.png").is_file()


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cgan") / "run"
    overrides = ["train.batch_size=64", "train.sample_every=0", "train.eval_every=0", *QUIET]
    argv = ["train", "--config", "cgan-mnist", "--output", run, "--max-steps", CGAN_STEPS]
    assert gan(*argv, *overrides) == 0
    return run


@pytest.fixture(scope="module")
def class_means() -> torch.Tensor:
    """(10, 784) mean held-out Fashion-MNIST image of each class, in [-1, 1]."""
    from shared.config import DataConfig
    from shared.data import FashionMNISTDataset

    data = FashionMNISTDataset(DataConfig(source="builtin:fashion-mnist"), "val", seed=0)
    images = torch.from_numpy(data.images.astype(np.float32)).flatten(1) / 127.5 - 1
    labels = torch.from_numpy(data.labels.astype(np.int64))
    return torch.stack([images[labels == k].mean(0) for k in range(10)])


def nearest_class(images: torch.Tensor, class_means: torch.Tensor) -> torch.Tensor:
    """(N,) index of the class mean nearest (L2) to each (N, 1, 28, 28) image."""
    return torch.cdist(images.flatten(1), class_means).argmin(1)


@pytest.fixture(scope="module")
def samples_by_label(cgan_run):
    from gan_direct.sample import load_generator

    labels = torch.arange(10).repeat(20)
    with torch.no_grad():
        images = generate(load_generator(cgan_run), len(labels), EVAL_SEED, "cpu", labels=labels)
    return images, labels


def test_cgan_samples_depend_on_their_labels(samples_by_label, class_means):
    images, labels = samples_by_label
    flat = images.flatten(1)
    per_label = torch.stack([flat[labels == k].mean(0) for k in range(10)])
    between = (per_label - flat.mean(0)).pow(2).sum(1).mean()  # variance the label explains
    total = (flat - flat.mean(0)).pow(2).sum(1).mean()
    own = (nearest_class(images, class_means) == labels).float().mean().item()
    wrong = (nearest_class(images, class_means) == labels.roll(1)).float().mean().item()
    print(
        f"cgan-mnist after {CGAN_STEPS} steps: the label explains {between / total:.2f} of "
        f"the pixel variance; nearest class mean = own label {own:.2f}, a wrong label {wrong:.2f}"
    )
    # An unconditional generator: about 0.05 explained and own = wrong = about 0.1.
    assert between / total > 0.3
    assert own > 0.2 and own > wrong + 0.15


def test_sample_class_flag_draws_one_class(cgan_run, samples_by_label, tmp_path, capsys):
    out = tmp_path / "class7"
    assert gan("sample", "--checkpoint", cgan_run, "--num", 20, "--class", 7, "--output", out) == 0
    pixels = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted(out.glob("sample_*.png"))]
    drawn = torch.from_numpy(np.stack(pixels)).flatten(1).mean(0) / 127.5 - 1  # gray PNGs
    images, labels = samples_by_label
    per_label = torch.stack([images[labels == k].flatten(1).mean(0) for k in range(10)])
    assert torch.cdist(drawn[None], per_label).argmin().item() == 7
    capsys.readouterr()
    assert gan("sample", "--checkpoint", cgan_run, "--class", 10, "--output", tmp_path / "x") == 2
    assert "--class 10: choose one of 0=T-shirt/top, 1=Trouser" in capsys.readouterr().err
    assert gan("sample", "--checkpoint", cgan_run, "--psi", 0.5, "--output", tmp_path / "y") == 2
    assert "mapping network" in capsys.readouterr().err
