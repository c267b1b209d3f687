import collections
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from shared.checkpoint import (
    CheckpointError,
    Placeholder,
    load_torch_checkpoint,
    load_weights,
    save_weights,
    split_prefix,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _state_dict():
    torch.manual_seed(0)
    return {
        "encoder.conv.weight": torch.randn(4, 3, 3, 3),
        "encoder.conv.bias": torch.randn(4),
        "loss.discriminator.main.0.weight": torch.randn(2, 4, 1, 1),
        "quantize.embedding.weight": torch.randn(8, 4),
    }


def _assert_same(actual, expected):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def test_safetensors_round_trip(tmp_path):
    sd = _state_dict()
    path = tmp_path / "sub" / "w.safetensors"
    save_weights(sd, path)
    _assert_same(load_weights(path), sd)
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]


def test_save_handles_shared_and_strided_tensors(tmp_path):
    base = torch.randn(6, 4)
    sd = {"a": base, "tied": base, "view": base[::2], "t": base.t()}
    path = tmp_path / "w.safetensors"
    save_weights(sd, path)
    _assert_same(load_weights(path), sd)


def test_torch_state_dict_and_lightning_dict(tmp_path):
    sd = _state_dict()
    torch.save(sd, tmp_path / "plain.pth")
    _assert_same(load_weights(tmp_path / "plain.pth"), sd)
    torch.save({"state_dict": sd, "global_step": 3}, tmp_path / "wrapped.ckpt")
    _assert_same(load_weights(tmp_path / "wrapped.ckpt"), sd)


def test_split_prefix():
    sd = _state_dict()
    disc = split_prefix(sd, "loss.discriminator")
    assert list(disc) == ["main.0.weight"]
    assert split_prefix(sd, "loss.discriminator.").keys() == disc.keys()
    assert split_prefix(sd, "decoder") == {}


def _fake_modules(monkeypatch, classes_by_module):
    """Temporarily register fake modules (and parent packages) that hold ``classes``."""
    for name, classes in classes_by_module.items():
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            monkeypatch.setitem(sys.modules, prefix, types.ModuleType(prefix))
        for cls in classes:
            cls.__module__, cls.__qualname__ = name, cls.__name__
            setattr(sys.modules[name], cls.__name__, cls)


def _taming_checkpoint(path, sd, legacy=False):
    """Write ``sd`` in the layout of a taming-transformers / Lightning 1.0 ``last.ckpt``."""

    class ModelCheckpoint:
        pass

    class DictConfig:
        def __init__(self, content):
            self._content = content
            self._flags = collections.defaultdict(bool, readonly=False)

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake_modules(
            monkeypatch,
            {
                "pytorch_lightning.callbacks.model_checkpoint": [ModelCheckpoint],
                "omegaconf.dictconfig": [DictConfig],
            },
        )
        checkpoint = {
            "epoch": np.int64(3),
            "global_step": 10,
            "pytorch-lightning_version": "1.0.8",
            "state_dict": collections.OrderedDict(sd),
            "callbacks": {
                ModelCheckpoint: {"best_model_score": torch.tensor(1.0), "best_model_path": "x"}
            },
            "optimizer_states": [optimizer.state_dict()],
            "lr_schedulers": [],
            "hyper_parameters": DictConfig({"lr": 4.5e-6, "embed_dim": 256}),
            "mean": np.float32(0.5),
        }
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_taming_lightning_checkpoint_loads_without_lightning(tmp_path, legacy):
    sd = _state_dict()
    path = tmp_path / "last.ckpt"
    _taming_checkpoint(path, sd, legacy=legacy)
    assert "pytorch_lightning.callbacks.model_checkpoint" not in sys.modules

    checkpoint = load_torch_checkpoint(path)
    _assert_same(checkpoint["state_dict"], sd)
    assert checkpoint["global_step"] == 10 and checkpoint["epoch"] == 3
    ((callback, state),) = checkpoint["callbacks"].items()
    assert issubclass(callback, Placeholder)
    assert callback.pickled_name == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    assert state["best_model_score"].item() == 1.0
    hparams = checkpoint["hyper_parameters"]
    assert isinstance(hparams, Placeholder) and hparams.state["_content"]["embed_dim"] == 256
    assert checkpoint["optimizer_states"][0]["state"][0]["exp_avg"].shape == (2, 3)
    _assert_same(load_weights(path), sd)


class _Exploit:
    def __init__(self, marker, runner):
        self.marker, self.runner = marker, runner

    def __reduce__(self):
        if self.runner == "os.system":
            return os.system, (f"touch {self.marker}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("runner", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("container", ["pickle", "torch-zip", "torch-legacy"])
def test_malicious_pickle_is_refused(tmp_path, runner, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"state_dict": _state_dict(), "evil": _Exploit(marker, runner)}
    if container == "pickle":
        payload["state_dict"] = {"w": [1.0, 2.0]}
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=container == "torch-zip")

    with pytest.raises(CheckpointError, match="refuses to load") as info:
        load_torch_checkpoint(path)
    assert runner.split(".")[-1] in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError):
        load_weights(path)
    assert not marker.exists()


def test_build_on_non_data_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD with a slot-state that would patch it.
    data = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00N}q\x01X\x07\x00\x00\x00__doc__q\x02"
        b"X\x01\x00\x00\x00xq\x03s\x86q\x04b."
    )
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="refuses to load"):
        load_torch_checkpoint(path)
    assert torch._utils._rebuild_tensor_v2.__doc__ != "x"


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage", b"\x80\x02}q\x00"]
)
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_torch_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": _state_dict()}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError):
        load_weights(path)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_torch_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported"):
        load_weights(tmp_path / "w.npz")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage!garbage!")
    with pytest.raises(CheckpointError):
        load_weights(tmp_path / "bad.safetensors")


def test_non_flat_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "nested.pt"
    torch.save({"model": _state_dict(), "step": 1}, path)
    with pytest.raises(CheckpointError, match="not a flat tensor state dict"):
        load_weights(path)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_torch_checkpoint(path)
