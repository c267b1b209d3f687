"""End to end: train vqgan-tiny on builtin:shapes, then use it through the CLI."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from shared.checkpoint import CheckpointError
from shared.config import build_config, read_preset
from shared.data import build_dataset
from shared.images import quantize_8bit
from shared.metrics import psnr
from shared.run import latest_checkpoint
from stage1_vqgan.cli import main as vqgan_main
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.model import VQModel
from stage1_vqgan.train import train

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(*overrides):
    return build_config(
        VQGANConfig,
        read_preset("vqgan-tiny", "stage1_vqgan"),
        overrides=["train.progress=false", "loss.perceptual_backbone=random", *overrides],
    )


def held_out_psnr(model, cfg, n=64):
    data = build_dataset(cfg.data, "val", seed=0)
    x = torch.stack([data[i]["image"] for i in range(n)])
    with torch.no_grad():
        return psnr(quantize_8bit(model.decode(model.encode(x))), x).mean().item()


@pytest.fixture
def trained(tokenizer_run):
    return tokenizer_run


def test_training_raises_held_out_psnr_beyond_initialisation(trained):
    run, cfg = trained
    torch.manual_seed(0)
    untrained = VQModel.from_config(cfg.model).eval()
    before = held_out_psnr(untrained, cfg)
    after = held_out_psnr(load_tokenizer(run), cfg)
    assert after > 19.0 and after > before + 3.0, (before, after)


def test_a_run_without_export_loads_from_its_latest_checkpoint(trained, tmp_path):
    run, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("model"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(load_tokenizer(copy).encode(x), load_tokenizer(run).encode(x))
    with pytest.raises(CheckpointError, match="neither a model folder"):
        load_tokenizer(run / "samples")


def test_run_folder_layout(trained):
    run, cfg = trained
    steps = cfg.train.max_steps
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "model/config.json",
        "model/model.safetensors",
        "model/discriminator/model.safetensors",
    ):
        assert (run / name).is_file(), name
    assert latest_checkpoint(run)[0] == steps
    assert sorted(p.name for p in (run / "samples").iterdir())[-1] == f"step_{steps:06d}.png"


def test_cli_encode_decode_reconstruct(trained, tmp_path):
    run, cfg = trained
    images = tmp_path / "in"
    images.mkdir()
    data = build_dataset(cfg.data, "val", seed=0)
    for i in range(3):
        arr = ((data[i]["image"].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(arr).save(images / f"img{i}.png")
    codes = tmp_path / "codes.npy"
    assert (
        vqgan_main(
            ["encode", "--checkpoint", str(run), "--input", str(images), "--output", str(codes)]
        )
        == 0
    )
    array = np.load(codes)
    assert array.shape == (3, 8, 8) and array.dtype == np.int64
    assert (
        vqgan_main(
            [
                "decode",
                "--checkpoint",
                str(run / "model"),
                "--codes",
                str(codes),
                "--output",
                str(tmp_path / "dec"),
            ]
        )
        == 0
    )
    assert reconstruct(run, images, tmp_path / "rec") == 0
    dec = np.asarray(Image.open(tmp_path / "dec" / "000000.png"))
    rec = np.asarray(Image.open(tmp_path / "rec" / "img0.png"))
    assert dec.shape == (32, 32, 3) and np.array_equal(dec, rec)
    # nothing is overwritten without --overwrite
    assert (
        vqgan_main(
            ["encode", "--checkpoint", str(run), "--input", str(images), "--output", str(codes)]
        )
        == 2
    )


def reconstruct(run, source, out, *flags):
    """``vqgan reconstruct`` of ``source`` with the tokenizer of ``run`` into ``out``."""
    argv = ["reconstruct", "--checkpoint", str(run), "--input", str(source), "--output", str(out)]
    return vqgan_main([*argv, *flags])


def test_cli_size_rules_and_errors(trained, tmp_path, capsys):
    run, _ = trained
    odd = tmp_path / "odd.png"
    Image.fromarray(np.full((30, 45, 3), 128, np.uint8)).save(odd)
    out = tmp_path / "o"
    assert reconstruct(run, odd, out) == 2
    err = capsys.readouterr().err.strip()
    assert "not divisible by the downsampling factor 4" in err and len(err.splitlines()) == 1
    assert reconstruct(run, odd, out, "--resize", "32") == 0
    assert Image.open(out / "odd.png").size == (48, 32)
    assert reconstruct(run, odd, out / "c", "--center-crop", "24") == 0
    assert Image.open(out / "c" / "odd.png").size == (24, 24)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[[0, 999]]]))
    assert (
        vqgan_main(
            [
                "decode",
                "--checkpoint",
                str(run),
                "--codes",
                str(bad),
                "--output",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "[0, 255]" in capsys.readouterr().err
    assert (
        vqgan_main(
            [
                "encode",
                "--checkpoint",
                str(tmp_path / "nope"),
                "--input",
                str(odd),
                "--output",
                str(tmp_path / "c.npy"),
            ]
        )
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err


def test_resumed_run_ends_with_exactly_the_uninterrupted_weights(tmp_path):
    common = [
        "train.batch_size=4",
        "train.checkpoint_every=3",
        "loss.disc_start=2",
        "model.restart_unused_steps=2",
        "train.ema_decay=0.9",
        "loss.lecam_weight=0.1",
        "loss.perceptual_weight=0.1",
        "loss.perceptual_backbone=random",
    ]
    train(tiny_config("train.max_steps=6", *common), tmp_path / "a")
    train(tiny_config("train.max_steps=3", *common), tmp_path / "b")
    train(tiny_config("train.max_steps=6", *common), tmp_path / "b", resume=True)
    a, b = tmp_path / "a/checkpoints/step_000006", tmp_path / "b/checkpoints/step_000006"
    for name in ("model.safetensors", "model_1.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    ema_a = VQModel.from_pretrained(tmp_path / "a/model").state_dict()
    ema_b = VQModel.from_pretrained(tmp_path / "b/model").state_dict()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_two_process_run_writes_one_consistent_checkpoint(tmp_path):
    out = tmp_path / "mp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "stage1_vqgan",
        "train",
        "--config",
        "vqgan-tiny",
        "--output",
        str(out),
        "--max-steps",
        "6",
        "--checkpoint-every",
        "3",
        "loss.perceptual_weight=0",
        "loss.disc_start=2",
        "model.restart_unused_steps=2",
        "train.progress=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "step_000003",
        "step_000006",
    ]
    assert not list((out / "checkpoints").glob(".tmp*"))
    ranks = sorted(p.name for p in (out / "checkpoints/step_000006").glob("random_states_*"))
    assert ranks == ["random_states_0.pkl", "random_states_1.pkl"]  # two processes really ran
    model = load_tokenizer(out)
    assert model.encode(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 8)


def test_reconstruct_refuses_same_stem_inputs(trained, tmp_path, capsys):
    run, _ = trained
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(folder / "a.jpg")
    out = tmp_path / "out"
    assert reconstruct(run, folder, out) == 2  # both would be out/a.png: refused, nothing written
    err = capsys.readouterr().err
    assert "a.png" in err and "a.jpg" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
