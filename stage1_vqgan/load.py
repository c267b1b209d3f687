"""Finding and loading a tokenizer from whatever a user points at: an exported model folder, a run
folder (its exported model, else its latest checkpoint), or a taming-transformers checkpoint file
with its config."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.checkpoint import CheckpointError, load_weights
from shared.config import build_config, read_preset
from shared.pretrained import CONFIG_FILE, load_state
from shared.release import resolve_checkpoint
from shared.run import latest_checkpoint
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.discriminator import DISCRIMINATOR_FOLDER, PatchDiscriminator
from stage1_vqgan.model import VQModel
from stage1_vqgan.taming import is_taming_file, load_taming_vqgan

OLD_DISC_WEIGHTS = "discriminator.safetensors"  # earlier exports (+ discriminator.json), still read


def load_tokenizer(path: str | Path, config: str | Path | None = None) -> VQModel:
    """A tokenizer in eval mode from a model folder, a run folder, or a taming ``.ckpt`` (+ its
    ``config`` YAML). Errors are one-line :class:`CheckpointError`/:class:`ConfigError`."""
    return load_tokenizer_and_discriminator(path, config)[0]


def load_tokenizer_and_discriminator(
    path: str | Path, config: str | Path | None = None
) -> tuple[VQModel, dict[str, torch.Tensor] | None]:
    """Like :func:`load_tokenizer`, plus the discriminator weights when the source has them."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file() and is_taming_file(path):
        return load_taming_vqgan(path, config)
    folder = path.parent if path.is_file() else path
    if (folder / CONFIG_FILE).is_file():
        return VQModel.from_pretrained(folder), _discriminator_state(folder)
    if (folder / "model" / CONFIG_FILE).is_file():
        return VQModel.from_pretrained(folder / "model"), _discriminator_state(folder / "model")
    found = latest_checkpoint(folder)
    if (folder / "config.yaml").is_file() and found is not None:
        cfg = build_config(VQGANConfig, read_preset(str(folder / "config.yaml"), "stage1_vqgan"))
        model = VQModel.from_config(cfg.model)
        step_dir = found[1]
        load_state(model, load_weights(step_dir / "model.safetensors"), str(step_dir))
        disc = step_dir / "model_1.safetensors"
        return model.eval(), load_weights(disc) if disc.is_file() else None
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
