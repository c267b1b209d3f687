"""``save_pretrained`` / ``from_pretrained`` for our networks: a folder holding ``config.json``
(the constructor's keyword arguments) and ``model.safetensors`` (the weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from shared.checkpoint import CheckpointError, load_weights, save_weights

M = TypeVar("M", bound="Pretrained")
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class Pretrained(nn.Module):
    """Base of every network that is exported; subclasses set ``model_type`` and keep their
    constructor kwargs in ``self.config`` (a JSON-serialisable dict)."""

    model_type = "model"
    config: dict[str, Any]

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": self.model_type, "config": self.config}
        save_weights(self.state_dict(), folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def from_pretrained(cls: type[M], folder: str | Path) -> M:
        folder = Path(folder)
        if folder.is_file():
            folder = folder.parent
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise CheckpointError(f"{folder} has no {CONFIG_FILE}; not an exported model folder")
        meta = json.loads(config_path.read_text())
        if meta.get("model_type") != cls.model_type:
            raise CheckpointError(
                f"{folder} holds a '{meta.get('model_type')}' model, not a '{cls.model_type}'"
            )
        model = cls(**meta["config"])
        load_state(model, load_weights(folder / WEIGHTS_FILE), str(folder))
        return model.eval()


def load_state(model: nn.Module, state: dict, source: str) -> None:
    """Load a state dict strictly; a mismatch is a one-line :class:`CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise CheckpointError(f"{source} does not fit the model: " + ", ".join(parts))
    model.load_state_dict(state)
