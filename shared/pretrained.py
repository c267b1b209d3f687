"""``save_pretrained`` / ``from_pretrained`` for our networks: a folder holding ``config.json``
(the constructor's keyword arguments) and ``model.safetensors`` (the weights)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from shared.checkpoint import CheckpointError, load_weights, save_weights
from shared.errors import one_line
from shared.limits import check_limit

M = TypeVar("M", bound="Pretrained")
N = TypeVar("N", bound=nn.Module)
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
        meta = read_json(config_path)
        if meta.get("model_type") != cls.model_type:
            raise CheckpointError(
                f"{folder} holds a '{meta.get('model_type')}' model, not a '{cls.model_type}'"
            )
        config = meta.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{config_path}: 'config' must be a mapping of arguments")
        model = build_checked(lambda: cls(**config), str(config_path))
        load_state(model, load_weights(folder / WEIGHTS_FILE), str(folder))
        return model.eval()


def read_json(path: Path) -> dict:
    """A JSON object from ``path`` (size-limited); anything else is a :class:`CheckpointError`."""
    check_limit("config_bytes", path.stat().st_size, str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def build_checked(
    factory: Callable[[], N], what: str, error: type[ValueError] = CheckpointError
) -> N:
    """``factory()`` (a network), first built on the meta device (no memory) so that bad or
    oversized arguments fail before anything is allocated: wrong types are one-line ``error``s
    naming ``what``, too many parameters a :class:`LimitError`."""
    try:
        with torch.device("meta"):
            probe = factory()
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise error(f"{what}: {one_line(exc)}") from None
    except (NotImplementedError, RuntimeError):
        probe = None  # computes on its tensors while building: counted once built
    if probe is not None:
        count = sum(p.numel() for p in probe.parameters())
        check_limit("parameters", count, f"the network of {what}")
    try:
        model = factory()
    except (TypeError, ValueError, OverflowError) as exc:
        raise error(f"{what}: {one_line(exc)}") from None
    if probe is None:
        check_limit("parameters", sum(p.numel() for p in model.parameters()), what)
    return model


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
