"""Configuration: YAML presets shipped in a package + ``key=value`` dotted overrides, validated
against dataclass schemas. Every user mistake becomes a one-line :class:`ConfigError`."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration mistake a user can fix; the message is one line."""


def choice(default: str, *choices: str) -> Any:
    """A string field restricted to ``choices`` (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": (default, *choices)})


@dataclass
class DataConfig:
    # a folder, or builtin:shapes | fashion-mnist | photos | swissroll | gaussians (2-D points)
    source: str = "builtin:shapes"
    resolution: int = 64
    crop: str = choice("random", "center")
    flip: bool = True
    channels: int = 3
    masks: str | None = None  # folder of segmentation masks parallel to `source`
    val_fraction: float = 0.05
    strict: bool = False  # unreadable files: error instead of skip-with-warning


@dataclass
class TrainConfig:
    batch_size: int = 8
    max_steps: int = 1000
    lr: float = 1e-4
    grad_accum: int = 1
    grad_clip: float = 0.0  # max global grad norm, 0 = off
    ema_decay: float = 0.0  # EMA of the trained weights, 0 = off
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 250
    eval_every: int = 250
    eval_images: int = 64
    log_every: int = 10
    seed: int = 0
    precision: str = choice("no", "fp16", "bf16")
    num_workers: int = 2
    channels_last: bool = False  # memory format of conv models and image batches
    progress: bool = True


def preset_names(package: str) -> list[str]:
    """Names of the YAML presets shipped in ``package/configs``."""
    folder = resources.files(package) / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(name_or_path: str, package: str) -> dict:
    """The raw mapping of a preset name (from ``package/configs``) or a YAML file path."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {name_or_path}")
        text = path.read_text()
    else:
        res = resources.files(package) / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            names = ", ".join(preset_names(package))
            raise ConfigError(f"unknown preset '{name_or_path}'; choose one of: {names}")
        text = res.read_text()
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{name_or_path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping of keys to values")
    return data


def build_config(schema: type[T], *layers: dict, overrides: list[str] = ()) -> T:
    """Merge mappings and dotted ``key=value`` overrides onto ``schema``'s defaults; validate."""
    cfg = OmegaConf.structured(schema)
    for layer in (*layers, parse_overrides(overrides)):
        try:
            _check_keys(schema, OmegaConf.to_container(OmegaConf.create(layer)), "")
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            raise ConfigError(f"{key}: {_first_line(e)}") from None
    obj = OmegaConf.to_object(cfg)
    validate(obj)
    return obj


def parse_overrides(overrides: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``, values read as YAML."""
    out: dict = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = load_yaml(value) if value else ""
        except yaml.YAMLError:
            raise ConfigError(f"override '{item}': value is not valid YAML") from None
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so ``precision: no`` stays the string "no"."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def validate(obj: Any, prefix: str = "") -> None:
    """Check the ``choices`` of every field of a (nested) dataclass instance."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{prefix}{f.name}: '{value}' is not one of {', '.join(choices)}")
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{f.name}.")


def to_dict(obj: Any) -> dict:
    """A plain nested dict of a config dataclass (for YAML and JSON)."""
    return dataclasses.asdict(obj)


def save_yaml(obj: Any, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def _check_keys(schema: type, data: Any, prefix: str) -> None:
    if not isinstance(data, dict):
        return
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}'; valid keys: {', '.join(names)}")
        sub = hints[key]
        if dataclasses.is_dataclass(sub):
            _check_keys(sub, value, f"{prefix}{key}.")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
