"""Trust and safety battery: no file a run folder can hold runs code, --overwrite never loses a
user's file, configs are literal data, bad checkpoints and full disks are one-line errors."""

import errno
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from shared.checkpoint import CheckpointError
from shared.config import ConfigError, build_config, read_preset
from shared.gan_losses import LeCam
from shared.limits import LimitError
from shared.pretrained import CONFIG_FILE
from shared.run import OWNER_FILE, RunError, latest_checkpoint, prepare_run_dir
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel
from tests.shared.test_engine import Regression, fit
from twostage.cli import main as twostage


class Payload:
    """Unpickling this creates ``path``: the proof that a file ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class WithLeCam(Regression):
    def __init__(self):
        super().__init__()
        self.state = {"lecam": LeCam()}


def fit_lecam(run_dir, steps, resume=False):
    """The engine test's regression run, with a LeCam state object beside the EMA."""
    return fit(run_dir, steps, resume=resume, make_task=WithLeCam)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    run = tmp_path_factory.mktemp("trust") / "run"
    fit_lecam(run, 5)
    return run


def test_the_payload_runs_when_unpickled_freely(tmp_path):
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()  # so the battery below can fail


def test_checkpoints_hold_no_pickled_state(checkpointed):
    _, folder = latest_checkpoint(checkpointed)
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.startswith("custom_checkpoint")], names
    extra = load_file(folder / "extra_state.safetensors")
    assert any(k.startswith("ema.") for k in extra) and "lecam.ema_real" in extra


