"""Bounds on what one command may read, build or generate, so that a small input (a typo, a
hostile file) cannot exhaust the machine. Each bound is lifted by its environment variable, e.g.
``TWOSTAGE_MAX_PIXELS=100000000 twostage vqgan reconstruct ...``."""

from __future__ import annotations

import math
import os

# name: (environment variable, default, what it bounds)
LIMITS: dict[str, tuple[str, int, str]] = {
    "pixels": ("TWOSTAGE_MAX_PIXELS", 4096 * 4096, "pixels of one image read or generated"),
    "parameters": ("TWOSTAGE_MAX_PARAMETERS", 2_000_000_000, "parameters of one network"),
    "classes": ("TWOSTAGE_MAX_CLASSES", 65_536, "classes, codebook entries or token ids"),
    "config_bytes": ("TWOSTAGE_MAX_CONFIG_BYTES", 1_000_000, "bytes of one YAML/JSON config"),
    "samples": ("TWOSTAGE_MAX_SAMPLES", 1_000_000, "images or code grids of one command"),
}


class LimitError(ValueError):
    """An input is over one of :data:`LIMITS`; the message names the limit and how to lift it."""


def limit(name: str) -> int:
    """The bound ``name`` (its environment variable wins over the default)."""
    env, default, _ = LIMITS[name]
    text = os.environ.get(env)
    if text is None:
        return default
    try:
        value = int(float(text))
    except ValueError:
        raise LimitError(f"{env}={text!r} is not a number") from None
    if value <= 0:
        raise LimitError(f"{env}={text!r} must be positive")
    return value


def check_limit(name: str, value: float, what: str) -> None:
    """Raise :class:`LimitError` when ``value`` (a count of ``name``) is over its bound."""
    bound = limit(name)
    if not math.isfinite(value) or value > bound:
        env, _, meaning = LIMITS[name]
        shown = f"{value:,.0f}" if math.isfinite(value) else str(value)
        raise LimitError(
            f"{what} is {shown}, over the limit of {bound:,} {meaning} (set {env} to lift it)"
        )
