"""Parameters and multiply-accumulates of a network: ``torch.utils.flop_counter`` FLOPs / 2 of
one forward pass (matmuls and convolutions; norms, activations and softmaxes are not counted)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def cost(net: nn.Module, *inputs) -> dict[str, int]:
    """``{"params": number of parameters, "macs": multiply-accumulates of net(*inputs)}``."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder path escapes the counter
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net.eval()(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    params = sum(p.numel() for p in net.parameters())
    return {"params": params, "macs": counter.get_total_flops() // 2}
