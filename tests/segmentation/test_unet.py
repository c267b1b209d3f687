"""The U-Net of ``twostage segment``: the chapter's parameter count, shapes and size checks, a
short training of unet-tiny on builtin:shapes that beats the trivial predictors, and label maps
from ``twostage segment predict`` that ``read_mask`` reads back."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.config import SegmentationConfig
from segmentation.train import load_unet
from segmentation.unet import UNet
from shared.config import build_config, read_preset
from shared.data import build_dataset, read_mask
from shared.run import read_metrics
from stage1_vqgan.segmentation import confusion_matrix, segmentation_scores
from twostage.cli import main

CHAPTER_PARAMS = 31_031_875  # in 3, classes 3, base 64, 4 levels
STEPS = 300
EVAL_IMAGES = 256
CLASSES = 5  # builtin:shapes: background + 4 shapes
QUIET = ["train.progress=false", "train.num_workers=0"]


def segment(*argv):
    return main(["segment", *[str(a) for a in argv]])


def test_parameter_count_is_the_chapters():
    with torch.device("meta"):
        net = UNet(3, 3)
    assert sum(p.numel() for p in net.parameters()) == CHAPTER_PARAMS
    widths = [d.conv[0].out_channels for d in net.downs]
    assert widths == [64, 128, 256, 512] and net.bottleneck[2].out_channels == 1024


def test_info_reports_the_chapters_unet():
    from twostage.info import preset_info

    info = preset_info("unet")["unet"]
    assert info["params"] == CHAPTER_PARAMS and info["macs"] > 40e9


def test_forward_backward_shapes():
    net = UNet(3, 4, base_channels=4)
    x = torch.randn(2, 3, 32, 48)
    logits = net(x)
    assert logits.shape == (2, 4, 32, 48)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert UNet(1, 2, base_channels=4, levels=2)(torch.randn(1, 1, 12, 8)).shape == (1, 2, 12, 8)


def test_size_not_a_multiple_of_16_is_an_error_but_predict_pads():
    net = UNet(3, 4, base_channels=4).eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.randn(1, 3, 32, 40))
    x = torch.randn(1, 3, 37, 50)
    ids = net.predict(x)
    assert ids.shape == (1, 37, 50) and ids.dtype == torch.long
    padded = torch.nn.functional.pad(x, (0, 14, 0, 11), mode="replicate")
    torch.testing.assert_close(ids, net(padded)[..., :37, :50].argmax(1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unet") / "run"
    rc = segment(
        "train", "--config", "unet-tiny", "--output", out, "--max-steps", STEPS,
        f"train.eval_every={STEPS}", f"train.eval_images={EVAL_IMAGES}", *QUIET,
    )  # fmt: skip
    assert rc == 0
    return out


def scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    return segmentation_scores(confusion_matrix(pred, target, CLASSES))


def test_training_beats_constant_and_untrained_predictors(run):
    cfg = build_config(SegmentationConfig, read_preset(str(run / "config.yaml"), "segmentation"))
    assert cfg.model.num_classes == CLASSES and cfg.model.in_channels == 3
    val = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    items = [val[i] for i in range(EVAL_IMAGES)]
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items])
    torch.manual_seed(cfg.train.seed)
    untrained = UNet(**vars(cfg.model)).eval()  # as at step 0
    baseline = max(
        scores(torch.zeros_like(masks), masks)["miou"],  # everything background
        scores(untrained.predict(images), masks)["miou"],
    )
    final = [r for r in read_metrics(run) if "val/miou" in r][-1]
    print(f"mIoU: baseline {baseline:.3f} -> step {STEPS} {final['val/miou']:.3f}")
    assert final["step"] == STEPS
    assert final["val/miou"] > max(0.22, baseline + 0.05)
    assert final["val/pixel_accuracy"] > 0.88
    # the exported model reproduces the logged score
    trained = load_unet(run)
    assert scores(trained.predict(images), masks)["miou"] == pytest.approx(final["val/miou"])
    grid = Image.open(run / "samples" / f"step_{STEPS:06d}.png")
    assert grid.size == (3 * (3 * 32 + 2) + 2, 3 * (32 + 2) + 2)  # 8 tiles image|true|pred


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Images (three 32x32, one 40x24 in a sub-folder) and their masks from builtin:shapes."""
    from shared.config import DataConfig

    root = tmp_path_factory.mktemp("inputs")
    val = build_dataset(DataConfig(resolution=32), "val")
    big = build_dataset(DataConfig(resolution=48), "val")[3]
    items = {"a.png": val[0], "b.jpg": val[1], "c.png": val[2]}
    items["sub/d.png"] = {"image": big["image"][:, 4:28, 2:42], "mask": big["mask"][4:28, 2:42]}
    for name, item in items.items():
        pixels = ((item["image"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        mask = item["mask"].byte().numpy()
        for path, array in ((root / "images" / name, pixels), (root / "masks" / name, mask)):
            path = path.with_suffix(".png") if array is mask else path
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
    return root, items


def test_predict_writes_label_maps_that_read_mask_reads(run, inputs, tmp_path, capsys):
    root, items = inputs
    out = tmp_path / "labels"
    argv = ["predict", "--checkpoint", run, "--input", root / "images", "--output", out]
    assert segment(*argv, "--masks", root / "masks", "--batch-size", 2) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1])["images"] == 4 and 0 < json.loads(printed[-1])["miou"] <= 1
    net = load_unet(run)
    for name, item in items.items():
        label = out / name.replace(".jpg", ".png")
        with Image.open(label) as im:
            assert im.mode == "L" and im.size == tuple(item["image"].shape[:0:-1])
        ids = np.asarray(read_mask(label))
        assert ids.max() < CLASSES
        assert (out / "preview" / label.relative_to(out)).is_file()
        if name.endswith(".png") and item["image"].shape[-1] == 32:  # lossless, training size
            expected = net.predict(item["image"][None])[0].numpy()
            np.testing.assert_array_equal(ids, expected)  # preprocessed as in training


def test_predict_refuses_to_overwrite(run, inputs, tmp_path, capsys):
    root, _ = inputs
    out = tmp_path / "labels"
    (out / "preview").mkdir(parents=True)
    (out / "preview" / "c.png").write_bytes(b"mine")
    argv = ["predict", "--checkpoint", run, "--input", root / "images", "--output", out]
    assert segment(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "\n" not in err
    assert sorted(p.name for p in out.rglob("*")) == ["c.png", "preview"]  # nothing written
    assert segment(*argv, "--overwrite") == 2  # --overwrite replaces only twostage's files
    assert "did not write" in capsys.readouterr().err
    assert (out / "preview" / "c.png").read_bytes() == b"mine"
    (out / "preview" / "c.png").unlink()
    assert segment(*argv) == 0
    assert segment(*argv) == 2  # its own outputs now: replaced with --overwrite only
    assert segment(*argv, "--overwrite") == 0
    assert (out / "sub" / "d.png").is_file() and (out / "preview" / "c.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "unet-tiny", "--output", "{tmp}/r", "--data", "builtin:photos"],
         "no segmentation masks"),
        (["train", "--config", "unet-tiny", "--output", "{tmp}/r", "--resolution", "40"],
         "multiple of 16"),
        (["train", "--config", "unet", "--output", "{tmp}/r"], "model.num_classes=0"),
        (["predict", "--checkpoint", "{tmp}", "--input", "{tmp}", "--output", "{tmp}/o"],
         "no images"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    assert segment(*[a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("twostage segment: error:") and message in err and "\n" not in err
