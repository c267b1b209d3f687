"""``twostage demo --tiny`` end to end: every stage runs, ``index.html`` shows pictures that
exist and are not blank, the figures are sane, and a command copied from the report
reproduces its picture."""

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

from twostage.cli import main as twostage
from twostage.demo_pipeline import SCALES, WIDE_TILES


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
    expected = {"class_samples.png", "adatgan_samples.png", "wide_map.png", "wide.png"}
    expected |= {"fmnist_gpt_samples.png", "fmnist_adatgan_samples.png"}  # the shipped models
    assert expected <= set(sources)
    assert page.index("fmnist_gpt_samples.png") < page.index("class_samples.png")  # shown first
    assert any(s.startswith("tokenizer/samples/") for s in sources)
    for source in sources:
        assert pixels(demo / source).std() > 5, source
    tiny, tile = SCALES["tiny"], SCALES["tiny"].resolution + 2  # 2 px frames
    for grid in ("class_samples.png", "adatgan_samples.png"):  # a row per class
        size = (len(record["classes"]) * tile + 2, tiny.per_class * tile + 2)
        assert pixels(demo / grid).shape[:2] == size
    for grid in ("fmnist_gpt_samples.png", "fmnist_adatgan_samples.png"):  # 10 garment classes
        assert pixels(demo / grid).shape[:2] == (10 * 34 + 2, tiny.per_class * 34 + 2)
    wide = pixels(demo / "wide.png")
    assert wide.shape[1] == WIDE_TILES * wide.shape[0]
    assert "twostage vqgan train --config vqgan-tiny" in page


def test_figures_are_sane(demo):
    figures = json.loads((demo / "demo.json").read_text())["figures"]
    for prior in ("class_prior", "seg_prior"):
        assert figures[prior]["val/nll"] < math.log(256)  # below a uniform guess
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
