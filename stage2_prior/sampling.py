"""Turning next-token logits into tokens, and the windowed sampling loop (taming's sliding
window): the recomputing reference, and the exact fast path (static key/value cache, wavefront)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from stage2_prior.decoding import StaticCache, last_logits


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
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` (B,V) -> (B,). Inverse-CDF sampling from one uniform
    number per row (``uniform`` (B,) in [0, 1), else drawn from ``generator``), so the tokens do
    not depend on how the logits were computed; ``temperature`` 0 is greedy (argmax)."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    cdf = probs.cumsum(-1)
    if uniform is None:
        uniform = torch.rand(logits.shape[0], generator=generator, device=logits.device)
    index = torch.searchsorted(cdf, uniform.view(-1, 1).to(cdf) * cdf[:, -1:], right=True)
    return index.squeeze(1).clamp_(max=logits.shape[-1] - 1)


def window_origin(i: int, size: int, window: int) -> int:
    """First row (or column) of the window for position ``i`` of a ``size``-long axis: the window
    is centred on ``i`` and clamped to the canvas. For a 16-token window this is taming's rule
    (local position 8 in the interior, ``16 - (size - i)`` near the far border)."""
    return min(max(i - window // 2, 0), size - window)


def wavefront(grid: tuple[int, int], window: tuple[int, int]) -> list[list[tuple[int, int]]]:
    """The positions of a (H,W) canvas in waves: each position comes after every token its
    window shows before it (the rows above inside its window up to the window's last column, and
    its own row to its left), and as early as that allows, so that one wave is one batched
    forward. A grid equal to the window gives one position per wave (raster order)."""
    (H, W), (wh, ww) = grid, window
    time = [[0] * W for _ in range(H)]
    waves: list[list[tuple[int, int]]] = []
    for i in range(H):
        above = window_origin(i, H, wh) < i
        for j in range(W):
            t = time[i][j - 1] + 1 if j else 0
            if above:
                t = max(t, time[i - 1][window_origin(j, W, ww) + ww - 1] + 1)
            time[i][j] = t
            waves.extend([] for _ in range(t + 1 - len(waves)))
            waves[t].append((i, j))
    return waves


Pick = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_windowed(
    net: torch.nn.Module,
    context: Callable[[int, int], torch.Tensor],
    rows: int,
    grid: tuple[int, int],
    window: tuple[int, int],
    pick: Pick,
    uniforms: torch.Tensor,
    cached: bool = True,
    progress: bool = False,
    waves: bool | None = None,
) -> torch.Tensor:
    """Sample a (rows, H, W) token canvas: token (i, j) is drawn from the GPT prior ``net``'s
    logits after the condition tokens ``context(i0, j0)`` (rows,P) of its window (top-left token
    (i0, j0), from :func:`window_origin`) and the window's tokens before it in raster order.

    ``pick(logits (K,rows,V), u (K,B)) -> tokens (K,rows)`` draws the tokens of K positions (and
    may combine guided rows); ``uniforms`` (H,W,B) are each position's random numbers, fixed up
    front, so the tokens do not depend on the order positions are decoded in. The reference
    (``cached`` False) runs one forward of each token's prefix in raster order; the fast path
    decodes a lone window with a static key/value cache, and a larger canvas either in waves
    (:func:`wavefront`; ``waves``, the default on a GPU), all prefixes of a wave in one forward,
    or in raster order reusing the window's keys/values while it stays put (the default on a CPU,
    where a forward costs its arithmetic whatever the batch). All give the same tokens."""
    (H, W), (wh, ww) = grid, window
    canvas = torch.zeros(rows, H, W, dtype=torch.long, device=uniforms.device)
    bar = tqdm(total=H * W, desc="sample", disable=not progress, dynamic_ncols=True)

    def prefix(i: int, j: int) -> torch.Tensor:
        i0, j0 = window_origin(i, H, wh), window_origin(j, W, ww)
        pos = (i - i0) * ww + (j - j0)
        win = canvas[:, i0 : i0 + wh, j0 : j0 + ww].reshape(rows, -1)
        return torch.cat([context(i0, j0), win[:, :pos]], dim=1)

    def put(positions: list[tuple[int, int]], logits: torch.Tensor) -> None:
        ii, jj = (torch.tensor(v, device=canvas.device) for v in zip(*positions, strict=True))
        tokens = pick(logits.view(len(positions), rows, -1), uniforms[ii, jj])
        canvas[:, ii, jj] = tokens.t()
        bar.update(len(positions))

    if not cached:
        for i in range(H):
            for j in range(W):
                put([(i, j)], net(prefix(i, j))[0][:, -1])
    elif grid != window and (waves if waves is not None else canvas.device.type != "cpu"):
        for wave in wavefront(grid, window):
            seqs = [prefix(i, j) for i, j in wave]
            lengths = torch.tensor([s.shape[1] for s in seqs], device=canvas.device)
            tokens = canvas.new_zeros(len(seqs), rows, int(lengths.max()))
            for k, seq in enumerate(seqs):
                tokens[k, :, : seq.shape[1]] = seq
            put(wave, last_logits(net, tokens.flatten(0, 1), lengths.repeat_interleave(rows)))
    else:
        _decode_rows(net, prefix, canvas, window, put)
    bar.close()
    return canvas


def _decode_rows(net, prefix, canvas: torch.Tensor, window: tuple[int, int], put) -> None:
    """Fill the canvas in raster order. While the window stays put (a position's window is the
    previous one's, one token on) its keys/values live in a :class:`StaticCache` and each token
    is one step; a prefix whose window moves on at once goes through :func:`last_logits` alone.
    A canvas of one window is one prefill of the condition, then one step per token."""
    rows, H, W = canvas.shape
    (wh, ww), ones = window, canvas.new_ones(rows)
    cond = prefix(0, 0).shape[1]  # the condition tokens before every window
    cache = StaticCache(net, rows, cond + wh * ww - 1)

    def origin(n: int) -> tuple[int, int]:  # the window of raster position n
        return window_origin(n // W, H, wh), window_origin(n % W, W, ww)

    for n in range(H * W):
        (i, j), (i0, j0) = divmod(n, W), origin(n)
        pos = (i - i0) * ww + (j - j0)
        if n and origin(n - 1) == origin(n):  # the window stays put: one step
            logits = cache.step(canvas[:, (n - 1) // W, (n - 1) % W], cond + pos - 1)
        elif n + 1 < H * W and origin(n + 1) == origin(n):  # it will: cache the prefix
            logits = cache.prefill(prefix(i, j))
        else:
            logits = last_logits(net, prefix(i, j), ones * (cond + pos))
        put([(i, j)], logits)
