"""taming-transformers ``Net2NetTransformer`` checkpoints as a :class:`Prior`, read without taming
or Lightning installed.

A run is ``logs/RUN/checkpoints/last.ckpt`` (a Lightning pickle, read through the restricted
unpickler of :mod:`shared.checkpoint`; only its ``state_dict`` is used) plus
``logs/RUN/configs/*-project.yaml``. The YAML's ``model.params`` gives:

- ``transformer_config``: taming's minGPT (``taming.modules.transformer.mingpt.GPT``). Its weights
  ``transformer.*`` map exactly onto :class:`GPTPrior` (GPT-2 layout): ``tok_emb`` -> ``wte``,
  ``pos_emb`` (1,T,C) -> ``wpe`` (T,C), ``blocks.i.ln1/ln2`` -> ``h.i.ln_1/ln_2``, the separate
  ``attn.query/key/value`` Linears -> one ``attn.c_attn`` Conv1D (q,k,v side by side, transposed),
  ``attn.proj``/``mlp.0``/``mlp.2`` -> ``attn.c_proj``/``mlp.c_fc``/``mlp.c_proj`` (transposed),
  ``ln_f``, ``head``. The ``attn.mask`` buffers are checked to be causal and dropped.
- ``first_stage_config``: the image VQGAN, weights ``first_stage_model.*`` -> the tokenizer.
- ``cond_stage_config``, ``unconditional``, ``sos_token``, ``downsample_cond_size``: the condition,
  as taming's ``Net2NetTransformer.init_cond_stage_from_ckpt`` reads them:

  * ``"__is_first_stage__"``: spatial, the tokenizer also encodes the condition;
  * ``"__is_unconditional__"`` or ``unconditional: True`` (or ``taming.modules.util.SOSProvider``):
    no condition, the start token ``sos_token`` (default 0) precedes the image tokens;
  * ``taming.models.vqgan.VQModel`` / ``VQSegmentationModel``: spatial, weights
    ``cond_stage_model.*`` -> the condition tokenizer (kind "segmentation" for
    ``VQSegmentationModel`` or ``cond_stage_key: segmentation``, whose maps are one-hot);
  * ``taming.modules.util.Labelator`` (``n_classes``; the class-conditional ImageNet model): its
    ``encode`` returns the label itself as the one condition token, so class ids are token ids
    [0, n_classes) shared with the image codes; no null class;
  * ``taming.modules.misc.coord.CoordStage`` (``n_embed``, ``down_factor``): coordinate tokens
    round(n_embed * area-mean over f x f pixels of the map (y*W + x)/(H*W)), which is
    :func:`stage2_prior.gpt.coord_tokens` with ``factor`` = down_factor.

Condition ids share the embedding table with image ids (``cond_offset`` 0) and the head scores the
whole vocabulary (``n_codes`` = ``vocab_size``), as in taming. The sequence rule is taming's:
``cat(c, z)[:, :-1]`` in, ``logits[:, len(c)-1:]`` out. The window (token grid) is the first
stage's ``resolution / 2**(len(ch_mult)-1)`` when it fits ``block_size``, else the square grid
``block_size`` implies. Non-identity permuters, ``n_unmasked`` != 0 and other condition stages are
refused with one-line errors.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.checkpoint import TORCH_SUFFIXES, CheckpointError, load_torch_checkpoint, split_prefix
from shared.config import ConfigError
from shared.pretrained import build_checked, load_state
from stage1_vqgan import (
    SUPPORTED_TARGETS,
    ModelConfig,
    VQModel,
    read_taming_model,
    taming_config_path,
    taming_state_dicts,
    taming_vqgan_config,
)
from stage2_prior.gpt import GPTPrior
from stage2_prior.prior import Prior

__all__ = [
    "TamingPriorSetup",
    "is_taming_prior_file",
    "load_taming_prior",
    "mingpt_to_gpt2",
    "taming_prior_setup",
]

NET2NET = "taming.models.cond_transformer.Net2NetTransformer"
MINGPT = "taming.modules.transformer.mingpt.GPT"
IDENTITY_PERMUTER = "taming.modules.transformer.permuter.Identity"
LABELATOR = "taming.modules.util.Labelator"
SOS_PROVIDER = "taming.modules.util.SOSProvider"
COORD_STAGE = "taming.modules.misc.coord.CoordStage"
IS_FIRST_STAGE, IS_UNCONDITIONAL = "__is_first_stage__", "__is_unconditional__"
COND_TARGETS = (*SUPPORTED_TARGETS, LABELATOR, SOS_PROVIDER, COORD_STAGE)
# taming.modules.transformer.mingpt.GPT's keyword defaults
GPT_DEFAULTS = dict(
    n_layer=12, n_head=8, n_embd=256, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, n_unmasked=0
)
STATE_PREFIXES = ("transformer.", "first_stage_model.", "cond_stage_model.")


@dataclass
class TamingPriorSetup:
    """What a ``Net2NetTransformer`` YAML describes, in our terms."""

    spec: dict  # GPTPrior / GPTSpec keyword arguments
    first_stage: ModelConfig
    cond_stage: ModelConfig | None = None  # a VQGAN condition tokenizer of its own
    cond_is_first_stage: bool = False  # "__is_first_stage__": the tokenizer encodes the condition
    cond_resize: int | None = None  # downsample_cond_size
    coord_down_factor: int | None = None  # CoordStage.down_factor


# -- the YAML ----------------------------------------------------------------------------------


def _target(entry, config: Path, what: str) -> str:
    if not isinstance(entry, dict) or "target" not in entry:
        raise ConfigError(f"{config}: {what} must be a mapping with a 'target'")
    return str(entry["target"])


def taming_prior_setup(
    config: str | Path, window: tuple[int, int] | None = None
) -> TamingPriorSetup:
    """Read a ``Net2NetTransformer`` YAML; ``window`` overrides the token grid it implies."""
    config = Path(config)
    model = read_taming_model(config)
    target = model.get("target")
    if target != NET2NET:
        hint = (
            " (a first-stage VQGAN: load it as a tokenizer)" if target in SUPPORTED_TARGETS else ""
        )
        raise ConfigError(f"{config}: model target '{target}' is not {NET2NET}{hint}")
    p = model.get("params") or {}

    tcfg = p.get("transformer_config")
    if _target(tcfg, config, "transformer_config") != MINGPT:
        raise ConfigError(
            f"{config}: transformer '{tcfg['target']}' is not supported; supported: {MINGPT}"
        )
    t = {**GPT_DEFAULTS, **(tcfg.get("params") or {})}
    if "vocab_size" not in t or "block_size" not in t:
        raise ConfigError(f"{config}: transformer_config.params needs vocab_size and block_size")
    if int(t["n_unmasked"]) != 0:
        raise ConfigError(
            f"{config}: n_unmasked={t['n_unmasked']} is not supported (only a fully causal GPT)"
        )
    vocab, block = int(t["vocab_size"]), int(t["block_size"])

    permuter = p.get("permuter_config")
    if permuter is not None and _target(permuter, config, "permuter_config") != IDENTITY_PERMUTER:
        raise ConfigError(
            f"{config}: permuter '{permuter['target']}' is not supported (only "
            f"{IDENTITY_PERMUTER}: raster order)"
        )

    first_entry = p.get("first_stage_config") or {}
    first, _ = taming_vqgan_config(first_entry, f"{config} (first_stage_config)")
    setup = TamingPriorSetup(spec={}, first_stage=first)
    dcs = int(p.get("downsample_cond_size", -1))
    setup.cond_resize = dcs if dcs > -1 else None
    sos = int(p.get("sos_token", 0))
    kind, extra = _condition(p, config, setup)
    if kind == "none":
        sos = extra.pop("sos_token", sos)
    if kind in ("none", "class"):
        setup.cond_resize = None  # taming resizes only condition maps

    f = 2 ** (len(first.ch_mult) - 1)
    window = _window(kind, first, f, block, window, config)
    _check_condition_grid(kind, setup, f, window, config)

    ids = {
        "none": sos + 1,
        "class": extra.get("num_classes", 0),
        "spatial": extra.get("n_cond_codes", 0),
        "coord": extra.get("n_cond_codes", 0),
    }[kind]
    if first.n_embed > vocab or ids > vocab:
        raise ConfigError(
            f"{config}: vocab_size {vocab} is smaller than the first stage's n_embed "
            f"{first.n_embed} or the condition's {ids} ids"
        )
    drop = max(float(t[k]) for k in ("embd_pdrop", "resid_pdrop", "attn_pdrop"))
    setup.spec = dict(
        n_codes=vocab,
        window=list(window),
        condition=kind,
        class_dropout=0.0,
        n_layer=int(t["n_layer"]),
        n_head=int(t["n_head"]),
        n_embd=int(t["n_embd"]),
        dropout=drop,
        cond_offset=0,
        sos_token=sos,
        vocab_size=vocab,
        block_size=block,
        **extra,
    )
    return setup


def _condition(p: dict, config: Path, setup: TamingPriorSetup) -> tuple[str, dict]:
    """(condition kind, extra GPTSpec kwargs), in the order taming's Net2NetTransformer checks."""
    cs = p.get("cond_stage_config")
    if cs == IS_FIRST_STAGE:
        setup.cond_is_first_stage = True
        return "spatial", {"n_cond_codes": setup.first_stage.n_embed}
    if cs == IS_UNCONDITIONAL or p.get("unconditional", False):
        return "none", {}
    target = _target(cs, config, "cond_stage_config")
    params = cs.get("params") or {}
    if target in SUPPORTED_TARGETS:
        cond, _ = taming_vqgan_config(cs, f"{config} (cond_stage_config)")
        if p.get("cond_stage_key") == "segmentation" or target.endswith("VQSegmentationModel"):
            cond = dataclasses.replace(cond, kind="segmentation")
        setup.cond_stage = cond
        return "spatial", {"n_cond_codes": cond.n_embed}
    if target == LABELATOR:
        if "n_classes" not in params:
            raise ConfigError(f"{config}: the Labelator cond stage needs params.n_classes")
        return "class", {"num_classes": int(params["n_classes"])}
    if target == SOS_PROVIDER:
        return "none", {"sos_token": int(params.get("sos_token", 0))}
    if target == COORD_STAGE:
        if "n_embed" not in params or "down_factor" not in params:
            raise ConfigError(f"{config}: the CoordStage cond stage needs n_embed and down_factor")
        setup.coord_down_factor = int(params["down_factor"])
        return "coord", {
            "n_cond_codes": int(params["n_embed"]),
            "coord_factor": setup.coord_down_factor,
        }
    raise ConfigError(
        f"{config}: cond stage '{target}' is not supported; supported: "
        f"{', '.join((IS_FIRST_STAGE, IS_UNCONDITIONAL, *COND_TARGETS))}"
    )


