"""Finding and loading a prior from whatever a user points at: an exported model folder, a run
folder (its exported model, else its latest checkpoint), or a taming-transformers
``Net2NetTransformer`` checkpoint with its config."""

from __future__ import annotations

from pathlib import Path

from shared.checkpoint import TORCH_SUFFIXES, CheckpointError
from shared.config import build_config, read_preset
from shared.data import load_class_names
from shared.engine import checkpoint_weights
from shared.exported import find_exported, load_exported, locate
from shared.pretrained import CONFIG_FILE, build_checked, load_state, read_json
from shared.run import run_checkpoint
from stage1_vqgan import VQModel, load_tokenizer
from stage2_prior.config import PriorConfig
from stage2_prior.networks import BY_MODEL_TYPE, network_class
from stage2_prior.prior import COND_TOKENIZER_DIR, SPEC_FILE, TOKENIZER_DIR, Prior
from stage2_prior.taming import load_taming_prior


def load_prior(path: str | Path, config: str | Path | None = None) -> Prior:
    """A :class:`Prior` in eval mode. ``config`` is the YAML of a taming checkpoint.
    Errors are one-line :class:`CheckpointError`/:class:`ConfigError`."""
    path = locate(path)
    if path.is_file() and path.suffix.lower() in TORCH_SUFFIXES:
        return load_taming_prior(path, config).eval()
    exported = find_exported(path)
    if exported is not None:
        return _load_exported(exported)
    found = run_checkpoint(path)
    if found is not None and (found[0] / SPEC_FILE).is_file():
        folder, step_dir = found
        cfg = build_config(PriorConfig, read_preset(str(folder / "config.yaml"), "stage2_prior"))
        net_class = network_class(cfg.prior)
        spec = read_json(folder / SPEC_FILE)
        net = build_checked(lambda: net_class(**spec), str(folder / SPEC_FILE))
        weights = checkpoint_weights(step_dir)  # every prior task's first model: the prior
        load_state(net, weights, str(step_dir))
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
    """The prior exported in ``folder``: its network, with its ``tokenizer/`` (and
    ``cond_tokenizer/``) beside it."""
    net = load_exported(folder, BY_MODEL_TYPE.values(), "a prior")
    if not (folder / TOKENIZER_DIR / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {TOKENIZER_DIR}/ folder with the prior's tokenizer")
    tokenizer = VQModel.from_pretrained(folder / TOKENIZER_DIR)
    cond = None
    if (folder / COND_TOKENIZER_DIR).is_dir():
        cond = VQModel.from_pretrained(folder / COND_TOKENIZER_DIR)
    names = load_class_names(folder, net.spec.num_classes)
    return Prior(net, tokenizer, cond, class_names=names).eval()
