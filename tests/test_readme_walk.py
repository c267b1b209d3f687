"""The README's own-images walk, as written: every command of its marked block runs (on a small
generated folder of photo crops, with trainings cut to 2 steps) and leaves what it promises."""

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from PIL import Image

from twostage.cli import main as twostage

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- walk: own-images -->"
SHORT = ["train.max_steps=2", "train.eval_every=1", "train.checkpoint_every=2"]
SHORT += ["train.sample_every=2"]
PRIOR_ONLY = ["codes.max_images=16", "codes.cache_dir=cache"]  # keep ~/.cache/twostage clean


def walk_commands() -> list[list[str]]:
    """The commands of the README block after MARKER: continuations joined, comments dropped."""
    text = README.read_text()
    block = text[text.index(MARKER) :].split("```bash\n", 1)[1].split("```", 1)[0]
    block = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_readme_walk_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = walk_commands()
    assert [c[0] for c in commands] == ["python"] + ["twostage"] * (len(commands) - 1)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        if command[0] == "python":  # the photo folder, smaller
            script = README.parent / command[1]
            monkeypatch.setattr(sys, "argv", [str(script), *command[2:], "--per-class", "6"])
            runpy.run_path(str(script), run_name="__main__")
            continue
        args = command[1:]
        if args[1:2] == ["train"]:
            args = [*args, *SHORT, *(PRIOR_ONLY if args[0] == "prior" else [])]
        assert twostage(args) == 0, " ".join(command)
    out = capsys.readouterr().out
    assert "vqgan-cpu" in out and "gpt-cpu" in out and "classes: 0=brick" in out
    samples = sorted((tmp_path / "samples" / "brick").glob("*.png"))
    assert len(samples) == 8 and Image.open(samples[0]).size == (32, 32)
    assert len(list((tmp_path / "recon").rglob("*.png"))) == 6


@pytest.mark.parametrize("preset", ["vqgan-cpu", "gpt-cpu"])
def test_the_walk_presets_suit_a_cpu(preset, capsys):
    from twostage.info import main as info

    info(["--list"])
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(preset))
    assert " yes " in line