def _window(
    kind: str, first: ModelConfig, f: int, block: int, window, config: Path
) -> tuple[int, int]:
    """The token grid: given, else the first stage's resolution / f when the sequence fits
    ``block_size``, else the square grid that ``block_size`` holds."""
    spatial = kind in ("spatial", "coord")

    def length(h: int, w: int) -> int:  # the transformer's input: cat(c, z)[:, :-1]
        return (h * w if spatial else 1) + h * w - 1

    if window is not None:
        h, w = (int(v) for v in window)
        if length(h, w) > block:
            raise ConfigError(f"{config}: a {h}x{w} window does not fit block_size {block}")
        return h, w
    side = first.resolution // f
    if side > 0 and length(side, side) <= block:
        return side, side
    n = (block + 1) // 2 if spatial else block
    side = math.isqrt(n)
    if side * side != n:
        raise ConfigError(
            f"{config}: block_size {block} holds neither the {first.resolution}px / f{f} grid "
            "nor a square one; pass the window"
        )
    return side, side


def _check_condition_grid(
    kind: str, setup: TamingPriorSetup, f: int, window: tuple[int, int], config: Path
) -> None:
    """Spatial conditions must give one token per image token."""
    if kind == "coord":
        if setup.cond_resize is not None:
            raise ConfigError(f"{config}: downsample_cond_size with a CoordStage is not supported")
        if setup.coord_down_factor != f:
            raise ConfigError(
                f"{config}: CoordStage down_factor {setup.coord_down_factor} differs from the "
                f"first stage's f{f}"
            )
    if kind != "spatial":
        return
    cond = setup.first_stage if setup.cond_is_first_stage else setup.cond_stage
    cf = 2 ** (len(cond.ch_mult) - 1)
    if setup.cond_resize is not None:
        side = setup.cond_resize // cf
        if (side, side) != tuple(window):
            raise ConfigError(
                f"{config}: downsample_cond_size {setup.cond_resize} / f{cf} gives a {side}x{side} "
                f"condition grid, not the {window[0]}x{window[1]} image grid"
            )
    elif cf != f:
        raise ConfigError(
            f"{config}: the cond stage's f{cf} differs from the first stage's f{f}: its grid is "
            "not the image grid"
        )


