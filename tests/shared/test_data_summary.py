"""What a training command reports about its data, the class names a model keeps, and the
overfitting warning: the summary of folders (classes, masks, skipped files, tiny validation
splits) and builtins, ``--class NAME`` on priors and GANs (their own and the shipped ones), and
the overfitting rule on synthetic records and on a real prior that memorises a few images."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import DataConfig
from shared.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    build_dataset,
    class_id,
    data_summary,
    format_data_summary,
)
from shared.engine import overfitting
from shared.run import read_metrics

QUIET = ["train.progress=false", "train.num_workers=0"]


def image_folder(root, counts, masks=None, size=(24, 20)):
    """``root/CLASS/i.png`` random images (``counts``: {class: n}, or {"": n} for no classes),
    with masks of ids 0..3 under ``masks`` when given."""
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        for i in range(n):
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
            if masks is not None:
                mask = masks / name / f"{i}.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                ids = rng.integers(0, 4, (size[1], size[0]), dtype=np.uint8)
                Image.fromarray(ids, mode="L").save(mask)
    return root


def summary_of(**kw):
    cfg = DataConfig(**kw)
    return data_summary(build_dataset(cfg, "train"), build_dataset(cfg, "val"), cfg.source)


def test_folder_summary_names_each_class_folder_counts_skips_and_warns_of_a_tiny_val(tmp_path):
    root = image_folder(tmp_path / "photos", {"cats": 9, "dogs": 7})
    (root / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 of 17"):
        s = summary_of(source=str(root), resolution=16)
    assert (s["train_images"], s["val_images"], s["skipped"]) == (15, 1, 1)
    assert s["classes"] == [
        {"id": 0, "name": "cats", "images": 9},
        {"id": 1, "name": "dogs", "images": 7},
    ]
    text = format_data_summary(s)
    print("\n" + text)
    assert text.splitlines() == [
        f"data: {root} (folder): 15 training and 1 validation images; 1 unreadable file skipped",
        "  split: data.val_fraction=0.05 of the files go to val, chosen by a hash of each path",
        "  images: 16x16 px RGB (data.resolution; random crops, random horizontal flips)",
        "  classes: 0=cats (9), 1=dogs (7)",
        "warning: only 1 validation image: validation metrics are noise and overfitting goes "
        "unseen; set data.val_fraction=0.5 (about 8 of 16 images)",
    ]
    json.dumps(s)  # recorded as data.json
    with pytest.warns(UserWarning):
        larger = summary_of(source=str(root), resolution=16, val_fraction=0.8)
    assert larger["val_images"] >= 8 and larger["warnings"] == []


def test_summary_of_masks_unlabelled_folders_and_builtins(tmp_path):
    root = image_folder(tmp_path / "img", {"": 12}, masks=tmp_path / "masks")
    s = summary_of(source=str(root), masks=str(tmp_path / "masks"), resolution=16, flip=False)
    text = format_data_summary(s)
    assert "  classes: no labels (one sub-folder per class gives labels)" in text
    assert "  masks: 12 (ids 0..3)" in text and "random horizontal flips" not in text
    assert "12 images are too few to hold out 8: add images" in s["warnings"][0]
    shapes = format_data_summary(summary_of(source="builtin:shapes", resolution=32))
    assert "10000 training and 256 validation images" in shapes and "warning" not in shapes
    assert "classes: 0=circle, 1=square, 2=triangle, 3=cross" in shapes
    assert "masks: 10256 (ids 0..4)" in shapes
    photos = summary_of(source="builtin:photos", resolution=32)
    assert photos["val_images"] == 2 and "coffee and rocket" in photos["warnings"][0]
    assert "val_fraction" not in photos["warnings"][0]  # that split is fixed
    points = format_data_summary(summary_of(source="builtin:gaussians"))
    assert (
        points == "data: builtin:gaussians (points): 20000 training and 2000 validation 2-D points"
    )


def test_class_id_takes_names_or_ids_and_lists_the_choices():
    names = ["cats", "dogs"]
    assert [class_id(v, names, 2) for v in ("cats", "DOGS", "0", 1)] == [0, 1, 0, 1]
    assert class_id("2", ["1", "2", "3"], 3) == 1  # a stored name first
    for bad in ("hamster", "2", "-1"):
        with pytest.raises(DataError, match=f"^--class {bad}: choose one of 0=cats, 1=dogs$"):
            class_id(bad, names, 2)
    with pytest.raises(DataError, match=r"choose an id in 0\.\.9 \(the model stores no class"):
        class_id("10", None, 10)


def test_shipped_models_keep_loading_with_fashion_mnist_names(tmp_path):
    from gan_direct.sample import load_generator
    from shared.release import RELEASE_DIR
    from stage2_prior import load_prior

    assert load_prior("fmnist-gpt").class_names == FASHION_MNIST_CLASSES
    assert load_prior("fmnist-adatgan").class_id("ankle boot") == 9
    assert load_generator("fmnist-dcgan").class_names == FASHION_MNIST_CLASSES
    assert load_generator("fmnist-adatgan-pixel").class_names is None  # unconditional
    copy = tmp_path / "fmnist-gpt"  # the same folder elsewhere keeps the names it holds ...
    shutil.copytree(RELEASE_DIR / "fmnist-gpt", copy)
    assert load_prior(copy).class_names == FASHION_MNIST_CLASSES
    (copy / "classes.json").unlink()  # ... and without them it is no release model
    assert load_prior(copy).class_names is None
    with pytest.raises(DataError, match="choose an id in 0..9"):
        load_prior(copy).class_id("Dress")


def records(val, train, every=10, key="nll"):
    """metrics.jsonl records: ``train`` losses logged every 5 steps, an eval every ``every``."""
    out = []
    for i, loss in enumerate(train):
        out.append({"step": 5 * (i + 1), "loss": loss})
        if (5 * (i + 1)) % every == 0:
            out.append({"step": 5 * (i + 1), f"val/{key}": val[(5 * (i + 1)) // every - 1]})
    return out


def test_overfitting_rule_on_synthetic_records():
    falling = list(np.linspace(4.0, 0.565, 10))
    # the run: val NLL stays at about 5.33 (uniform 5.55) while the loss falls to 0.565
    flat = records([5.5, 5.33, 5.33, 5.335, 5.33], falling)
    message = overfitting(flat, "loss", "nll", examples=62)
    assert message.startswith(
        "overfitting: val/nll has not improved for 3 evaluations (best 5.33 at step 20, now "
        "5.33 at step 50) while the training loss fell 75% (3.046 -> 0.7558) on 62 training "
        "examples; "
    ), message
    assert "train.max_steps=20" in message and "data.flip=true" in message
    assert overfitting(flat[:-2], "loss", "nll") is None  # 2 evaluations past the best: wait
    improving = records([5.3, 4.9, 4.5, 4.2, 4.0], falling)
    assert overfitting(improving, "loss", "nll") is None
    stuck = records([5.34, 5.33, 5.33, 5.335, 5.33], [3.0] * 10)  # not learning at all
    assert overfitting(stuck, "loss", "nll") is None
    # a tokenizer: PSNR (higher is better) drops while the reconstruction loss keeps falling
    psnr = [
        {**r, "rec": r.pop("loss")} if "loss" in r else r
        for r in records([20.0, 21.0, 20.5, 20.0, 19.5], falling, key="psnr")
    ]
    message = overfitting(psnr, "rec", "psnr", "max")
    assert "val/psnr has not improved for 3" in message and "training loss 'rec' fell" in message
    assert overfitting(psnr, "rec", "psnr", "min") is None  # falling PSNR read as improving


def random_tokenizer(folder):
    """A small untrained tokenizer (16 px -> 4x4 codes of 64), saved as a model folder."""
    from stage1_vqgan.config import ModelConfig
    from stage1_vqgan.model import VQModel

    torch.manual_seed(0)
    cfg = ModelConfig(
        ch=32,
        ch_mult=[1, 2, 2],
        num_res_blocks=1,
        attn_resolutions=[],
        z_channels=32,
        resolution=16,
        n_embed=64,
        embed_dim=16,
    )
    VQModel.from_config(cfg).save_pretrained(folder)
    return folder


def test_a_prior_on_a_few_images_warns_of_overfitting_once_and_keeps_its_class_names(
    tmp_path, capsys
):
    from stage2_prior import load_prior
    from stage2_prior.cli import main as prior_main

    root = image_folder(tmp_path / "photos", {"cats": 9, "dogs": 7})
    run = tmp_path / "run"
    args = ["train", "--config", "gpt-tiny", "--data", str(root), "--resolution", "16"]
    args += ["--tokenizer", str(random_tokenizer(tmp_path / "tok")), "--output", str(run)]
    args += ["--max-steps", "60", "data.val_fraction=0.5", "model.n_layer=2", "model.n_embd=64"]
    args += ["train.lr=3e-3", "train.batch_size=8", "train.eval_every=10", "train.log_every=5"]
    args += ["train.sample_every=0", f"codes.cache_dir={tmp_path / 'codes'}", *QUIET]
    assert prior_main(args) == 0
    out = capsys.readouterr().out
    print(out)
    assert f"data: {root} (folder): 6 training and 10 validation images" in out
    assert "  classes: 0=cats (9), 1=dogs (7)" in out
    warned = [line for line in out.splitlines() if line.startswith("warning: overfitting: ")]
    assert len(warned) == 2 and warned[0] == warned[1]  # when it opens, and at the end
    assert "val/nll has not improved for 3 evaluations" in warned[0]
    found = [r for r in read_metrics(run) if "overfitting" in r]
    assert len(found) == 1 and warned[0] == f"warning: {found[0]['overfitting']}"
    evals = [r["val/nll"] for r in read_metrics(run) if "val/nll" in r]
    assert evals[-1] > min(evals) + 0.5  # it did overfit
    assert json.loads((run / "data.json").read_text())["classes"][1]["name"] == "dogs"
    assert json.loads((run / "model" / "classes.json").read_text()) == {
        "class_names": ["cats", "dogs"]
    }
    assert load_prior(run).class_names == ["cats", "dogs"]
    sample = ["sample", "--checkpoint", str(run), "--num", "2", "--output", str(tmp_path / "s")]
    assert prior_main([*sample, "--class", "dogs"]) == 0
    capsys.readouterr()
    assert prior_main([*sample, "--class", "hamster", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "twostage prior: error: --class hamster: choose one of 0=cats, 1=dogs"
    assert prior_main([*sample, "--overwrite"]) == 2
    assert "pass --class NAME or ID (0=cats, 1=dogs)" in capsys.readouterr().err
    midrun = tmp_path / "midrun"  # no export yet: names from the run's data.json
    shutil.copytree(run, midrun, ignore=shutil.ignore_patterns("model"))
    assert load_prior(midrun).class_names == ["cats", "dogs"]


@pytest.mark.slow
def test_vqgan_train_prints_the_summary_and_claims_data_json(tmp_path, capsys):
    from stage1_vqgan.cli import main as vqgan_main

    root = image_folder(tmp_path / "photos", {"": 10})
    run = tmp_path / "run"
    args = ["train", "--config", "vqgan-tiny", "--data", str(root), "--resolution", "16"]
    args += ["--output", str(run), "--max-steps", "2", "loss.perceptual_backbone=random", *QUIET]
    assert vqgan_main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"data: {root} (folder): 9 training and 1 validation images\n"), out
    assert "  classes: no labels (one sub-folder per class gives labels)" in out
    assert "warning: only 1 validation image" in out and "overfitting:" not in out
    assert json.loads((run / "data.json").read_text())["train_images"] == 9
    assert "data.json" in json.loads((run / ".twostage.json").read_text())["entries"]
    assert vqgan_main([*args, "--overwrite"]) == 0  # the run folder is still twostage's own


def test_a_conditional_gan_stores_its_class_names_and_samples_by_name(tmp_path, capsys):
    from gan_direct.cli import main as gan_main

    root = image_folder(tmp_path / "photos", {"cats": 9, "dogs": 7})
    run = tmp_path / "run"
    args = ["train", "--config", "dcgan-fmnist", "--data", str(root), "--resolution", "16"]
    args += ["--output", str(run), "--max-steps", "2", "data.channels=3", "train.batch_size=8"]
    args += ["train.sample_every=0", *QUIET]
    assert gan_main(args) == 0  # also: its one validation image is no crash at the final eval
    assert "  classes: 0=cats (9), 1=dogs (7)" in capsys.readouterr().out
    assert json.loads((run / "model" / "generator" / "classes.json").read_text()) == {
        "class_names": ["cats", "dogs"]
    }
    sample = ["sample", "--checkpoint", str(run), "--num", "2", "--output", str(tmp_path / "s")]
    assert gan_main([*sample, "--class", "Dogs"]) == 0
    capsys.readouterr()
    assert gan_main([*sample, "--class", "5", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "twostage gan: error: --class 5: choose one of 0=cats, 1=dogs"


def test_an_adatgan_prior_stores_its_class_names_too(tmp_path, capsys):
    from stage2_prior import load_prior
    from stage2_prior.cli import main as prior_main

    root = image_folder(tmp_path / "photos", {"cats": 5, "dogs": 4})
    run = tmp_path / "run"
    args = ["train", "--config", "adatgan-prior-tiny", "--data", str(root), "--resolution", "16"]
    args += ["--tokenizer", str(random_tokenizer(tmp_path / "tok")), "--output", str(run)]
    args += ["--max-steps", "2", "train.sample_every=0", f"codes.cache_dir={tmp_path / 'c'}"]
    assert prior_main([*args, *QUIET]) == 0
    assert "  classes: 0=cats (5), 1=dogs (4)" in capsys.readouterr().out
    assert load_prior(run / "model").class_id("dogs") == 1


def test_segment_train_summarises_the_masks(tmp_path, capsys):
    from segmentation.cli import main as segment_main

    root = image_folder(tmp_path / "img", {"": 12}, masks=tmp_path / "masks")
    args = ["train", "--config", "unet-tiny", "--data", str(root), "--resolution", "16"]
    args += [
        "--output",
        str(tmp_path / "run"),
        "--max-steps",
        "2",
        f"data.masks={tmp_path / 'masks'}",
    ]
    assert segment_main([*args, *QUIET]) == 0
    out = capsys.readouterr().out
    assert f"data: {root} (folder): 11 training and 1 validation images" in out
    assert "  masks: 12 (ids 0..3)" in out
    assert "12 images are too few to hold out 8: add images" in out
