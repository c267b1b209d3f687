"""The umbrella ``twostage`` command: --version, and one-line errors that leave nothing behind."""

import pytest

from twostage.cli import main as twostage


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


def test_no_command_prints_the_commands_and_fails(capsys):
    assert twostage([]) == 2
    err = capsys.readouterr().err
    assert "benchmark" in err and "vqgan" in err and "demo" in err
