"""Finding and loading a tokenizer from whatever a user points at: an exported model folder, a run
folder (its exported model, else its latest checkpoint), or a taming-transformers checkpoint file
with its config."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.checkpoint import CheckpointError, load_weights
from shared.config import build_config, read_preset
from shared.engine import checkpoint_weights
from shared.exported import find_exported, load_exported, locate
from shared.pretrained import CONFIG_FILE, load_state
from shared.run import run_checkpoint
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.discriminator import DISCRIMINATOR_FOLDER, PatchDiscriminator
from stage1_vqgan.model import VQModel
from stage1_vqgan.taming import is_taming_file, load_taming_vqgan

OLD_DISC_WEIGHTS = "discriminator.safetensors"  # earlier exports (+ discriminator.json), still read
DISC_INDEX = 1  # the discriminator's place in a checkpoint: VQGANTask.models = {"ae", "disc"}


def load_tokenizer(path: str | Path, config: str | Path | None = None) -> VQModel:
    """A tokenizer in eval mode from a model folder, a run folder, or a taming ``.ckpt`` (+ its
    ``config`` YAML). Errors are one-line :class:`CheckpointError`/:class:`ConfigError`."""
    return load_tokenizer_and_discriminator(path, config)[0]


def load_tokenizer_and_discriminator(
    path: str | Path, config: str | Path | None = None
) -> tuple[VQModel, dict[str, torch.Tensor] | None]:
    """Like :func:`load_tokenizer`, plus the discriminator weights when the source has them."""
    path = locate(path)
    if path.is_file() and is_taming_file(path):
        return load_taming_vqgan(path, config)
    exported = find_exported(path)
    if exported is not None:
        return load_exported(exported, [VQModel], "a tokenizer"), _discriminator_state(exported)
    found = run_checkpoint(path)
    if found is not None:
        run, step_dir = found
        cfg = build_config(VQGANConfig, read_preset(str(run / "config.yaml"), "stage1_vqgan"))
        model = VQModel.from_config(cfg.model)
        load_state(model, checkpoint_weights(step_dir), str(step_dir))
        return model.eval(), checkpoint_weights(step_dir, DISC_INDEX, missing_ok=True)
    raise CheckpointError(
        f"{path} is neither a model folder (config.json), a run folder with a checkpoint, "
        "nor a taming checkpoint (.ckpt with --config)"
    )


def _discriminator_state(folder: Path) -> dict[str, torch.Tensor] | None:
    """The discriminator weights exported with the tokenizer in ``folder``: its
    ``discriminator/`` model folder, or the older ``discriminator.safetensors``; None without."""
    if (folder / DISCRIMINATOR_FOLDER / CONFIG_FILE).is_file():
        return PatchDiscriminator.from_pretrained(folder / DISCRIMINATOR_FOLDER).state_dict()
    old = folder / OLD_DISC_WEIGHTS
    return load_weights(old) if old.is_file() else None
