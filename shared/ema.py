"""Exponential moving average of a module's weights (the EMA generator / EMA tokenizer)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` of ``module``; buffers are copied.

    ``state_dict``/``load_state_dict`` make it checkpointable by accelerate."""

    def __init__(self, module: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            s.lerp_(p.detach().to(s.dtype), 1 - self.decay)
        for s, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            s.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
