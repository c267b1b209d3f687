"""The preset listing (``twostage info``), help texts without reStructuredText, the strict data
scan failing before training, the output-folder rule of the sample commands, and the
``vqgan reconstruct`` naming rule."""

import argparse
import contextlib
import importlib
import importlib.resources
import io
import re

import numpy as np
import pytest
from PIL import Image

from shared.options import plain_text
from shared.run import OWNER_FILE
from twostage import info
from twostage.cli import COMMANDS, build_parser
from twostage.cli import main as twostage

ROW = re.compile(r"^(\S+)\s+(vqgan|prior|gan|segment)\s+([\d.]+)([Mk]?)\s+(.+?)\s+(yes|no)\s+(.+)$")


@pytest.fixture(scope="module")
def listing():
    """``twostage info`` run once (about 10 s): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = twostage(["info"])
    return code, out.getvalue(), err.getvalue()


def rows(text: str) -> dict[str, tuple]:
    found = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            name, command, value, unit, size, cpu, purpose = m.groups()
            params = float(value) * {"M": 1e6, "k": 1e3, "": 1}[unit]
            found[name] = (command, params, size, cpu == "yes", purpose)
    return found


# --- the preset listing ------------------------------------------------------------------------


def test_info_lists_every_preset_with_params_cpu_flag_and_purpose(listing):
    code, out, err = listing
    assert code == 0 and err == ""
    table = rows(out)
    presets = info.all_presets()
    assert set(table) == set(presets)  # every preset, once, and nothing else
    commands = {"stage1_vqgan": "vqgan", "stage2_prior": "prior", "gan_direct": "gan"}
    for name, (command, params, size, cpu, purpose) in table.items():
        assert command == commands.get(presets[name], "segment")
        assert len(purpose) > 10
        # the CPU flag follows the rule the listing states
        px = re.match(r"(\d+) px", size)
        small = px is None or int(px.group(1)) <= info.CPU_MAX_RESOLUTION
        assert cpu == (params <= info.CPU_MAX_PARAMS * 1.005 and small), name
    assert info.CPU_RULE in out
    # counts of real networks: vqgan-tiny's tokenizer 1,045,059 + discriminator 167,841
    assert table["vqgan-tiny"][1] == pytest.approx(1_212_900, rel=0.005)
    assert table["gpt-taming"][1] == pytest.approx(304.67e6, rel=0.005)
    assert table["vqgan-tiny"][3] and table["gpt-fmnist"][3] and table["unet-tiny"][3]
    assert not table["vqgan-f16-1024"][3] and not table["gpt-base"][3] and not table["unet"][3]
    assert "twostage COMMAND train --config PRESET" in out


def test_every_shipped_preset_states_its_purpose():
    for name, package in info.all_presets().items():
        text = (importlib.resources.files(package) / "configs" / f"{name}.yaml").read_text()
        assert text.startswith("# purpose: "), f"{package}/configs/{name}.yaml"


def test_info_list_flag_and_single_preset_json(capsys, monkeypatch):
    fake = [
        {"preset": "p", "command": "gan", "params": 10, "size": "32 px", "cpu": True,
         "purpose": "a test row"},
    ]  # fmt: skip
    monkeypatch.setattr(info, "preset_table", lambda: fake)
    assert twostage(["info", "--list"]) == 0
    out = capsys.readouterr().out
    assert rows(out)["p"] == ("gan", 10.0, "32 px", True, "a test row")
    assert twostage(["info", "gpt-tiny"]) == 0
    assert capsys.readouterr().out.startswith('{"prior": {"params": ')
    assert twostage(["info", "gpt-tiny", "--list"]) == 2
    assert "not both" in capsys.readouterr().err


def test_train_help_points_at_the_listing(capsys):
    for command in ("vqgan", "prior", "gan", "segment"):
        with pytest.raises(SystemExit):
            twostage([command, "--help"])
        assert "twostage info lists them" in capsys.readouterr().out, command


# --- help texts ----------------------------------------------------------------------------------

RST = re.compile(r"`|:(class|func|meth|mod|attr|data|exc|ref|obj):")


def all_parsers():
    """(name, parser) of the top-level command, every command and every sub-command."""
    found = [("twostage", build_parser())]
    for name, (module, _) in COMMANDS.items():
        found.append((name, importlib.import_module(module).build_parser(f"twostage {name}")))
    for name, parser in list(found[1:]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return found


def test_help_texts_have_no_rst_markup():
    parsers = all_parsers()
    names = {n for n, _ in parsers}
    assert {"vqgan benchmark", "prior sample", "gan sample", "segment predict", "info"} <= names
    for name, parser in parsers:
        text = parser.format_help()
        assert not RST.search(text), (name, RST.search(text))


def test_plain_text_strips_rst():
    text = "``twostage gan``: see :class:`~shared.options.ArgumentParser` and :func:`f` (`x`)"
    assert plain_text(text) == "twostage gan: see ArgumentParser and f (x)"


# --- data.strict fails at the scan ---------------------------------------------------------------


def truncated_png(path, size=64):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header opens, the pixels do not decode


@pytest.mark.parametrize(
    ("command", "preset", "task"),
    [
        ("vqgan", "vqgan-tiny", "stage1_vqgan.train.VQGANTask"),
        ("gan", "adatgan-tiny", "gan_direct.task.GANTask"),
    ],
)
def test_strict_scan_fails_before_any_network(tmp_path, capsys, monkeypatch, command, preset, task):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"ok_{i}.png")
    truncated_png(folder / "broken.png")
    module, cls = task.rsplit(".", 1)

    def no_network(*args, **kwargs):
        raise AssertionError("a network was built before the data scan failed")

    monkeypatch.setattr(getattr(importlib.import_module(module), cls), "__init__", no_network)
    run = tmp_path / "run"
    argv = [command, "train", "--config", preset, "--data", str(folder), "--output", str(run)]
    argv += ["data.strict=true", "train.max_steps=1", "train.progress=false"]
    argv += ["loss.perceptual_backbone=random"] if command == "vqgan" else []
    assert twostage(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.png" in err and "data.strict" in err
    assert not run.exists() or not any(run.rglob("*"))  # no run folder content


# --- output folders of the sample commands -------------------------------------------------------


def prior_sample(out, *extra):
    return twostage(
        ["prior", "sample", "--checkpoint", "fmnist-gpt", "--class", "0", "--num", "1"]
        + ["--device", "cpu", "--output", str(out), *extra]
    )


def test_sample_into_a_folder_of_unrelated_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert prior_sample(out) == 2  # refused, at once
    err = capsys.readouterr().err.strip()
    assert "notes.txt" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert prior_sample(out, "--overwrite") == 0  # written beside them
    names = sorted(p.name for p in out.iterdir())
    assert names == [OWNER_FILE, "indices.npy", "notes.txt", "sample_0000.png"]
    assert (out / "notes.txt").read_text() == "keep me"
    (out / "notes.txt").unlink()  # now it holds only what twostage wrote
    capsys.readouterr()
    assert prior_sample(out) == 2  # its own earlier outputs: replaced only with --overwrite
    assert "sample_0000.png already exists; pass --overwrite" in capsys.readouterr().err
    assert prior_sample(out, "--overwrite") == 0
    assert prior_sample(out, "--num", "2", "--seed", "1") == 2  # indices.npy is there
    assert prior_sample(tmp_path / "new") == 0


def test_overwrite_never_replaces_a_file_twostage_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sample_0000.png").write_bytes(b"my drawing")
    assert prior_sample(out, "--overwrite") == 2
    assert "did not write it" in capsys.readouterr().err
    assert (out / "sample_0000.png").read_bytes() == b"my drawing"
    assert not (out / "indices.npy").exists()


# --- reconstruct output names ---------------------------------------------------------------------


def reconstruct(src, out, *extra):
    return twostage(
        ["vqgan", "reconstruct", "--checkpoint", "fmnist-vqgan", "--device", "cpu"]
        + ["--input", str(src), "--output", str(out), *extra]
    )


def save(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)


def test_reconstruct_names_png_and_jpeg_inputs_alike(tmp_path, capsys):
    src = tmp_path / "in"
    save(src / "cat_0.png", 40)
    save(src / "cat_1.jpg", 120)
    save(src / "sub" / "dog.JPEG", 200)
    out = tmp_path / "out"
    assert reconstruct(src, out) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["cat_0.png", "cat_1.png", "sub/dog.png"]
    assert reconstruct(src / "cat_1.jpg", tmp_path / "one") == 0  # a single file: its name
    assert [p.name for p in (tmp_path / "one").glob("*.png")] == ["cat_1.png"]
    save(src / "cat_1.png", 90)  # cat_1.jpg and cat_1.png would both be cat_1.png
    capsys.readouterr()
    assert reconstruct(src, tmp_path / "clash") == 2
    err = capsys.readouterr().err.strip()
    assert "cat_1.jpg" in err and "cat_1.png" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "clash").exists()
