"""The one loader of exported networks (shared/exported.py), and a run's latest checkpoint with
the engine's names of the weights in it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.checkpoint import CheckpointError, load_weights
from shared.config import TrainConfig
from shared.engine import checkpoint_weights, make_accelerator
from shared.exported import find_exported, load_exported, locate, named_export
from shared.pretrained import Pretrained
from shared.release import RELEASE_DIR
from shared.run import run_checkpoint


class TinyNet(Pretrained):
    model_type = "tiny-test"

    def __init__(self, width: int = 3):
        super().__init__()
        self.config = {"width": width}
        self.layer = nn.Linear(width, width)


class OtherNet(TinyNet):
    model_type = "other-test"


@pytest.fixture
def run(tmp_path):
    """A run-like folder whose ``model/tiny/`` holds an exported :class:`TinyNet`."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    TinyNet(width=4).save_pretrained(run / "model" / "tiny")
    return run


def test_an_export_is_found_from_the_run_its_model_folder_itself_or_a_file_in_it(run):
    export = run / "model" / "tiny"
    for given in (run, run / "model", export, export / "model.safetensors"):
        assert named_export(given, "tiny", "tiny net") == export
    net = load_exported(export, [OtherNet, TinyNet], "a tiny net")
    assert type(net) is TinyNet and net.config == {"width": 4} and not net.training
    saved = load_weights(export / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())
    assert find_exported(run) is None  # nothing exported at the top or in model/ itself


def test_a_wrong_model_type_or_a_missing_export_is_a_one_line_error(run, tmp_path):
    folder = run / "model" / "tiny"
    with pytest.raises(CheckpointError) as e:
        load_exported(folder, [OtherNet], "an other net")
    assert str(e.value) == f"{folder} holds a 'tiny-test' model, not an other net (other-test)"
    with pytest.raises(CheckpointError, match=r"no exported U-Net \(model/unet/config.json\); fin"):
        named_export(run, "unet", "U-Net")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        locate(tmp_path / "nope")
    assert locate("fmnist-vqgan") == RELEASE_DIR / "fmnist-vqgan"


def test_a_run_without_export_gives_its_latest_checkpoint_weights(run):
    first, second = nn.Linear(2, 3), nn.Linear(3, 1)
    accelerator = make_accelerator(TrainConfig(), run)
    accelerator.prepare(first, second)
    step_dir = run / "checkpoints" / "step_000001"
    accelerator.save_state(str(step_dir), safe_serialization=True)
    assert run_checkpoint(run) is None  # incomplete until the trainer's state is written
    (step_dir / "trainer_state.json").write_text('{"step": 1}')
    assert run_checkpoint(run) == run_checkpoint(run / "config.yaml") == (run, step_dir)
    for index, module in enumerate((first, second)):
        state = checkpoint_weights(step_dir, index)
        assert all(torch.equal(state[k], v.cpu()) for k, v in module.state_dict().items())
    assert checkpoint_weights(step_dir, 2, missing_ok=True) is None
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint_weights(step_dir, 2)
