"""Prompts of CLIP guidance in the reference notebooks' syntax, and their loss.

``"a red house:1.5:0.2 | blurry:-1"``: items separated by ``|``, each ``text[:weight[:stop]]``
(weight default 1, negative pushes away, always finite; stop default -inf). The text may
itself hold colons: only the last two colon-separated fields are read as numbers, when they
are numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.config import ConfigError


@dataclass(frozen=True)
class Prompt:
    text: str
    weight: float = 1.0
    stop: float = -math.inf


def _number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def parse_prompt(item: str) -> Prompt:
    """``"text[:weight[:stop]]"`` -> :class:`Prompt`; an empty text is a ConfigError."""
    parts = item.strip().rsplit(":", 2)
    numbers: list[float] = []
    while len(parts) > 1 and len(numbers) < 2 and _number(parts[-1]) is not None:
        numbers.insert(0, _number(parts.pop()))
    text = ":".join(parts).strip()
    if not text:
        raise ConfigError(f"prompt '{item}' has no text")
    if numbers and not math.isfinite(numbers[0]):
        raise ConfigError(f"prompt '{item}': the weight must be a finite number")
    if len(numbers) == 2 and math.isnan(numbers[1]):
        raise ConfigError(f"prompt '{item}': the stop must be a number (or -inf), not nan")
    return Prompt(text, *numbers)


def parse_prompts(text: str) -> list[Prompt]:
    """``"a | b:2 | c:-1:0.5"`` -> prompts, empty items skipped."""
    return [parse_prompt(p) for p in text.split("|") if p.strip()]


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``2 * arcsin(|x^ - y^| / 2)^2`` of L2-normalised embeddings, i.e. ``theta^2 / 2`` for the
    angle theta between them; broadcasts ``(..., D)`` pairs -> ``(...)``, in [0, pi^2 / 2]."""
    d = (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).norm(dim=-1)
    return 2 * torch.arcsin((d / 2).clamp(max=1)) ** 2


def prompt_loss(images: torch.Tensor, target: torch.Tensor, weight: float, stop: float):
    """``|weight| * mean sign(weight) * distance`` between image embeddings ``(N, D)`` and one
    target ``(D,)``. Its value is always the distance; while ``sign(weight) * distance`` is
    below ``stop`` no gradient flows (the prompt has been reached)."""
    d = spherical_distance(images, target[None]) * math.copysign(1.0, weight)
    gated = torch.maximum(d, torch.full_like(d, stop))
    return abs(weight) * (d.detach() + gated - gated.detach()).mean()
