"""Training a prior on cached code grids: extract (or reuse) the codes, build the network the
config names, and run its task (:mod:`stage2_prior.gpt_task`, :mod:`stage2_prior.adatgan_task`)
in the shared engine."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import set_seed

from shared.config import ConfigError, read_preset
from shared.data import build_dataset, data_summary, format_data_summary, save_class_names
from shared.engine import make_accelerator, train_run
from shared.release import resolve_checkpoint
from shared.run import RunError, check_run_dir
from stage1_vqgan import VQModel, load_tokenizer
from stage2_prior.adatgan_task import AdatPriorTask
from stage2_prior.codes import CodeWindows, extract_codes, tokenizer_identity
from stage2_prior.config import PriorConfig
from stage2_prior.gpt_task import GPTPriorTask
from stage2_prior.networks import build_network
from stage2_prior.prior import SPEC_FILE, Prior

TASKS = {"gpt": GPTPriorTask, "adatgan": AdatPriorTask}  # by PriorConfig.prior
TOKENIZERS_FILE = "tokenizers.json"  # in the run folder: what the codes were made with


def resolve_condition(cfg: PriorConfig, num_classes: int, has_cond_tokenizer: bool) -> str:
    kind = cfg.condition.kind
    if kind == "auto":
        kind = "spatial" if has_cond_tokenizer else "class" if num_classes > 0 else "none"
    if kind == "spatial" and not has_cond_tokenizer:
        raise ConfigError("condition.kind=spatial needs --cond-tokenizer")
    if has_cond_tokenizer and kind != "spatial":
        raise ConfigError(f"--cond-tokenizer was given but condition.kind is '{kind}'")
    if kind == "class" and num_classes < 1:
        raise ConfigError("condition.kind=class: the data has no class labels")
    return kind


def build_prior(
    cfg: PriorConfig, tokenizer: VQModel, cond_tokenizer: VQModel | None, num_classes: int
) -> Prior:
    """A fresh prior whose window and vocabulary follow the tokenizers and the data."""
    f = tokenizer.downsample_factor
    res = cfg.data.resolution or tokenizer.config["resolution"]  # 0: the tokenizer's size
    if res % f:
        raise ConfigError(
            f"data.resolution ({res}) must be a multiple of the tokenizer's factor {f}"
        )
    grid = [res // f, res // f]
    window = list(cfg.model.window or grid)
    if len(window) != 2 or window[0] > grid[0] or window[1] > grid[1] or min(window) < 1:
        raise ConfigError(f"model.window {window} must be 2 sizes within the code grid {grid}")
    kind = resolve_condition(cfg, num_classes, cond_tokenizer is not None)
    fixed = dict(
        n_codes=tokenizer.n_embed,
        window=window,
        condition=kind,
        num_classes=num_classes if kind == "class" else 0,
    )
    if cfg.prior == "adatgan":
        if kind not in ("none", "class"):
            raise ConfigError(f"prior=adatgan takes condition.kind none or class, not '{kind}'")
        net = build_network(cfg, **fixed, embed_dim=tokenizer.config["embed_dim"])
        net.set_codebook(tokenizer.codebook)
        return Prior(net, tokenizer)
    if cond_tokenizer is not None and cond_tokenizer.downsample_factor != f:
        raise ConfigError(
            f"the condition tokenizer's factor ({cond_tokenizer.downsample_factor}) must equal "
            f"the image tokenizer's ({f}) so both code grids align"
        )
    n_cond = {
        "spatial": cond_tokenizer.n_embed if cond_tokenizer else 0,
        "coord": cfg.condition.coord_tokens,
    }.get(kind, 0)
    net = build_network(
        cfg,
        **fixed,
        n_cond_codes=n_cond,
        class_dropout=cfg.condition.class_dropout if kind == "class" else 0.0,
        coord_factor=f,
    )
    return Prior(net, tokenizer, cond_tokenizer)


def train(
    cfg: PriorConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Extract (or reuse) the codes, then train a prior into the run folder ``output``."""
    output = Path(output)
    if not cfg.tokenizer:
        raise ConfigError("a stage-1 tokenizer is required (--tokenizer RUN_OR_MODEL)")
    if cfg.prior == "gpt" and cfg.model.n_embd % cfg.model.n_head:
        raise ConfigError(f"model.n_embd ({cfg.model.n_embd}) must be divisible by model.n_head")
    check_run_dir(output, overwrite, resume)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    device = accelerator.device
    tokenizer = load_tokenizer(cfg.tokenizer, cfg.tokenizer_config).to(device)
    cfg = resolved_config(cfg, tokenizer, accelerator.print)  # what the run saves
    cond_tok = None
    if cfg.cond_tokenizer:
        cond_tok = load_tokenizer(cfg.cond_tokenizer, cfg.cond_tokenizer_config).to(device)
    if tokenizer.config["in_channels"] != cfg.data.channels:
        raise ConfigError(
            f"data.channels ({cfg.data.channels}) must equal the tokenizer's input channels "
            f"({tokenizer.config['in_channels']})"
        )
    identity = tokenizer_identity(tokenizer, cond_tok)
    record = {
        "tokenizer": {"path": cfg.tokenizer, "fingerprint": identity["tokenizer"]},
        "cond_tokenizer": (
            {"path": cfg.cond_tokenizer, "fingerprint": identity["cond_tokenizer"]}
            if cond_tok is not None
            else None
        ),
    }
    if resume:
        check_tokenizers(output, record)
    val_images = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    with warnings.catch_warnings():  # skipped files: said by the val scan and the summary
        warnings.simplefilter("ignore")
        train_images = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    data = data_summary(train_images, val_images)
    accelerator.print(format_data_summary(data))
    prior = build_prior(cfg, tokenizer, cond_tok, val_images.num_classes)
    if prior.condition == "class":
        prior.class_names = list(val_images.class_names)
    encode_maps = prior.encode_condition if cond_tok is not None else None
    sets = {
        split: extract_codes(
            tokenizer,
            cfg.data,
            split,
            encode_maps=encode_maps,
            cond_tokenizer=cond_tok,
            max_images=cfg.codes.max_images if split == "train" else cfg.codes.max_val_images,
            batch_size=cfg.codes.batch_size,
            cache_dir=cfg.codes.cache_dir,
            device=device,
            progress=accelerator.is_main_process and cfg.train.progress,
            identity=identity,
            state=PartialState(),  # each process encodes its share
        )
        for split in ("train", "val")
        if split == "train" or len(val_images)
    }
    spec = prior.net.spec
    coord = (spec.n_cond_codes, spec.coord_factor) if spec.condition == "coord" else (0, 1)
    train_data = CodeWindows(sets["train"][0], prior.window, True, cfg.train.seed, *coord)
    val_data = None
    if "val" in sets:
        val_data = CodeWindows(sets["val"][0], prior.window, False, cfg.train.seed, *coord)
    spec_json = json.dumps(dataclasses.asdict(spec), indent=2)
    accelerator.print(
        f"{cfg.prior} prior: condition {spec.condition}, window {prior.window}, "
        f"{prior.net.param_count() / 1e6:.2f}M parameters, {len(train_data)} training grids "
        f"(codes cached in {sets['train'][1]}); log(K) = {math.log(spec.n_codes):.3f} nats"
    )
    task = TASKS[cfg.prior](cfg, prior)
    run = train_run(
        task,
        cfg,
        output,
        train_data,
        val_data,
        accelerator,
        resume=resume,
        overwrite=overwrite,
        files={SPEC_FILE: spec_json, TOKENIZERS_FILE: json.dumps(record, indent=2) + "\n"},
        data=data,
    )
    if accelerator.is_main_process and (run / "model").is_dir():  # any prior's export
        save_class_names(run / "model", prior.class_names or [])
    return run


