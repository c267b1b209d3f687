"""Bad values and bad files given to the real commands: each is one line ``twostage ...: error:``
and exit code 2, refused before anything is loaded or written; plus the probes that used to hang
(``--truncation 1e-9``) or needed a dataset (``info`` of a Fashion-MNIST preset)."""

import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from shared.cli import base_config, training_overrides
from shared.config import build_config
from twostage.cli import main

TOKENIZER = "fmnist-vqgan"  # shipped release models, loaded by name (tiny, 28 px)
PRIOR = "fmnist-gpt"
GAN = "fmnist-dcgan"


def one_line_error(capsys, argv) -> str:
    """Run ``twostage *argv``; assert exit code 2 and a single ``error:`` line; return it."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twostage "), err
    assert ": error: " in lines[0]
    return lines[0]


# (argv after "twostage", text the error must contain); {tmp} is the test's folder
BAD_OPTIONS = [
    # prior sample: refused by argparse, before the checkpoint is loaded
    (["prior", "sample", "--temperature", "nan"], "--temperature"),
    (["prior", "sample", "--temperature", "-1"], "--temperature"),
    (["prior", "sample", "--temperature", "inf"], "--temperature"),
    (["prior", "sample", "--cfg-scale", "nan"], "--cfg-scale"),
    (["prior", "sample", "--cfg-scale", "inf"], "--cfg-scale"),
    (["prior", "sample", "--top-p", "-0.5"], "--top-p"),
    (["prior", "sample", "--top-p", "0"], "--top-p"),
    (["prior", "sample", "--top-p", "1.5"], "--top-p"),
    (["prior", "sample", "--top-p", "nan"], "--top-p"),
    (["prior", "sample", "--top-k", "0"], "--top-k"),
    (["prior", "sample", "--top-k", "-3"], "--top-k"),
    (["prior", "sample", "--num", "0"], "--num"),
    (["prior", "sample", "--num", "1000000000"], "TWOSTAGE_MAX_SAMPLES"),
    (["prior", "sample", "--candidates", "0", "--rerank", "x"], "--candidates"),
    (["prior", "sample", "--batch-size", "0"], "--batch-size"),
    (["prior", "sample", "--seed", "-1"], "--seed"),
    (["prior", "sample", "--size", "100000x100000"], "TWOSTAGE_MAX_PIXELS"),
    (["prior", "sample", "--size", "28"], "WIDTHxHEIGHT"),
    (["prior", "sample", "--size", "axb"], "WIDTHxHEIGHT"),
    (["prior", "sample", "--size", "0x28"], "positive"),
    (["prior", "sample", "--class", "-1"], "--class"),
    (["prior", "nll", "--codes", "{tmp}/c.npy", "--batch-size", "0"], "--batch-size"),
    # gan sample
    (["gan", "sample", "--truncation", "nan"], "--truncation"),
    (["gan", "sample", "--truncation", "0"], "--truncation"),
    (["gan", "sample", "--truncation", "-1"], "--truncation"),
    (["gan", "sample", "--truncation", "inf"], "--truncation"),
    (["gan", "sample", "--num", "0"], "--num"),
    (["gan", "sample", "--num", "-4"], "--num"),
    (["gan", "sample", "--num", "1000000000"], "TWOSTAGE_MAX_SAMPLES"),
    (["gan", "sample", "--batch-size", "0"], "--batch-size"),
    (["gan", "sample", "--psi", "1.5"], "--psi"),
    (["gan", "sample", "--psi", "nan"], "--psi"),
    (["gan", "sample", "--interpolate", "1"], "--interpolate"),
    (["gan", "sample", "--class", "-1"], "--class"),
    # vqgan
    (["vqgan", "reconstruct", "--input", "{tmp}", "--batch-size", "0"], "--batch-size"),
    (["vqgan", "encode", "--input", "{tmp}", "--resize", "0"], "--resize"),
    (["vqgan", "encode", "--input", "{tmp}", "--center-crop", "-2"], "--center-crop"),
    (["segment", "predict", "--input", "{tmp}", "--batch-size", "0"], "--batch-size"),
    (["vqgan", "benchmark", "--data", "builtin:shapes", "--resolution", "0"], "--resolution"),
    (["vqgan", "benchmark", "--data", "builtin:shapes", "--resolution", "99999"], "PIXELS"),
    (["vqgan", "benchmark", "--data", "builtin:shapes", "--num-images", "0"], "--num-images"),
    # the flags of every train command (shared.cli.add_training_flags)
    (["vqgan", "train", "--config", "vqgan-tiny", "--batch-size", "0"], "--batch-size"),
    (["vqgan", "train", "--config", "vqgan-tiny", "--max-steps", "-5"], "--max-steps"),
    (["prior", "train", "--config", "gpt-tiny", "--max-steps", "-1"], "--max-steps"),
    (["gan", "train", "--config", "adatgan-tiny", "--resolution", "0"], "--resolution"),
    (["segment", "train", "--config", "unet-tiny", "--seed", "99999999999"], "--seed"),
    (
        ["gan", "train", "--config", "adatgan-tiny", "--checkpoint-every", "-1"],
        "--checkpoint-every",
    ),
    (["vqgan", "train", "--config", "vqgan-tiny", "--bogus"], "unrecognized arguments"),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_option_value_is_one_line_error(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    command, action = argv[:2]
    needs = {
        "sample": ["--checkpoint", PRIOR if command == "prior" else GAN],
        "nll": ["--checkpoint", PRIOR],
        "reconstruct": ["--checkpoint", TOKENIZER],
        "encode": ["--checkpoint", TOKENIZER],
        "benchmark": ["--checkpoint", TOKENIZER],
        "predict": ["--checkpoint", tmp_path],
    }.get(action, [])
    output = tmp_path / ("out.npy" if action == "encode" else "out")
    if action != "nll":
        needs += ["--output", output]
    line = one_line_error(capsys, [*argv, *needs])
    assert message in line
    assert not output.exists()  # refused before anything is written


BAD_PROMPTS = [
    (["a cat:nan"], "weight"),
    (["a cat:inf"], "weight"),
    (["a cat:-inf"], "weight"),
    (["a cat:1:nan"], "stop"),
    (["a cat", "--noise-prompt", "3:nan"], "weight"),
    (["a cat", "--image-prompt", "{tmp}/x.png:inf"], "weight"),
    (["a cat", "--size", "0x10"], "--size"),
    (["a cat", "--size", "big"], "WIDTHxHEIGHT"),
    (["a cat", "--size", "100000x100000"], "TWOSTAGE_MAX_PIXELS"),
    (["a cat", "--steps", "0"], "--steps"),
    (["a cat", "--lr", "nan"], "--lr"),
    (["a cat", "--cutn", "0"], "--cutn"),
    (["a cat", "--tv-weight", "-1"], "--tv-weight"),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_PROMPTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_clip_prompt_or_option_is_one_line_error(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    output = tmp_path / "out"
    line = one_line_error(capsys, ["clip", *argv, "--tokenizer", TOKENIZER, "--output", output])
    assert message in line
    assert not output.exists()


def header_only_png(path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` (a few hundred bytes on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.mark.parametrize("action", ["reconstruct", "encode"])
def test_huge_image_is_refused_from_its_header(tmp_path, capsys, action):
    header_only_png(tmp_path / "big.png", 12000, 12000)
    output = tmp_path / ("codes.npy" if action == "encode" else "out")
    argv = ["vqgan", action, "--checkpoint", TOKENIZER, "--input", tmp_path / "big.png"]
    line = one_line_error(capsys, [*argv, "--output", output])
    assert "12000x12000" in line and "TWOSTAGE_MAX_PIXELS" in line
    assert not output.exists()


def test_huge_resize_is_refused(tmp_path, capsys):
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    argv = ["vqgan", "reconstruct", "--checkpoint", TOKENIZER, "--input", tmp_path / "a.png"]
    line = one_line_error(capsys, [*argv, "--resize", "100000", "--output", tmp_path / "out"])
    assert "TWOSTAGE_MAX_PIXELS" in line


def test_sixteen_bit_mask_ids_do_not_become_classes(tmp_path, capsys):
    """A 16-bit mask holding id 60000 with model.num_classes=0 (from the data) must not build a
    60001-class U-Net."""
    (tmp_path / "img").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        mask = np.zeros((16, 16), np.uint16)
        mask[0, 0] = 60000 if i == 0 else 1
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    argv = ["segment", "train", "--config", "unet-tiny", "--data", tmp_path / "img"]
    argv += ["--masks", tmp_path / "masks", "--output", tmp_path / "run", "model.num_classes=0"]
    line = one_line_error(capsys, argv)
    assert "60000" in line and "256" in line


def test_classes_limit_bounds_any_unet(monkeypatch):
    from segmentation.unet import UNet
    from shared.limits import LimitError

    monkeypatch.setenv("TWOSTAGE_MAX_CLASSES", "100")
    with pytest.raises(LimitError, match="TWOSTAGE_MAX_CLASSES"):
        UNet(3, 101, base_channels=1, levels=1)


def test_condition_map_size_transposed_is_refused(tmp_path):
    """``--size`` is WIDTHxHEIGHT: the map's own size given the other way round is an error,
    not a silent transpose."""
    from shared.data import DataError
    from stage2_prior.cli import pixel_size, read_condition_map

    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "map.png")  # 32 wide, 16 high
    assert read_condition_map(str(tmp_path / "map.png"), pixel_size((32, 16), 8)).shape == (16, 32)
    with pytest.raises(DataError, match="--size 32x16"):
        read_condition_map(str(tmp_path / "map.png"), pixel_size((16, 32), 8))
    assert read_condition_map(str(tmp_path / "map.png"), pixel_size((64, 32), 8)).shape == (32, 64)


def test_tiny_truncation_ends_and_stays_inside():
    from gan_direct.cli import truncated_noise

    for t in (1e-9, 1e-300, 0.5, 40.0):
        z = truncated_noise(256, 64, t, torch.Generator().manual_seed(0))
        assert z.shape == (256, 64) and torch.isfinite(z).all() and z.abs().max() <= t
    z = truncated_noise(20000, 1, 1.0, torch.Generator().manual_seed(0))
    assert z.std().item() == pytest.approx(0.5379, abs=0.02)  # std of N(0,1) truncated to +-1


def test_gan_sample_with_tiny_truncation(tmp_path, capsys):
    argv = ["gan", "sample", "--checkpoint", GAN, "--truncation", "1e-9", "--num", "2"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "sample_0001.png").is_file()


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": float("nan")},
        {"temperature": -1.0},
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": float("nan")},
    ],
)
def test_sampler_refuses_unusable_values(options):
    from stage2_prior.sampling import check_sampling, draw

    with pytest.raises(ValueError):
        draw(torch.zeros(2, 5), **options)
    with pytest.raises(ValueError, match="cfg_scale"):
        check_sampling(cfg_scale=float("nan"))


def test_info_does_not_need_fashion_mnist(tmp_path, monkeypatch, capsys):
    import shared.data.fashion_mnist
    from shared.config import DataConfig
    from shared.data import DataError, build_dataset

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(shared.data.fashion_mnist, "FASHION_MNIST_DIR", empty)
    monkeypatch.setenv(shared.data.FASHION_MNIST_ENV, str(empty))
    with pytest.raises(DataError):  # the dataset is really gone
        build_dataset(DataConfig(source="builtin:fashion-mnist", resolution=28, channels=1))
    for preset in ("cgan-mnist", "cgan-mnist-projection", "dcgan-fmnist", "gpt-fmnist"):
        assert main(["info", preset]) == 0, capsys.readouterr().err
        out, err = capsys.readouterr()
        assert err == "" and json.loads(out)


TRAIN_PRESETS = [("vqgan", "vqgan-tiny"), ("prior", "gpt-tiny"), ("gan", "adatgan-tiny")]
TRAIN_PRESETS += [("segment", "unet-tiny")]


@pytest.mark.parametrize(("command", "preset"), TRAIN_PRESETS)
def test_overrides_between_flags(tmp_path, command, preset):
    """``key=value`` overrides before, between and after the flags all apply, in order."""
    import importlib

    from twostage.cli import COMMANDS

    cli = importlib.import_module(COMMANDS[command][0])
    argv = ["train", "train.max_steps=3", "--config", preset, "train.log_every=7"]
    argv += ["--output", str(tmp_path / "run"), "train.eval_every=9", "--seed", "5"]
    argv += ["train.max_steps=1"]
    args = cli.build_parser().parse_args(argv)
    assert args.overrides == [
        "train.max_steps=3",
        "train.log_every=7",
        "train.eval_every=9",
        "train.max_steps=1",
    ]
    package = cli.__name__.split(".")[0]
    schema = {
        "vqgan": "stage1_vqgan.config:VQGANConfig",
        "prior": "stage2_prior.config:PriorConfig",
        "gan": "gan_direct.config:GANConfig",
        "segment": "segmentation.config:SegmentationConfig",
    }[command]
    module, name = schema.split(":")
    config_class = getattr(importlib.import_module(module), name)
    cfg = build_config(config_class, base_config(args, package), overrides=training_overrides(args))
    assert (cfg.train.max_steps, cfg.train.log_every, cfg.train.eval_every) == (1, 7, 9)
    assert cfg.train.seed == 5


def test_encode_writes_any_file_name_and_all_or_nothing(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("L", (28, 28), 100).save(src / "a.png")
    try:
        Image.new("L", (28, 28), 50).save(os.fsdecode(os.fsencode(src) + b"/b\xff.png"))
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses file names that are not UTF-8")
    out = tmp_path / "o" / "codes.npy"
    argv = ["vqgan", "encode", "--checkpoint", TOKENIZER, "--input", str(src)]
    assert main([*argv, "--output", str(out)]) == 0
    capsys.readouterr()
    assert np.load(out).shape[0] == 2
    assert out.with_suffix(".files.txt").read_bytes().splitlines()[1].endswith(b"/b\xff.png")

    # a file that cannot be read: nothing is written
    (src / "c.png").write_bytes(b"not a png")
    fresh = tmp_path / "p" / "codes.npy"
    one_line_error(capsys, [*argv, "--output", fresh])
    assert not fresh.parent.exists() or not any(fresh.parent.iterdir())

    # a failure while writing the second file: neither file, no temporary left
    (src / "c.png").unlink()

    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", disk_full)
    line = one_line_error(capsys, [*argv, "--output", fresh])
    assert "No space left" in line
    assert not any(fresh.parent.iterdir())
