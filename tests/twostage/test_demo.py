"""``twostage demo --tiny`` end to end: every stage runs on the data the demo chose
(Fashion-MNIST when installed), ``index.html`` shows pictures that exist and are not blank, the
figures are sane, the wide texture is sampled beyond the training window, and a command copied
from the report reproduces its picture. The choice of data is tested without training."""

import html
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import twostage.demo_pipeline as pipeline
from shared.data import FASHION_MNIST_ENV
from twostage.cli import main as twostage
from twostage.demo_pipeline import SCALES, WIDE_TILES, demo_data, plan


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert twostage(["demo", "--tiny", "--output", str(out), "--device", "cpu"]) == 0
    return out


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_index_shows_every_stage_with_pictures_that_are_not_blank(demo):
    page = (demo / "index.html").read_text()
    record = json.loads((demo / "demo.json").read_text())
    for step in record["steps"].values():
        assert html.escape(step["title"]) in page and step["commands"]
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = {"class_samples.png", "adatgan_samples.png", "wide.png", "texture_crops.png"}
    expected |= {"fmnist_gpt_samples.png", "fmnist_adatgan_samples.png"}  # the shipped models
    assert expected <= set(sources)
    assert page.index("fmnist_gpt_samples.png") < page.index("class_samples.png")  # shown first
    assert any(s.startswith("tokenizer/samples/") for s in sources)
    assert any(s.startswith("texture-tokenizer/samples/") for s in sources)
    assert any(s.startswith("prior-texture/samples/") for s in sources)
    for source in sources:
        assert pixels(demo / source).std() > 5, source
    tiny, tile = SCALES["tiny"], SCALES["tiny"].resolution + 2  # 2 px frames
    for grid in ("class_samples.png", "adatgan_samples.png"):  # a row per class
        size = (len(record["classes"]) * tile + 2, tiny.per_class * tile + 2)
        assert pixels(demo / grid).shape[:2] == size
    for grid in ("fmnist_gpt_samples.png", "fmnist_adatgan_samples.png"):  # 10 garment classes
        assert pixels(demo / grid).shape[:2] == (10 * 34 + 2, tiny.per_class * 34 + 2)
    across, down = WIDE_TILES
    assert pixels(demo / "wide.png").shape[:2] == (down * tiny.resolution, across * tiny.resolution)
    data = record["data"]
    assert data == demo_data()[0] and html.escape(data) in page
    tokenizer = "vqgan-fmnist" if data == "builtin:fashion-mnist" else "vqgan-tiny"
    assert f"twostage vqgan train --config {tokenizer} --data {data}" in page
    texture = 'twostage vqgan train --config vqgan-tiny --data "$DEMO/texture/crops"'
    assert html.escape(texture) in page
    assert len(list((demo / "texture" / "crops").glob("*.png"))) == tiny.texture_crops


def test_figures_are_sane(demo):
    record = json.loads((demo / "demo.json").read_text())
    figures = record["figures"]
    codebook = 512 if record["data"] == "builtin:fashion-mnist" else 256  # vqgan-fmnist: 512
    assert figures["class_prior"]["val/nll"] < math.log(codebook)  # below a uniform guess
    assert figures["texture_prior"]["val/nll"] < math.log(256)  # vqgan-tiny
    assert figures["benchmark"]["psnr"] > 12 and 0 < figures["benchmark"]["usage"] <= 1
    assert "lpips_vgg" in figures["benchmark"]["unavailable"]  # no VGG weights offline
    for key in ("fmnist_gpt_samples", "fmnist_adatgan_samples"):  # real-FID figures beside them
        rows = [r for k, r in figures[key].items() if k != "measured"]
        assert rows and all(r["fid"] > 0 and r["class_agreement"] > 0.3 for r in rows)
    clip = figures["clip"]
    assert (demo / "clip.png").is_file() or "download" in clip["skipped"]


def test_a_command_from_the_report_reproduces_its_picture(demo, tmp_path):
    record = json.loads((demo / "demo.json").read_text())
    command = record["steps"]["class_samples"]["commands"][0]  # class 0
    command = command.replace('"$DEMO/class_samples/class_0"', str(tmp_path / "again"))
    command = command.replace("twostage ", f"{sys.executable} -m twostage ", 1)
    env = {**os.environ, "DEMO": str(demo)}
    subprocess.run(command, shell=True, check=True, env=env, capture_output=True)
    again = sorted((tmp_path / "again").glob("sample_*.png"))
    first = sorted((demo / "class_samples" / "class_0").glob("sample_*.png"))
    assert len(again) == len(first) > 0
    for a, b in zip(again, first, strict=True):
        assert np.array_equal(pixels(a), pixels(b))


def test_an_existing_folder_is_kept_unless_overwrite(demo, tmp_path, capsys):
    assert twostage(["demo", "--tiny", "--output", str(demo)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert twostage(["demo", "--tiny", "--output", str(mine), "--overwrite"]) == 2
    assert "not a twostage demo folder" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "mine"


def test_the_demo_trains_on_fashion_mnist_only_when_it_is_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "FASHION_MNIST_DIR", tmp_path / "none")
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    data, why = demo_data()
    assert data == "builtin:shapes" and "not installed" in why
    steps = plan(SCALES["tiny"], tmp_path, "cpu", data)
    argv = steps["tokenizer"].argv
    assert argv[3] == "vqgan-tiny" and argv[argv.index("--data") + 1] == data
    assert len(steps["class_samples"]) == 4  # circle, square, triangle, cross
    root = tmp_path / "torchvision"
    (root / "FashionMNIST" / "raw").mkdir(parents=True)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(root))
    data, why = demo_data()
    assert data == "builtin:fashion-mnist" and str(root) in why
    steps = plan(SCALES["tiny"], tmp_path, "cpu", data)
    assert steps["tokenizer"].argv[3] == "vqgan-fmnist" and len(steps["class_samples"]) == 10
    assert steps["wide"].argv[steps["wide"].argv.index("--size") + 1] == "128x64"
