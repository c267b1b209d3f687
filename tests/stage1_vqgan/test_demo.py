import json

import numpy as np
import pytest
from PIL import Image

from shared.cli import main as twostage


def test_demo_writes_its_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        twostage(
            [
                "demo",
                "--output",
                str(out),
                "--max-steps",
                "20",
                "train.eval_every=10",
                "train.sample_every=10",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["tokens_per_image"] == 64
    assert 0 < summary["codebook_usage"] <= 1
    for name in ("reconstructions.png", "losses.png", "summary.md"):
        image_or_text = out / name
        assert image_or_text.is_file() and image_or_text.stat().st_size > 0
    grid = np.asarray(Image.open(out / "reconstructions.png"))
    assert grid.std() > 10  # not blank
    assert twostage(["demo", "--output", str(out), "--max-steps", "20"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_umbrella_cli_help_version_and_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        twostage(["--version"])
    assert e.value.code == 0 and "twostage" in capsys.readouterr().out
    assert (
        twostage(["vqgan", "train", "--config", "vqgan-huge", "--output", str(tmp_path / "r")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("twostage vqgan: error: unknown preset 'vqgan-huge'")
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()
    assert (
        twostage(
            [
                "vqgan",
                "train",
                "--config",
                "vqgan-tiny",
                "--data",
                str(tmp_path / "none"),
                "--output",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err and not (tmp_path / "r").exists()
