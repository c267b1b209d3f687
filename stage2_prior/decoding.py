"""Exact fast decoding for the GPT prior, over the network's own GPT-2 weights (no copies).

- :class:`StaticCache`: keys/values preallocated as (n_layer, rows, heads, length, head_dim) and
  written in place; :meth:`StaticCache.prefill` runs a prefix, :meth:`StaticCache.step` one token
  per row: a plain function of the weights, without the transformers wrapper's per-step cache
  bookkeeping, mask building or output objects.
- :func:`last_logits`: the next-token logits of a batch of prefixes of different lengths (padded
  at the end) in one forward; the last layer computes only the queries that are read.

Both compute what :class:`~stage2_prior.gpt.GPTPrior`'s forward computes (same operations, same
order of layers; only the matrix shapes differ), so sampled tokens equal the reference path's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _conv(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """GPT-2's Conv1D (weight (in, out)): x (..., in) -> (..., out)."""
    return torch.addmm(m.bias, x.reshape(-1, x.shape[-1]), m.weight).view(*x.shape[:-1], -1)


def _norm(m: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


def _mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's second half: x + MLP(ln_2(x))."""
    return x + _conv(block.mlp.c_proj, F.gelu(_conv(block.mlp.c_fc, _norm(block.ln_2, x))))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(R,T,C) -> (R,heads,T,C/heads)."""
    r, t, c = x.shape
    return x.view(r, t, heads, c // heads).transpose(1, 2)


def _merge(y: torch.Tensor) -> torch.Tensor:
    """(R,heads,T,D) -> (R,T,heads*D)."""
    r, h, t, d = y.shape
    return y.transpose(1, 2).reshape(r, t, h * d)


class StaticCache:
    """Decode ``rows`` sequences of at most ``length`` tokens with a preallocated key/value cache.

    ``prefill(tokens (rows,P))`` fills positions [0, P) and returns the last position's logits
    (rows,V); ``step(tokens (rows,), pos)`` writes position ``pos`` and returns its logits."""

    def __init__(self, net: nn.Module, rows: int, length: int):
        self.net, self.heads = net, net.spec.n_head
        weight = net.head.weight
        dim = net.spec.n_embd // self.heads
        shape = (net.spec.n_layer, rows, self.heads, length, dim)
        self.keys = weight.new_empty(shape)
        self.values = weight.new_empty(shape)
        self.scale = 1 / math.sqrt(dim)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run(tokens, 0)[:, -1]

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        return self._run(tokens[:, None], pos)[:, 0]

    def _run(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Logits (R,T,V) of ``tokens`` (R,T) at positions [start, start+T) after the cached ones
        (prefixes start at 0, so a multi-token call is always causal from position 0)."""
        tr, n = self.net.transformer, tokens.shape[1]
        end = start + n
        x = tr.wte(tokens) + tr.wpe.weight[start:end]
        for layer, block in enumerate(tr.h):
            q, k, v = _conv(block.attn.c_attn, _norm(block.ln_1, x)).split(x.shape[-1], dim=-1)
            keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
            keys[:, :, start:] = _heads(k, self.heads)
            values[:, :, start:] = _heads(v, self.heads)
            y = F.scaled_dot_product_attention(
                _heads(q, self.heads), keys, values, is_causal=n > 1, scale=self.scale
            )
            x = _mlp(block, x + _conv(block.attn.c_proj, _merge(y)))
        return self.net.head(_norm(tr.ln_f, x))


def last_logits(net: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-token logits (N,V) after each prefix ``tokens[n, :lengths[n]]``; ``tokens`` (N,L)
    holds any ids after a prefix's end (causal attention never reads them)."""
    tr, heads = net.transformer, net.spec.n_head
    n, length = tokens.shape
    x = tr.wte(tokens) + tr.wpe.weight[:length]
    last = (lengths - 1).view(n, 1, 1).expand(n, 1, x.shape[-1])
    *blocks, final = tr.h
    for block in blocks:
        q, k, v = _conv(block.attn.c_attn, _norm(block.ln_1, x)).split(x.shape[-1], dim=-1)
        y = F.scaled_dot_product_attention(*(_heads(t, heads) for t in (q, k, v)), is_causal=True)
        x = _mlp(block, x + _conv(block.attn.c_proj, _merge(y)))
    # the last layer: keys/values of every position, the query of the last one only
    q, k, v = _conv(final.attn.c_attn, _norm(final.ln_1, x)).split(x.shape[-1], dim=-1)
    visible = torch.arange(length, device=tokens.device) < lengths[:, None]  # (N,L)
    y = F.scaled_dot_product_attention(
        _heads(q.gather(1, last), heads),
        _heads(k, heads),
        _heads(v, heads),
        attn_mask=visible[:, None, None, :],
    )
    x = _mlp(final, x.gather(1, last) + _conv(final.attn.c_proj, _merge(y)))
    return net.head(_norm(tr.ln_f, x))[:, 0]