HOSTILE_NAMES = [
    "model.safetensors",
    "optimizer.bin",
    "random_states_0.pkl",
    "extra_state.safetensors",
    "custom_checkpoint_0.pkl",
    "custom_checkpoint_1.pkl",
    "scheduler.bin",
    "scaler.pt",
    "model.bin",
    "sampler.bin",
    "dl_state_dict.bin",
    "trainer_state.json",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("how", ["pickle", "torch.save", "legacy"])
def test_a_planted_pickle_never_runs_on_resume(checkpointed, tmp_path, name, how):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(checkpointed, run)
    _, folder = latest_checkpoint(run)
    proof = tmp_path / "payload_ran"
    target = folder / name
    if how == "legacy":  # a checkpoint from before extra_state: accelerate's numbered pickles
        (folder / "extra_state.safetensors").unlink()
        target.write_bytes(pickle.dumps(Payload(proof)))
    elif how == "pickle":
        target.write_bytes(pickle.dumps(Payload(proof)))
    else:
        torch.save({"state": Payload(proof)}, target)
    try:
        fit_lecam(run, 6, resume=True)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(folder) in str(e)
    assert not proof.exists(), f"a pickle planted as {name} ran its code"


def test_a_corrupt_random_state_stops_the_resume(checkpointed, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(checkpointed, run)
    _, folder = latest_checkpoint(run)
    (folder / "random_states_0.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="cannot resume from"):
        fit_lecam(run, 6, resume=True)


def test_resume_restores_ema_and_task_state_exactly(tmp_path):
    fit_lecam(tmp_path / "a", 10)
    fit_lecam(tmp_path / "b", 5)
    fit_lecam(tmp_path / "b", 10, resume=True)
    a = load_file(tmp_path / "a/checkpoints/step_000010/extra_state.safetensors")
    b = load_file(tmp_path / "b/checkpoints/step_000010/extra_state.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    from accelerate import Accelerator

    def full_disk(self, output_dir, **kwargs):
        (__import__("pathlib").Path(output_dir) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Accelerator, "save_state", full_disk)
    with pytest.raises(RunError, match="No space left on device") as e:
        fit_lecam(tmp_path / "run", 5)
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp_step_*"))


# --- --overwrite keeps what is not the project's ---------------------------------------------


@pytest.mark.parametrize("planted", ["demo.json", "config.yaml", "metrics.jsonl", "checkpoints"])
@pytest.mark.parametrize("command", ["vqgan", "demo"])
def test_overwrite_refuses_a_folder_the_project_did_not_make(tmp_path, capsys, planted, command):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / planted).mkdir() if planted == "checkpoints" else (mine / planted).write_text("{}")
    argv = ["--output", str(mine), "--overwrite"]
    if command == "vqgan":
        argv = ["vqgan", "train", "--config", "vqgan-tiny", *argv, "train.max_steps=1"]
    else:
        argv = ["demo", "--tiny", *argv]
    assert twostage(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to overwrite" in err and len(err.splitlines()) == 1
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_run_folder_holding_a_users_file(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    (run / "config.yaml").write_text("x: 1")
    (run / "my_notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="did not write.*my_notes.txt"):
        prepare_run_dir(run, overwrite=True)
    assert (run / "my_notes.txt").read_text() == "keep me"
    (run / "my_notes.txt").unlink()
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.yaml").exists() and (run / OWNER_FILE).is_file()


def test_overwrite_refuses_a_forged_owner_file_of_another_kind(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / OWNER_FILE).write_text(json.dumps({"kind": "demo", "entries": ["x"]}))
    (run / "x").write_text("1")
    with pytest.raises(RunError, match="not a twostage run folder"):
        prepare_run_dir(run, overwrite=True)


# --- configs are literal data, bounded, and checked --------------------------------------------


def test_config_values_never_expand_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("TWOSTAGE_SECRET", "hunter2")
    path = tmp_path / "shared.yaml"
    path.write_text("data:\n  source: ${oc.env:TWOSTAGE_SECRET}\n")
    cfg = build_config(
        VQGANConfig, read_preset(str(path), "stage1_vqgan"), overrides=["init_from=${oc.env:HOME}"]
    )
    assert cfg.data.source == "${oc.env:TWOSTAGE_SECRET}" and cfg.init_from == "${oc.env:HOME}"
    for text in ("${missing}", "${oc.decode:x}", "${a.b}", "${x:${x}}"):
        assert build_config(VQGANConfig, overrides=[f"data.source={text}"]).data.source == text


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lines.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases"):  # refused while parsing, never expanded
        read_preset(str(path), "stage1_vqgan")


def test_a_huge_config_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 2_000_000 + "\n")
    with pytest.raises(LimitError, match="TWOSTAGE_MAX_CONFIG_BYTES"):
        read_preset(str(path), "stage1_vqgan")


BAD_TRAIN_VALUES = [
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.lr=nan", "train.lr"),
    ("train.lr=-1e-4", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("model.n_embed=0", "model.n_embed"),
    ("train.adam_betas=[[0.5,0.9]]", "train.adam_betas[0]"),
    ("train.adam_betas=[0.5,1.5]", "train.adam_betas"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.max_steps=-5", "train.max_steps"),
    ("model.ch_mult=[1,0]", "model.ch_mult"),
    ("model=3", "model"),
    ("model.dropout=2", "model.dropout"),
]


@pytest.mark.parametrize("override, key", BAD_TRAIN_VALUES)
def test_bad_train_values_are_one_line_errors(tmp_path, capsys, override, key):
    argv = ["vqgan", "train", "--config", "vqgan-tiny", "--output", str(tmp_path / "r"), override]
    assert twostage(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err
    assert not (tmp_path / "r").exists()


def test_an_oversized_model_fails_before_allocating(tmp_path, capsys):
    argv = ["vqgan", "train", "--config", "vqgan-tiny", "--output", str(tmp_path / "r")]
    assert twostage([*argv, "model.n_embed=100000000", "model.embed_dim=256"]) == 2
    err = capsys.readouterr().err.strip()
    assert "TWOSTAGE_MAX_PARAMETERS" in err and len(err.splitlines()) == 1


# --- exported model folders --------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path):
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"))
    return VQModel.from_config(cfg.model).save_pretrained(tmp_path / "tok")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: "[1, 2]", "JSON object"),
        (lambda m: json.dumps({**m, "config": [1]}), "mapping of arguments"),
        (lambda m: json.dumps({**m, "config": {**m["config"], "ch": "wide"}}), "config.json"),
        (lambda m: json.dumps({**m, "config": {**m["config"], "colour": 1}}), "colour"),
        (
            lambda m: json.dumps({**m, "config": {**m["config"], "n_embed": 10**9}}),
            "TWOSTAGE_MAX_PARAMETERS",
        ),
    ],
)
def test_a_tampered_exported_config_is_a_one_line_error(exported, capsys, edit, words, tmp_path):
    path = exported / CONFIG_FILE
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises((CheckpointError, LimitError), match=words) as e:
        VQModel.from_pretrained(exported)
    assert "\n" not in str(e.value)
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    argv = ["vqgan", "reconstruct", "--checkpoint", str(exported), "--input", str(image)]
    assert twostage([*argv, "--output", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [b"\x00" * 16, b"\xff" * 64, pickle.dumps(Payload("/tmp/x"))])
def test_a_hostile_weights_file_is_a_one_line_error(exported, bad):
    (exported / "model.safetensors").write_bytes(bad)
    with pytest.raises(CheckpointError) as e:
        VQModel.from_pretrained(exported)
    assert "\n" not in str(e.value)


def test_the_meta_probe_builds_every_network_the_same_way():
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"))
    with torch.device("meta"):
        probe = VQModel.from_config(cfg.model)
    real = VQModel.from_config(cfg.model)
    assert [(k, v.shape) for k, v in probe.state_dict().items()] == [
        (k, v.shape) for k, v in real.state_dict().items()
    ]
    assert all(not p.is_meta for p in real.parameters()) and isinstance(real, nn.Module)


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing_in_the_way(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["vqgan", "train", "--config", "vqgan-tiny", "--data", "builtin:shapes"]
    argv += [
        "--resolution",
        "16",
        "--output",
        str(run),
        "train.batch_size=2",
        "model.ch_mult=[1,2]",
    ]
    argv += ["train.max_steps=2", "train.num_workers=0", "model.attn_resolutions=[]"]
    assert twostage([*argv, "train.lr=1e30", "loss.disc_start=0", "train.checkpoint_every=5"]) == 2
    assert "non-finite" in capsys.readouterr().err and not run.exists()
    assert twostage(argv) == 0 and latest_checkpoint(run)[0] == 2  # the retry needs no flag
