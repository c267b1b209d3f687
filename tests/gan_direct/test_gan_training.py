"""Training a tiny AdatGAN on Fashion-MNIST (32 px, gray) through ``twostage gan``: it moves
toward the data, logs and plots gradient norms, resumes, and its samples, attention maps and
interpolations come out of the CLI."""

import json
import shutil

import pytest
import torch
from PIL import Image

from gan_direct.cli import main, slerp, truncated_noise
from gan_direct.evaluate import EVAL_SEED, distance
from gan_direct.registry import build
from gan_direct.sample import generate
from shared.config import build_config, read_preset
from shared.data import build_dataset
from shared.run import read_metrics

STEPS = 150
EVAL_IMAGES = 256
QUIET = ["train.progress=false", "train.num_workers=0"]


def gan(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    rc = gan(
        "train", "--config", "adatgan-tiny", "--output", out, "--max-steps", STEPS,
        "--checkpoint-every", STEPS // 2, f"train.eval_every={STEPS}",
        f"train.eval_images={EVAL_IMAGES}", *QUIET,
    )  # fmt: skip
    assert rc == 0
    return out


def test_training_moves_the_generator_toward_the_data(run):
    from gan_direct.config import GANConfig

    cfg = build_config(GANConfig, read_preset(str(run / "config.yaml"), "gan_direct"))
    val = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    real = torch.stack([val[i]["image"] for i in range(EVAL_IMAGES)])
    torch.manual_seed(cfg.train.seed)
    untrained = build("generator", cfg.generator).eval()  # as at step 0
    name, start = distance(real, generate(untrained, EVAL_IMAGES, EVAL_SEED, "cpu"))
    end = [r[f"val/{name}"] for r in read_metrics(run) if f"val/{name}" in r][-1]
    print(f"{name}: step 0 {start:.1f} -> step {STEPS} {end:.1f}")
    assert end < 0.85 * start


def test_gradient_norms_are_logged_and_plotted(run):
    records = [r for r in read_metrics(run) if "grad_norm_g" in r]
    assert records and all(r["grad_norm_g"] > 0 and r["grad_norm_d"] > 0 for r in records)
    assert {"d_loss", "g_loss", "r1"} <= set(records[-1])
    assert Image.open(run / "grad_norms.png").size[0] > 100
    assert (run / "model" / "generator" / "model.safetensors").is_file()
    meta = json.loads((run / "model" / "discriminator" / "config.json").read_text())
    assert meta["config"]["channels"] == 1


def test_resume_continues_from_the_last_checkpoint(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert gan("train", "--output", copy, "--resume", "--max-steps", STEPS + 10, *QUIET) == 0
    assert f"(step {STEPS})" in capsys.readouterr().out
    steps = [r["step"] for r in read_metrics(copy) if "g_loss" in r]
    assert steps[-1] == STEPS + 10 and steps == sorted(steps)
    assert (copy / "checkpoints" / f"step_{STEPS + 10:06d}").is_dir()


def test_sample_writes_grids_attention_maps_and_interpolations(run, tmp_path, capsys):
    out = tmp_path / "samples"
    args = ["sample", "--checkpoint", run, "--num", 6, "--truncation", 1.5, "--attention-maps"]
    args += ["--interpolate", 5, "--output", out]
    assert gan(*args) == 0
    assert len(list(out.glob("sample_*.png"))) == 6 and (out / "grid.png").is_file()
    heads = 2  # adatgan-tiny
    for grid in (8, 16, 32):
        image = Image.open(out / f"attention_{grid}x{grid}.png")
        assert image.size == ((1 + heads) * 34 + 2, 6 * 34 + 2) and image.mode == "RGB"
    assert Image.open(out / "interpolation.png").size == (5 * 34 + 2, 6 * 34 + 2)
    capsys.readouterr()
    assert gan(*args) == 2  # never overwrites silently
    assert "--overwrite" in capsys.readouterr().err
    assert gan(*args, "--overwrite") == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--checkpoint", "{tmp}/nope", "--output", "{tmp}/o"], "not found"),
        (["sample", "--checkpoint", "{tmp}", "--output", "{tmp}/o"], "no exported generator"),
        (["sample", "--checkpoint", "{run}", "--num", "0", "--output", "{tmp}/o"], "--num"),
        (["sample", "--checkpoint", "{run}", "--interpolate", "1", "--output", "{tmp}/o"], "2"),
        (["train", "--config", "adatgan-tiny", "--output", "{run}"], "exists"),
        (["train", "--config", "adatgan-tiny", "--output", "{tmp}/r", "loss.nope=1"], "nope"),
        (["train", "--config", "adatgan-tiny", "--output", "{tmp}/r", "loss.diffaug=zoom"], "zoom"),
        (["train", "--config", "adatgan-tiny", "--output", "{tmp}/r", "--resolution", "64"], "64"),
    ],
)
def test_bad_input_is_a_one_line_error(run, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert gan(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("twostage gan: error:") and message in err and "\n" not in err


def test_truncation_resamples_beyond_the_threshold():
    z = truncated_noise(500, 16, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2


def test_slerp_ends_at_its_endpoints():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    path = slerp(a, b, torch.linspace(0, 1, 4))
    assert path.shape == (3, 4, 8)
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)
