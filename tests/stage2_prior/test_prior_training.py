"""End to end on real data: a class-conditional prior (Fashion-MNIST, judged by the shipped
classifier) and a segmentation-conditional prior (builtin:shapes) learn; sampling, scoring and
loading through the CLI and the Python API."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shared.config import DataConfig, build_config, read_preset
from shared.data import build_dataset
from shared.fmnist_classifier import load_fmnist_classifier
from shared.run import read_metrics
from stage1_vqgan import load_tokenizer
from stage2_prior import load_prior
from stage2_prior.cli import main as prior_main
from stage2_prior.config import PriorConfig
from stage2_prior.train import train

SMALL = ["model.n_layer=2", "model.n_embd=64", "train.lr=1e-3", "train.progress=false"]
STEPS = 400


def run_overrides(cache, steps=STEPS):
    return [
        *SMALL,
        f"train.max_steps={steps}",
        f"train.eval_every={steps // 2}",
        f"train.sample_every={steps}",
        f"train.checkpoint_every={steps // 2}",
        "codes.max_images=2000",
        f"codes.cache_dir={cache}",
    ]


@pytest.fixture(scope="module")
def class_prior(fmnist_tokenizer_run, tmp_path_factory):
    """Trained through the CLI on Fashion-MNIST (10 classes, 7x7 codes)."""
    tmp = tmp_path_factory.mktemp("class_prior")
    args = ["train", "--config", "gpt-tiny", "--data", "builtin:fashion-mnist"]
    args += ["--resolution", "28", "--tokenizer", str(fmnist_tokenizer_run[0])]
    args += ["--output", str(tmp / "run"), "data.channels=1", *run_overrides(tmp / "codes")]
    assert prior_main(args) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def seg_prior(tokenizer_run, seg_tokenizer_run, tmp_path_factory):
    """Trained through the API on builtin:shapes, conditioned on the segmentation masks."""
    tmp = tmp_path_factory.mktemp("seg_prior")
    cfg = build_config(
        PriorConfig,
        read_preset("gpt-tiny", "stage2_prior"),
        overrides=[
            f"tokenizer={tokenizer_run[0]}",
            f"cond_tokenizer={seg_tokenizer_run[0]}",
            *run_overrides(tmp / "codes"),
        ],
    )
    return train(cfg, tmp / "run")


def val_nll(run):
    return [r["val/nll"] for r in read_metrics(run) if "val/nll" in r]


def test_class_prior_learns_and_its_samples_follow_the_class(class_prior):
    nll = val_nll(class_prior)
    assert len(nll) == 2 and nll[1] < nll[0] < math.log(256)
    assert nll[1] < math.log(256) - 2.0, nll  # 5.55 nats for a uniform guess over 256 codes
    prior = load_prior(class_prior)
    assert prior.condition == "class" and prior.net.spec.num_classes == 10
    classifier = load_fmnist_classifier().eval()
    labels = torch.arange(10).repeat_interleave(8)
    with torch.no_grad():
        x = prior.sample(
            80, condition=labels, cfg_scale=2.0, generator=torch.Generator().manual_seed(0)
        )
        predicted = classifier(prior.decode(x)).argmax(1)
    accuracy = (predicted == labels).float().mean().item()
    shuffled = (predicted == labels.roll(8)).float().mean().item()  # each sample vs another class
    print(
        f"\nclass prior: val NLL {nll}, classifier agrees {accuracy:.2f} (shuffled {shuffled:.2f})"
    )
    assert accuracy > 0.3 and accuracy > shuffled + 0.2, (accuracy, shuffled)


def foreground_map(codes, table):
    """Per-token foreground probability (B,h,w) from a code -> P(foreground) table."""
    return table[codes]


def cells(masks, factor=4):
    return F.avg_pool2d((masks > 0).float()[:, None], factor)[:, 0]


def correlation(a, b):
    a, b = a - a.mean((1, 2), keepdim=True), b - b.mean((1, 2), keepdim=True)
    return ((a * b).sum((1, 2)) / (a.norm(dim=(1, 2)) * b.norm(dim=(1, 2))).clamp(min=1e-6)).mean()


def test_segmentation_prior_learns_and_follows_the_layout(seg_prior):
    nll = val_nll(seg_prior)
    assert nll[1] < nll[0] and nll[1] < math.log(256) - 1.5, nll
    prior = load_prior(seg_prior)
    assert prior.condition == "spatial"
    # P(foreground | code) from real training images: how shapes look in code space
    train_data = build_dataset(DataConfig(resolution=32, flip=False, crop="center"), "train")
    items = [train_data[i] for i in range(1000)]
    with torch.no_grad():
        codes = prior.tokenizer.encode(torch.stack([d["image"] for d in items]))
    fg = cells(torch.stack([d["mask"] for d in items]))
    hits = torch.zeros(256).index_add_(0, codes.flatten(), fg.flatten())
    table = (hits + 0.1) / (torch.bincount(codes.flatten(), minlength=256) + 1)
    val = build_dataset(DataConfig(resolution=32), "val")
    masks = torch.stack([val[i]["mask"] for i in range(64)])
    with torch.no_grad():
        x = prior.sample(
            64, condition=prior.encode_condition(masks), generator=torch.Generator().manual_seed(0)
        )
    own = correlation(foreground_map(x, table), cells(masks)).item()
    other = correlation(foreground_map(x, table), cells(masks.roll(1, 0))).item()
    print(f"\nseg prior: val NLL {nll}, layout correlation {own:.2f} (other masks {other:.2f})")
    assert own > 0.25 and own > other + 0.1, (own, other)


def test_cli_samples_larger_than_the_window_from_a_map(seg_prior, tmp_path, capsys):
    val = build_dataset(DataConfig(resolution=32), "val")
    layout = torch.cat([val[0]["mask"], val[1]["mask"]], dim=1)  # 32 x 64: a wide map
    Image.fromarray(layout.numpy().astype(np.uint8)).save(tmp_path / "map.png")
    out = tmp_path / "wide"
    args = ["sample", "--checkpoint", str(seg_prior), "--num", "2", "--condition"]
    args += [str(tmp_path / "map.png"), "--top-k", "50", "--output", str(out)]
    assert prior_main(args) == 0
    assert "sliding 8x8 window" in capsys.readouterr().out
    assert Image.open(out / "sample_0001.png").size == (64, 32)
    assert np.load(out / "indices.npy").shape == (2, 8, 16)
    assert prior_main(args) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert prior_main([*args, "--overwrite"]) == 0


def test_cli_class_samples_any_size_and_scores_codes(class_prior, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(class_prior / "model"), "--num", "3", "--class", "7"]
    args += ["--size", "56x28", "--cfg-scale", "1.5", "--top-p", "0.95", "--output", str(out)]
    assert prior_main(args) == 0
    capsys.readouterr()
    codes = np.load(out / "indices.npy")
    assert codes.shape == (3, 7, 14) and Image.open(out / "sample_0002.png").size == (56, 28)
    np.save(tmp_path / "codes.npy", codes[:, :, :7])
    nll_args = ["nll", "--checkpoint", str(class_prior), "--codes", str(tmp_path / "codes.npy")]
    assert prior_main([*nll_args, "--class", "7"]) == 0
    scores = json.loads(capsys.readouterr().out)["nll"]
    expected = load_prior(class_prior).nll(torch.from_numpy(codes[:, :, :7]), 7)
    assert np.allclose(scores, expected.numpy(), atol=1e-5)
    assert prior_main([*nll_args]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert (
        prior_main(
            ["sample", "--checkpoint", str(class_prior), "--class", "12", "--output", str(out)]
        )
        == 2
    )
    assert "--class 12: choose one of 0=T-shirt/top, 1=Trouser" in capsys.readouterr().err


def test_a_run_without_export_loads_from_its_latest_checkpoint(class_prior, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(class_prior, copy, ignore=shutil.ignore_patterns("model"))
    x = torch.randint(0, 256, (2, 7, 7))
    assert torch.allclose(load_prior(copy).nll(x, 3), load_prior(class_prior).nll(x, 3))


def test_training_reuses_the_code_cache_and_refuses_bad_set_ups(
    tokenizer_run, seg_tokenizer_run, class_prior, tmp_path, capsys
):
    base = ["train", "--config", "gpt-tiny", "--tokenizer", str(tokenizer_run[0])]
    small = [
        "train.max_steps=1",
        "codes.max_images=64",
        f"codes.cache_dir={tmp_path / 'c'}",
        *SMALL,
    ]
    assert prior_main([*base, "--output", str(tmp_path / "a"), *small]) == 0
    first = capsys.readouterr().out
    assert prior_main([*base, "--output", str(tmp_path / "b"), *small]) == 0
    assert "codes cached in" in first
    assert len([p for p in (tmp_path / "c").iterdir()]) == 2  # train + val, extracted once
    # a condition tokenizer needs masks in the data
    seg = ["--cond-tokenizer", str(seg_tokenizer_run[0])]
    bad = [*base, *seg, "--data", "builtin:photos", "--output", str(tmp_path / "x"), *small]
    assert prior_main(bad) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err.strip().splitlines()) == 1
    assert prior_main(["train", "--config", "gpt-tiny", "--output", str(tmp_path / "y")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert prior_main([*base, "--output", str(tmp_path / "z"), "model.n_embd=30"]) == 2
    assert load_tokenizer(tokenizer_run[0]).n_embed == 256
