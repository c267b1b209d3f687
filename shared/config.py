"""Configuration: YAML presets shipped in a package + ``key=value`` dotted overrides, validated
against dataclass schemas. Every user mistake becomes a one-line :class:`ConfigError`."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from shared.errors import first_line
from shared.limits import check_limit

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration mistake a user can fix; the message is one line."""


def choice(default: str, *choices: str) -> Any:
    """A string field restricted to ``choices`` (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": (default, *choices)})


def positive(default: Any) -> Any:
    """A number field (or list of numbers) that must be > 0."""
    return _bounded(default, "positive")


def fraction(default: Any) -> Any:
    """A number field (or list of numbers) that must lie in [0, 1]."""
    return _bounded(default, "fraction")


def _bounded(default: Any, bound: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"bound": bound})
    return field(default=default, metadata={"bound": bound})


@dataclass
class DataConfig:
    # a folder, or builtin:shapes | fashion-mnist | photos | swissroll | gaussians (2-D points)
    source: str = "builtin:shapes"
    resolution: int = positive(64)
    crop: str = choice("random", "center")
    flip: bool = True
    channels: int = positive(3)
    masks: str | None = None  # folder of segmentation masks parallel to `source`
    val_fraction: float = fraction(0.05)
    strict: bool = False  # unreadable files: error instead of skip-with-warning


@dataclass
class TrainConfig:
    batch_size: int = positive(8)
    max_steps: int = 1000
    lr: float = positive(1e-4)
    # every learning rate (lr, and lr_d where a task has it) times a factor of the step:
    # constant, or cosine from 1 down to 0.1 at max_steps (nanoGPT's), after a linear ramp over
    # the first `warmup` share of max_steps (both scale with --max-steps)
    lr_schedule: str = choice("constant", "cosine")
    warmup: float = fraction(0.0)
    grad_accum: int = positive(1)
    grad_clip: float = 0.0  # max global grad norm, 0 = off
    ema_decay: float = fraction(0.0)  # EMA of the trained weights, 0 = off
    checkpoint_every: int = 500
    keep_checkpoints: int = positive(2)
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
    check_limit("config_bytes", len(text.encode()), f"config {name_or_path}")
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{name_or_path}: invalid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a mapping of keys to values")
    return data


def build_config(schema: type[T], *layers: dict, overrides: list[str] = ()) -> T:
    """Merge mappings and dotted ``key=value`` overrides onto ``schema``'s defaults; check every
    key, type, choice and bound. Values are literal data: ``${...}`` is never interpolated."""
    merged: dict = {}
    for layer in (*layers, parse_overrides(overrides)):
        if not isinstance(layer, dict):
            raise ConfigError(f"a config must be a mapping of keys to values, not {_kind(layer)}")
        _check_keys(schema, layer, "")
        merged = _merge(merged, layer)
    obj = _build(schema, merged, "")
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
    """YAML 1.2 booleans: only true/false, so ``precision: no`` stays the string "no". Aliases
    (``*name``) are refused: a few of them nested expand a small file into billions of nodes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases such as *{event.anchor} are not allowed in a config")
        return super().compose_node(parent, index)


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
    """Check the ``choices`` and bounds of every field of a (nested) dataclass instance: numbers
    are finite and non-negative, ``positive`` fields are > 0, ``fraction`` fields in [0, 1]."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(choices)}")
        if dataclasses.is_dataclass(value):
            validate(value, f"{key}.")
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, int | float) and not isinstance(item, bool):
                _check_number(key, item, f.metadata.get("bound", "non-negative"))


def _check_number(key: str, value: float, bound: str) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number")
    if bound == "positive" and value <= 0:
        raise ConfigError(f"{key}: {value} must be > 0")
    if bound == "fraction" and not 0 <= value <= 1:
        raise ConfigError(f"{key}: {value} must lie in [0, 1]")
    if bound == "non-negative" and value < 0:
        raise ConfigError(f"{key}: {value} must be >= 0")


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
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key}: expected a mapping, got {_kind(value)}")
            _check_keys(sub, value, f"{prefix}{key}.")


def _merge(base: dict, layer: dict) -> dict:
    """``layer`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(schema: type[T], data: dict, prefix: str) -> T:
    """An instance of ``schema`` from ``data`` (missing keys keep their defaults)."""
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for f in dataclasses.fields(schema):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{prefix}{f.name}")
    return schema(**kwargs)


def _coerce(kind: Any, value: Any, key: str) -> Any:
    """``value`` as type ``kind`` (YAML strings such as ``1e-4`` become numbers) or a
    one-line :class:`ConfigError` naming ``key``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return _build(kind, value or {}, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is list or kind is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        item = args[0] if args else Any
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping with text keys, got {_kind(value)}")
        return dict(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind in (int, float):
        number = _number(value, kind)
        if number is not None:
            return number
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"{key}: expected {_ARTICLE.get(name, name)}, got {_kind(value)}")


def _number(value: Any, kind: type) -> int | float | None:
    """``value`` as ``kind`` (int or float) when it is one: a number (a float must be whole to
    be an int) or its text; None otherwise (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return None
    if isinstance(value, int) or (isinstance(value, float) and kind is float):
        return kind(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_ARTICLE = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}


def _kind(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return f"a {type(value).__name__}"
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
