"""Turning next-token logits into tokens, and the windowed sampling loop (taming's sliding
window, with or without a key/value cache)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

Logits = Callable[..., tuple[torch.Tensor, object]]


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Keep the ``top_k`` largest logits and the smallest set whose probability reaches
    ``top_p`` (nucleus); the rest become -inf. ``logits`` (B,V)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before a token already reaches top_p
        drop[..., 0] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def check_sampling(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float = 1.0,
) -> None:
    """Raise ValueError for values no sampler can use: ``temperature`` finite and >= 0,
    ``top_k`` >= 1, ``top_p`` in (0, 1], ``cfg_scale`` finite (NaN would make every token the
    last one of the vocabulary)."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if not math.isfinite(cfg_scale):
        raise ValueError(f"cfg_scale must be a finite number, got {cfg_scale}")


def draw(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` (B,V) -> (B,). Inverse-CDF sampling from one uniform
    number per row, so the random stream does not depend on how the logits were computed;
    ``temperature`` 0 is greedy (argmax)."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device)
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    return index.squeeze(1).clamp_(max=logits.shape[-1] - 1)


def window_origin(i: int, size: int, window: int) -> int:
    """First row (or column) of the window for position ``i`` of a ``size``-long axis: the window
    is centred on ``i`` and clamped to the canvas. For a 16-token window this is taming's rule
    (local position 8 in the interior, ``16 - (size - i)`` near the far border)."""
    return min(max(i - window // 2, 0), size - window)


def sample_windowed(
    forward: Logits,
    context: Callable[[int, int], torch.Tensor],
    rows: int,
    grid: tuple[int, int],
    window: tuple[int, int],
    pick: Callable[[torch.Tensor], torch.Tensor],
    cached: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Sample a (rows, H, W) token canvas in raster order.

    ``forward(tokens, past=None, use_cache=False) -> (logits (rows,T,V), past)`` is the network;
    ``context(i0, j0)`` gives the condition tokens (rows,P) for the window whose top-left token
    is (i0, j0); ``pick(last_logits (rows,V)) -> tokens (rows,)`` draws the next token (and may
    combine guided rows). Each token is predicted from the context followed by the window's
    tokens before it. With ``cached``, the keys/values of the window are reused while the window
    stays put (one new token per forward); the tokens are the same as without."""
    (H, W), (wh, ww) = grid, window
    canvas = torch.zeros(rows, H, W, dtype=torch.long, device=context(0, 0).device)
    past, last_origin, last_pos = None, None, -2
    bar = tqdm(total=H * W, desc="sample", disable=not progress, dynamic_ncols=True)
    for i in range(H):
        i0 = window_origin(i, H, wh)
        for j in range(W):
            j0 = window_origin(j, W, ww)
            pos = (i - i0) * ww + (j - j0)
            win = canvas[:, i0 : i0 + wh, j0 : j0 + ww].reshape(rows, -1)
            if cached and (i0, j0) == last_origin and pos == last_pos + 1:
                logits, past = forward(win[:, pos - 1 : pos], past=past, use_cache=True)
            else:
                seq = torch.cat([context(i0, j0), win[:, :pos]], dim=1)
                logits, past = forward(seq, use_cache=cached)
            canvas[:, i, j] = pick(logits[:, -1])
            last_origin, last_pos = (i0, j0), pos
            bar.update(1)
    bar.close()
    return canvas
