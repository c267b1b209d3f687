"""Finding and loading a prior from whatever a user points at: an exported model folder, a run
folder (its exported model, else its latest checkpoint), or a taming-transformers
``Net2NetTransformer`` checkpoint with its config."""

from __future__ import annotations

from pathlib import Path

from shared.checkpoint import TORCH_SUFFIXES, CheckpointError, load_weights
from shared.config import build_config, read_preset
from shared.data import load_class_names
from shared.pretrained import CONFIG_FILE, build_checked, load_state, read_json
from shared.release import resolve_checkpoint
from shared.run import latest_checkpoint
from stage1_vqgan import VQModel, load_tokenizer
from stage2_prior.config import PriorConfig
from stage2_prior.networks import BY_MODEL_TYPE, network_class
from stage2_prior.prior import COND_TOKENIZER_DIR, SPEC_FILE, TOKENIZER_DIR, Prior
from stage2_prior.taming import load_taming_prior


def load_prior(path: str | Path, config: str | Path | None = None) -> Prior:
    """A :class:`Prior` in eval mode. ``config`` is the YAML of a taming checkpoint.
    Errors are one-line :class:`CheckpointError`/:class:`ConfigError`."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file() and path.suffix.lower() in TORCH_SUFFIXES:
        return load_taming_prior(path, config).eval()
    folder = path.parent if path.is_file() else path
    for candidate in (folder, folder / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return _load_exported(candidate)
    found = latest_checkpoint(folder)
    if (folder / "config.yaml").is_file() and (folder / SPEC_FILE).is_file() and found:
        cfg = build_config(PriorConfig, read_preset(str(folder / "config.yaml"), "stage2_prior"))
        net_class = network_class(cfg.prior)
        spec = read_json(folder / SPEC_FILE)
        net = build_checked(lambda: net_class(**spec), str(folder / SPEC_FILE))
        load_state(net, load_weights(found[1] / "model.safetensors"), str(found[1]))
        tokenizer = load_tokenizer(cfg.tokenizer, cfg.tokenizer_config)
        cond = None
        if cfg.cond_tokenizer:
            cond = load_tokenizer(cfg.cond_tokenizer, cfg.cond_tokenizer_config)
        names = load_class_names(folder, net.spec.num_classes)
        return Prior(net.eval(), tokenizer, cond, class_names=names).eval()
    raise CheckpointError(
        f"{path} is neither a prior model folder (config.json), a prior run folder with a "
        "checkpoint, nor a taming transformer checkpoint (.ckpt with --config)"
    )


def _load_exported(folder: Path) -> Prior:
    model_type = read_json(folder / CONFIG_FILE).get("model_type")
    net_class = BY_MODEL_TYPE.get(model_type)
    if net_class is None:
        raise CheckpointError(
            f"{folder} holds a '{model_type}' model, not a prior ({', '.join(BY_MODEL_TYPE)})"
        )
    net = net_class.from_pretrained(folder)
    if not (folder / TOKENIZER_DIR / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {TOKENIZER_DIR}/ folder with the prior's tokenizer")
    tokenizer = VQModel.from_pretrained(folder / TOKENIZER_DIR)
    cond = None
    if (folder / COND_TOKENIZER_DIR).is_dir():
        cond = VQModel.from_pretrained(folder / COND_TOKENIZER_DIR)
    names = load_class_names(folder, net.spec.num_classes)
    return Prior(net, tokenizer, cond, class_names=names).eval()
