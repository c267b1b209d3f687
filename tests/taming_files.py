"""Files in taming-transformers' formats for the compatibility tests: Lightning checkpoints
(pickled with a stand-in ``pytorch_lightning`` callback class) and YAML configs."""

import sys
import types
from pathlib import Path

import torch
import yaml

LIGHTNING_MODULES = (
    "pytorch_lightning",
    "pytorch_lightning.callbacks",
    "pytorch_lightning.callbacks.model_checkpoint",
)


def fake_lightning() -> dict[str, types.ModuleType]:
    """``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``, importable by pickle."""
    mods = {name: types.ModuleType(name) for name in LIGHTNING_MODULES}
    cls = type("ModelCheckpoint", (), {"__module__": LIGHTNING_MODULES[-1]})
    mods[LIGHTNING_MODULES[-1]].ModelCheckpoint = cls
    mods[LIGHTNING_MODULES[0]].callbacks = mods[LIGHTNING_MODULES[1]]
    mods[LIGHTNING_MODULES[1]].model_checkpoint = mods[LIGHTNING_MODULES[2]]
    return mods


def write_lightning_ckpt(
    path: Path,
    state: dict[str, torch.Tensor],
    optimizer_states: list[dict],
    callback_state: dict,
    epoch: int = 3,
    global_step: int = 1234,
) -> Path:
    """A Lightning 1.0-style ``last.ckpt`` holding ``state`` as its ``state_dict``, with the
    training state Lightning keeps beside it (the callback pickled as a class object)."""
    mods = fake_lightning()
    sys.modules.update(mods)
    try:
        callback = mods[LIGHTNING_MODULES[-1]].ModelCheckpoint
        checkpoint = {
            "epoch": epoch,
            "global_step": global_step,
            "pytorch-lightning_version": "1.0.8",
            "callbacks": {callback: callback_state},
            "optimizer_states": optimizer_states,
            "lr_schedulers": [],
            "state_dict": state,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, path)
    finally:
        for name in mods:
            sys.modules.pop(name, None)
    return path


def write_yaml(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path