def resolved_config(cfg: PriorConfig, tokenizer: VQModel, say=print) -> PriorConfig:
    """``cfg`` with ``data.resolution`` 0 resolved to the tokenizer's training size (said with
    ``say``), as a new config; ``cfg`` itself is left as it is."""
    if cfg.data.resolution:
        return cfg
    size, origin = tokenizer_resolution(cfg.tokenizer, tokenizer)
    say(f"data.resolution: {size} px, {origin} (set --resolution to change)")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resolution=size))


def tokenizer_resolution(path: str, tokenizer: VQModel) -> tuple[int, str]:
    """The image size a tokenizer was trained at, and where that was read: the ``data.resolution``
    of its run's ``config.yaml`` (for a run folder or its ``model/``), else its nominal
    ``model.resolution``."""
    found = resolve_checkpoint(path)
    folder = found if found.is_dir() else found.parent
    for candidate in (folder, folder.parent):
        run_config = candidate / "config.yaml"
        if (candidate / "checkpoints").is_dir() and run_config.is_file():
            data = read_preset(str(run_config), "stage1_vqgan").get("data") or {}
            if isinstance(data.get("resolution"), int) and data["resolution"] > 0:
                return data["resolution"], f"the tokenizer's training size ({run_config})"
    return int(tokenizer.config["resolution"]), "the tokenizer's model.resolution"


def check_tokenizers(run_dir: Path, record: dict) -> None:
    """Refuse to resume ``run_dir`` when a tokenizer it was trained with has changed since
    (retrained in place, replaced): its codes would mean something else. Runs from before the
    record was kept resume as they are."""
    path = run_dir / TOKENIZERS_FILE
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text())
        if not isinstance(before, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise RunError(
            f"cannot read {path} ({e}); restore it, or train the prior again with --overwrite"
        ) from None
    for role, now in record.items():
        was = before.get(role) if isinstance(before.get(role), dict) else None
        old = was.get("fingerprint") if was else None
        new = now["fingerprint"] if now else None
        if old != new:
            name = role.replace("_", " ")
            where = (now or was or {}).get("path", "")
            raise RunError(
                f"cannot resume {run_dir}: its {name} {where} changed since the prior was "
                f"trained (weights {old or 'none'} -> {new or 'none'}); restore that {name}, "
                "or train the prior again with --overwrite"
            )
