"""taming-transformers ``VQModel`` / ``VQSegmentationModel`` checkpoints, read without taming or
Lightning installed.

A checkpoint (``last.ckpt``) is a Lightning pickle; only its ``state_dict`` is used, read through
the restricted unpickler of :mod:`shared.checkpoint`. The architecture comes from the run's YAML
(``model.params.{ddconfig, n_embed, embed_dim, lossconfig}``). Our module names equal taming's, so
encoder/decoder/quantizer weights load unchanged; ``loss.discriminator.*`` becomes the
discriminator state; the LPIPS copy under ``loss.perceptual_loss.*`` and the ``colorize`` buffer
are dropped. A ``VQSegmentationModel`` (one-hot label maps, BCE loss, no discriminator) loads as a
tokenizer of kind "segmentation"."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import yaml

from shared.checkpoint import TORCH_SUFFIXES, CheckpointError, load_torch_checkpoint, split_prefix
from shared.config import ConfigError
from shared.errors import first_line
from shared.pretrained import load_state
from stage1_vqgan.config import ModelConfig
from stage1_vqgan.model import VQModel

SUPPORTED_TARGETS = ("taming.models.vqgan.VQModel", "taming.models.vqgan.VQSegmentationModel")


def is_taming_file(path: Path) -> bool:
    return path.suffix.lower() in TORCH_SUFFIXES


def find_taming_config(ckpt: Path) -> Path | None:
    """taming's log layout keeps ``logs/RUN/configs/*-project.yaml`` beside ``checkpoints/``."""
    found = sorted((ckpt.parent.parent / "configs").glob("*project.yaml"))
    return found[-1] if found else None


def taming_config_path(ckpt: str | Path, config: str | Path | None = None) -> Path:
    """The given YAML, else the one in taming's log layout; a one-line error when neither."""
    found = Path(config) if config else find_taming_config(Path(ckpt))
    if found is None:
        raise ConfigError(f"{ckpt} is a taming checkpoint: pass its YAML config with --config")
    return found


def taming_model_config(config: str | Path) -> tuple[ModelConfig, dict | None]:
    """Our :class:`ModelConfig` and the discriminator kwargs (None for an ActNorm one, or for a
    segmentation model, which has none) from a taming YAML config."""
    return taming_vqgan_config(read_taming_model(config), config)


def read_taming_model(config: str | Path) -> dict:
    """The model entry ``{target, params}`` of a taming YAML config (its ``model``, or the whole
    file when it has none); a one-line :class:`ConfigError` when it cannot be read."""
    try:
        raw = yaml.safe_load(Path(config).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read taming config {config}: {first_line(e)}") from None
    model = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(model, dict):
        raise ConfigError(f"{config}: expected a 'model' entry with target and params")
    return model


def taming_vqgan_config(model: dict, config: str | Path) -> tuple[ModelConfig, dict | None]:
    """Like :func:`taming_model_config`, from a taming model entry ``{target, params}`` (the
    ``model`` of a VQGAN YAML, or a transformer's ``first_stage_config``/``cond_stage_config``);
    ``config`` names it in errors."""
    target = model.get("target", SUPPORTED_TARGETS[0])
    if target not in SUPPORTED_TARGETS:
        raise ConfigError(
            f"{config}: model target '{target}' is not supported; "
            f"supported: {', '.join(SUPPORTED_TARGETS)}"
        )
    params = model.get("params", {})
    dd = params.get("ddconfig")
    if not dd or "n_embed" not in params or "embed_dim" not in params:
        raise ConfigError(f"{config}: expected model.params.ddconfig, n_embed and embed_dim")
    if dd.get("double_z", False):
        raise ConfigError(f"{config}: ddconfig.double_z=True is a KL autoencoder, not a VQGAN")
    if params.get("remap"):
        raise ConfigError(f"{config}: index remapping (params.remap) is not supported")
    segmentation = target.endswith("VQSegmentationModel")
    cfg = ModelConfig(
        kind="segmentation" if segmentation else "image",
        in_channels=dd["in_channels"],
        out_channels=dd["out_ch"],
        ch=dd["ch"],
        ch_mult=list(dd["ch_mult"]),
        num_res_blocks=dd["num_res_blocks"],
        attn_resolutions=list(dd["attn_resolutions"]),
        dropout=dd.get("dropout", 0.0),
        z_channels=dd["z_channels"],
        resolution=dd["resolution"],
        n_embed=params["n_embed"],
        embed_dim=params["embed_dim"],
        beta=0.25,
        legacy_beta=True,
    )
    loss = (params.get("lossconfig") or {}).get("params") or {}
    if segmentation or loss.get("use_actnorm"):
        return cfg, None  # ActNorm: a discriminator layout PatchDiscriminator does not have
    disc = {
        "in_channels": loss.get("disc_in_channels", 3),
        "ndf": loss.get("disc_ndf", 64),
        "n_layers": loss.get("disc_num_layers", 3),
    }
    return cfg, disc


def taming_state_dicts(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a taming ``state_dict`` into (tokenizer state, discriminator state)."""
    disc = split_prefix(state, "loss.discriminator")
    model = {k: v for k, v in state.items() if not k.startswith("loss.") and k != "colorize"}
    return model, disc


def load_taming_vqgan(
    ckpt: str | Path, config: str | Path | None = None
) -> tuple[VQModel, dict[str, torch.Tensor] | None]:
    """(tokenizer in eval mode, discriminator state or None) from a taming checkpoint."""
    ckpt = Path(ckpt)
    model_cfg, disc_kwargs = taming_model_config(taming_config_path(ckpt, config))
    raw = load_torch_checkpoint(ckpt)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{ckpt} holds no state_dict")
    model_state, disc_state = taming_state_dicts(state)
    model = VQModel.from_config(model_cfg)
    load_state(model, model_state, str(ckpt))
    if disc_kwargs is None and disc_state:
        warnings.warn(
            f"{ckpt}: its ActNorm discriminator is not loaded (BatchNorm only)", stacklevel=2
        )
        disc_state = None
    return model.eval(), disc_state or None
