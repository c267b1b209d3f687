"""The tokenizer of segmentation maps: mask helpers, a short training run on builtin:shapes masks,
export and loading, and the one-line errors of bad set-ups."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shared.config import ConfigError, build_config, read_preset
from shared.data import build_dataset
from shared.run import read_metrics
from stage1_vqgan import decode_mask, encode_mask, load_tokenizer
from stage1_vqgan.cli import main as vqgan_main
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation import (
    colorize_mask,
    confusion_matrix,
    logits_to_mask,
    mask_to_onehot,
    segmentation_scores,
)
from stage1_vqgan.train import train

LABELS = 5  # builtin:shapes: background + 4 shape classes


def seg_config(*overrides):
    return build_config(
        VQGANConfig,
        read_preset("vqgan-seg-tiny", "stage1_vqgan"),
        overrides=["train.progress=false", "train.num_workers=0", *overrides],
    )


def held_out_masks(cfg, n=64):
    data = build_dataset(cfg.data, "val", seed=0)
    return torch.stack([data[i]["mask"] for i in range(n)])


def scores(model, masks):
    """Held-out pixel accuracy and mIoU of the mask round trip, and the BCE of the logits."""
    with torch.no_grad():
        pred = decode_mask(model, encode_mask(model, masks))
        onehot = mask_to_onehot(masks, LABELS)
        bce = F.binary_cross_entropy_with_logits(model(onehot)[0], onehot).item()
    return {**segmentation_scores(confusion_matrix(pred, masks, LABELS)), "bce": bce}


def test_onehot_round_trip():
    mask = torch.randint(0, 7, (2, 8, 12))
    onehot = mask_to_onehot(mask, 7)
    assert onehot.shape == (2, 7, 8, 12) and onehot.dtype == torch.float32
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(onehot.sum(1), torch.ones(2, 8, 12))
    assert torch.equal(logits_to_mask(onehot), mask)
    assert torch.equal(logits_to_mask(10 * onehot - 5), mask)  # logits too


@pytest.mark.parametrize("bad", [5, -1])
def test_onehot_refuses_labels_outside_the_range(bad):
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    mask[0, 1, 2] = bad
    with pytest.raises(ValueError, match=f"mask label {bad} is outside") as err:
        mask_to_onehot(mask, 5)
    assert "\n" not in str(err.value)


def test_colorize_mask_gives_fixed_distinct_colours():
    mask = torch.arange(24).view(1, 4, 6)
    images = colorize_mask(mask)
    assert images.shape == (1, 3, 4, 6) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images[0, :, 0, 0], torch.full((3,), -1.0))  # label 0 is black
    colours = images[0].flatten(1).t()
    assert len({tuple(c.tolist()) for c in colours}) == 24
    assert torch.equal(colorize_mask(mask[:, :2, :2])[0], images[0, :, :2, :2])


def test_scores_of_a_known_prediction():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1]]])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    s = segmentation_scores(confusion)
    assert s["pixel_accuracy"] == 0.75
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # label 2 is absent


@pytest.fixture
def trained(seg_tokenizer_run):
    return seg_tokenizer_run


def test_training_learns_the_masks(trained):
    run, cfg = trained
    masks = held_out_masks(cfg)
    background = segmentation_scores(confusion_matrix(torch.zeros_like(masks), masks, LABELS))
    torch.manual_seed(0)
    before = scores(VQModel.from_config(cfg.model).eval(), masks)
    after = scores(load_tokenizer(run), masks)
    print(f"\nall-background {background}\nuntrained {before}\ntrained {after}")
    assert after["bce"] < before["bce"] / 4, (before, after)
    assert after["pixel_accuracy"] > background["pixel_accuracy"], (background, after)
    assert after["miou"] > background["miou"] + 0.05, (background, after)
    logged = [r for r in read_metrics(run) if "val/miou" in r]
    assert [r["step"] for r in logged] == [cfg.train.max_steps // 2, cfg.train.max_steps]
    assert {"val/pixel_accuracy", "val/usage"} <= logged[-1].keys()


def test_export_is_a_segmentation_tokenizer_without_discriminator(trained):
    run, _ = trained
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["config"]["kind"] == "segmentation"
    assert sorted(p.name for p in (run / "model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    assert not list(run.glob("checkpoints/*/model_1.safetensors"))  # no discriminator trained
    grid = Image.open(sorted((run / "samples").iterdir())[-1])
    assert grid.mode == "RGB"
    model = load_tokenizer(run)
    assert model.kind == "segmentation"
    masks = torch.randint(0, LABELS, (2, 32, 48))
    with torch.no_grad():
        codes = encode_mask(model, masks)
        assert codes.shape == (2, 8, 12) and codes.dtype == torch.int64
        assert decode_mask(model, codes).shape == (2, 32, 48)


def test_cli_decodes_codes_to_coloured_masks_and_refuses_images(trained, tmp_path, capsys):
    run, _ = trained
    codes = tmp_path / "codes.npy"
    np.save(codes, np.random.default_rng(0).integers(0, 64, (2, 8, 8)))
    out = tmp_path / "dec"
    assert (
        vqgan_main(
            ["decode", "--checkpoint", str(run), "--codes", str(codes), "--output", str(out)]
        )
        == 0
    )
    png = Image.open(out / "000001.png")
    assert png.mode == "RGB" and png.size == (32, 32)
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    args = ["encode", "--checkpoint", str(run), "--input", str(image), "--output", str(codes)]
    assert vqgan_main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tokenizer of segmentation maps" in err and len(err.splitlines()) == 1


def test_mask_helpers_refuse_an_image_tokenizer(tiny_model_kwargs):
    model = VQModel(**tiny_model_kwargs)
    assert model.kind == "image"
    with pytest.raises(ValueError, match="encodes images, not segmentation maps"):
        encode_mask(model, torch.zeros(1, 32, 32, dtype=torch.long))


def test_an_export_without_kind_loads_as_an_image_tokenizer(tiny_model_kwargs, tmp_path):
    VQModel(**tiny_model_kwargs).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["config"]["kind"]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    assert load_tokenizer(tmp_path).kind == "image"


def test_dataset_without_masks_is_a_config_error(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    cfg = seg_config(f"data.source={images}", "data.val_fraction=0")
    with pytest.raises(ConfigError, match="has none") as err:
        train(cfg, tmp_path / "run")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.in_channels=3", "model.out_channels=3"], "use 5 labels but model.in_channels"),
        (["model.out_channels=6"], "must equal model.in_channels"),
    ],
)
def test_channels_that_do_not_fit_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        train(seg_config(*overrides), tmp_path / "run")
    assert "\n" not in str(err.value)