# -- the weights -------------------------------------------------------------------------------

_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
_RENAMED = {
    "ln1.weight": "ln_1.weight",
    "ln1.bias": "ln_1.bias",
    "ln2.weight": "ln_2.weight",
    "ln2.bias": "ln_2.bias",
}
_TRANSPOSED = {
    "attn.proj.weight": "attn.c_proj.weight",
    "mlp.0.weight": "mlp.c_fc.weight",
    "mlp.2.weight": "mlp.c_proj.weight",
}
_BIASES = {
    "attn.proj.bias": "attn.c_proj.bias",
    "mlp.0.bias": "mlp.c_fc.bias",
    "mlp.2.bias": "mlp.c_proj.bias",
}
_QKV = ("query", "key", "value")


def mingpt_to_gpt2(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict:
    """taming minGPT weights (without the ``transformer.`` prefix) -> a :class:`GPTPrior` state."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "tok_emb.weight":
            out["transformer.wte.weight"] = value
        elif key == "pos_emb":
            out["transformer.wpe.weight"] = value.reshape(value.shape[-2], value.shape[-1])
        elif key in ("ln_f.weight", "ln_f.bias"):
            out[f"transformer.{key}"] = value
        elif key == "head.weight":
            out["head.weight"] = value
        elif m := _BLOCK_KEY.fullmatch(key):
            i, rest = int(m.group(1)), m.group(2)
            h = f"transformer.h.{i}."
            if rest in _RENAMED:
                out[h + _RENAMED[rest]] = value
            elif rest in _TRANSPOSED:
                out[h + _TRANSPOSED[rest]] = value.t()
            elif rest in _BIASES:
                out[h + _BIASES[rest]] = value
            elif rest == "attn.mask":
                if not torch.equal(value, torch.tril(torch.ones_like(value))):
                    raise CheckpointError(
                        f"{source}: transformer.{key} is not causal (n_unmasked != 0 is not "
                        "supported)"
                    )
            elif (parts := rest.split(".")) and len(parts) == 3 and parts[1] in _QKV:
                qkv.setdefault(i, {})[f"{parts[1]}.{parts[2]}"] = value
            else:
                raise CheckpointError(f"{source}: unknown minGPT weight transformer.{key}")
        else:
            raise CheckpointError(f"{source}: unknown minGPT weight transformer.{key}")
    for i, found in sorted(qkv.items()):
        names = [f"{n}.{p}" for p in ("weight", "bias") for n in _QKV]
        missing = [n for n in names if n not in found]
        if missing:
            raise CheckpointError(f"{source}: transformer.blocks.{i}.attn.{missing[0]} is missing")
        h = f"transformer.h.{i}.attn.c_attn."
        out[h + "weight"] = torch.cat([found[f"{n}.weight"].t() for n in _QKV], dim=1)
        out[h + "bias"] = torch.cat([found[f"{n}.bias"] for n in _QKV])
    return out


def _tokenizer(cfg: ModelConfig, state: dict, prefix: str, source: str) -> VQModel:
    weights, _ = taming_state_dicts(split_prefix(state, prefix))
    if not weights:
        raise CheckpointError(f"{source} holds no {prefix}.* weights")
    model = VQModel.from_config(cfg)
    load_state(model, weights, f"{source} ({prefix})")
    return model.eval()


# -- entry points ------------------------------------------------------------------------------


def is_taming_prior_file(path: str | Path, config: str | Path | None = None) -> bool:
    """Whether ``path`` is a PyTorch checkpoint whose YAML (given, or in taming's log layout)
    describes a ``Net2NetTransformer``."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in TORCH_SUFFIXES:
        return False
    try:
        return read_taming_model(taming_config_path(path, config)).get("target") == NET2NET
    except ConfigError:
        return False


def load_taming_prior(
    ckpt: str | Path, config: str | Path | None = None, window: tuple[int, int] | None = None
) -> Prior:
    """A :class:`Prior` in eval mode from a taming ``Net2NetTransformer`` checkpoint and its YAML
    (``config``, else ``configs/*-project.yaml`` of its log folder). ``window`` overrides the token
    grid read from the YAML. Errors are one-line :class:`ConfigError`/:class:`CheckpointError`."""
    ckpt = Path(ckpt)
    config = taming_config_path(ckpt, config)
    setup = taming_prior_setup(config, window)
    raw = load_torch_checkpoint(ckpt)
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{ckpt} holds no state_dict")
    stray = [k for k in state if not str(k).startswith(STATE_PREFIXES)]
    own_cond = setup.cond_stage is not None or setup.cond_is_first_stage
    if not own_cond:
        stray += [k for k in state if str(k).startswith("cond_stage_model.")]
    if stray:
        raise CheckpointError(f"{ckpt}: weights its config has no module for (e.g. {stray[0]})")

    gpt_state = split_prefix(state, "transformer")
    if not gpt_state:
        raise CheckpointError(f"{ckpt} holds no transformer.* weights: not a Net2NetTransformer")
    net = build_checked(lambda: GPTPrior(**setup.spec), f"{config} (transformer)", ConfigError)
    load_state(net, mingpt_to_gpt2(gpt_state, str(ckpt)), f"{ckpt} (transformer)")

    tokenizer = _tokenizer(setup.first_stage, state, "first_stage_model", str(ckpt))
    cond = None
    if setup.cond_is_first_stage:
        cond = tokenizer
    elif setup.cond_stage is not None:
        cond = _tokenizer(setup.cond_stage, state, "cond_stage_model", str(ckpt))
    return Prior(net.eval(), tokenizer, cond, setup.cond_resize).eval()
