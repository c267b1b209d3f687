"""Token-mixing attentions with one interface, chosen by config (AdatGAN thesis §2, §13.10).

Every module maps ``x (B, N, C) -> y (B, N, C)``; ``forward(x, return_maps=True)`` returns
``(y, maps)`` with the attention map natural to the kind:

================  =====================================  =======================================
kind              class                                  maps
================  =====================================  =======================================
``additive``      :class:`AdditiveAttention` ("Adat")    alpha ``(B, heads, N)``, O(N)
``fastformer``    :class:`FastformerAttention`           alpha, beta ``(B, heads, 2, N)``, O(N)
``linformer``     :class:`LinformerAttention` (k = 64)   ``(B, heads, N, k)``, O(N k)
``swin``          :class:`SwinWindowAttention` (8x8)     ``(B, heads, windows, M*M, M*M)``
``dot``           :class:`DotProductAttention`           ``(B, heads, N, N)``, O(N^2)
``l2``            :class:`L2Attention` (tied W_q = W_k)  ``(B, heads, N, N)``, O(N^2)
================  =====================================  =======================================

Every map is a softmax, so it sums to 1 over its last axis. The dot-product kinds run
``F.scaled_dot_product_attention`` unless maps are requested (then the softmax is materialised).
``build_attention(kind, dim, heads, grid=(h, w))`` builds any of them from a config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_KINDS = ("additive", "fastformer", "linformer", "swin", "dot", "l2")

Output = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., N, heads * d) -> (..., heads, N, d)."""
    return t.unflatten(-1, (heads, -1)).transpose(-3, -2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    """(..., heads, N, d) -> (..., N, heads * d)."""
    return t.transpose(-3, -2).flatten(-2)


def _softmax_attention(q, k, v, bias=None, return_maps=False):
    """softmax(q k^T / sqrt(d) + bias) v over the last two axes; the map only on request."""
    if not return_maps:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), None
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    maps = (logits if bias is None else logits + bias).softmax(dim=-1)
    return maps.to(v.dtype) @ v, maps


class _Attention(nn.Module):
    """Shared parts: ``to_qkv`` (Linear C -> 3C, bias) and ``to_out`` (Linear C -> C, bias)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}"


class _AdditivePool(nn.Module):
    """Additive attention pooling of ``t (B, N, C)`` per head (thesis eq. 4.1).

    alpha = softmax_n(w_h . t_n / sqrt(head_dim)); pooled = sum_n alpha_n t_n.
    ``local_logits=False`` (LadaGAN and Fastformer code): ``w_h`` spans all C channels of t;
    ``True`` (thesis text): ``w_h`` spans only head h's ``head_dim`` channels. A bias on the
    logits is left out: softmax over tokens ignores it (its gradient is zero)."""

    def __init__(self, dim: int, heads: int, local_logits: bool):
        super().__init__()
        self.heads, self.local_logits = heads, local_logits
        self.scale = (dim // heads) ** -0.5
        fan_in = dim // heads if local_logits else dim
        self.w = nn.Parameter(torch.empty(heads, fan_in).uniform_(-(fan_in**-0.5), fan_in**-0.5))

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) -> pooled (B, heads, 1, head_dim), alpha (B, heads, N)."""
        parts = _split(t, self.heads)  # (B, h, N, d)
        if self.local_logits:
            logits = torch.einsum("bhnd,hd->bhn", parts, self.w.to(t.dtype))
        else:
            logits = (t @ self.w.to(t.dtype).T).transpose(1, 2)
        alpha = (logits * self.scale).softmax(dim=-1)
        return (alpha.unsqueeze(-2).to(t.dtype) @ parts), alpha


class AdditiveAttention(_Attention):
    """Multi-head additive attention, "Adat" (thesis §2.1, eq. 4.1; LadaGAN code, spec §2.4).

    Per head h, with q, k, v = to_qkv(x) split into heads of size d:
    alpha = softmax_n(w_h . q_n / sqrt(d)); q_G = sum_n alpha_n q_n; r_n = q_G * k_n * v_n;
    y = to_out(concat_h r). No global key (unlike Fastformer) and no residual with q: the
    transformer block adds its own. Time and memory O(N C).

    ``local_logits``: see :class:`_AdditivePool` (default: LadaGAN's w over all channels)."""

    def __init__(self, dim: int, heads: int = 4, local_logits: bool = False):
        super().__init__(dim, heads)
        self.pool = _AdditivePool(dim, heads, local_logits)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, N, C) -> y (B, N, C), or (y, alpha (B, heads, N))."""
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q_global, alpha = self.pool(q)  # (B, h, 1, d)
        y = self.to_out(_merge(q_global * _split(k, self.heads) * _split(v, self.heads)))
        return (y, alpha) if return_maps else y


class FastformerAttention(_Attention):
    """Fastformer additive attention (Wu et al. 2021, spec §2.3), O(N C).

    q_G = sum_n alpha_n q_n with alpha = softmax(w_q . q_n / sqrt(d)); p_n = q_G * k_n;
    k_G = sum_n beta_n p_n with beta = softmax(w_k . p_n / sqrt(d)); u_n = k_G * v_n;
    y_n = to_out(u_n) + q_n (to_out is the paper's output transform; the query residual is
    the paper's). Values have their own transform (the paper's equations; its code shares the
    query and value transforms)."""

    def __init__(self, dim: int, heads: int = 4, local_logits: bool = False):
        super().__init__(dim, heads)
        self.query_pool = _AdditivePool(dim, heads, local_logits)
        self.key_pool = _AdditivePool(dim, heads, local_logits)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, N, C) -> y (B, N, C), or (y, stack(alpha, beta) (B, heads, 2, N))."""
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q_global, alpha = self.query_pool(q)
        p = _merge(q_global * _split(k, self.heads))
        k_global, beta = self.key_pool(p)
        y = self.to_out(_merge(k_global * _split(v, self.heads))) + q
        return (y, torch.stack([alpha, beta], dim=2)) if return_maps else y


class DotProductAttention(_Attention):
    """Multi-head softmax(q k^T / sqrt(d)) v with output projection (thesis §13.6): O(N^2)
    time; O(N^2) memory when the N x N map is materialised (``return_maps``)."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__(dim, heads)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, N, C) -> y (B, N, C), or (y, maps (B, heads, N, N))."""
        q, k, v = (_split(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        out, maps = _softmax_attention(q, k, v, return_maps=return_maps)
        y = self.to_out(_merge(out))
        return (y, maps) if return_maps else y


class L2Attention(nn.Module):
    """Multi-head L2 attention with tied query/key weights (Kim et al. 2021; ViTGAN's
    discriminator, spec taming_and_vitgan B.3.2): ``softmax(-||x W_q - x W_q||^2 / sqrt(d)) x W_v``,
    so nearer tokens get more weight and the map is Lipschitz, unlike dot-product attention."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)  # also the keys: W_k = W_q
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, N, C) -> y (B, N, C), or (y, maps (B, heads, N, N))."""
        q, v = _split(self.to_q(x), self.heads), _split(self.to_v(x), self.heads)
        logits = -torch.cdist(q, q).square() / math.sqrt(q.shape[-1])
        maps = torch.softmax(logits.float(), dim=-1).to(v.dtype)
        y = self.to_out(_merge(maps @ v))
        return (y, maps) if return_maps else y


class LinformerAttention(_Attention):
    """Linformer (Wang et al. 2020; thesis eq. 3.38, k = 64): each head's keys and values are
    projected along the sequence by learned E_h, F_h (k x seq_len), then softmax attention:
    softmax(q (E_h k)^T / sqrt(d)) F_h v. O(N k). Fixed sequence length ``seq_len``."""

    def __init__(self, dim: int, heads: int = 4, seq_len: int | None = None, k: int = 64):
        super().__init__(dim, heads)
        if seq_len is None:
            raise ValueError("linformer attention needs seq_len (or grid=(h, w))")
        self.seq_len, self.k = seq_len, k
        self.proj_k = nn.Parameter(torch.randn(heads, k, seq_len) / math.sqrt(seq_len))
        self.proj_v = nn.Parameter(torch.randn(heads, k, seq_len) / math.sqrt(seq_len))

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, seq_len, C) -> y (B, seq_len, C), or (y, maps (B, heads, seq_len, k))."""
        if x.shape[1] != self.seq_len:
            raise ValueError(f"linformer built for {self.seq_len} tokens, got {x.shape[1]}")
        q, k, v = (_split(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        k = self.proj_k.to(k.dtype) @ k  # (h, k, N) @ (B, h, N, d) -> (B, h, k, d)
        v = self.proj_v.to(v.dtype) @ v
        out, maps = _softmax_attention(q, k, v, return_maps=return_maps)
        y = self.to_out(_merge(out))
        return (y, maps) if return_maps else y


class SwinWindowAttention(_Attention):
    """Swin window attention (Liu et al. 2021; thesis §13.10, 8x8 windows) on an (h, w) grid
    of row-major tokens: softmax attention inside each M x M window with Swin's learned
    relative position bias. ``shift=True`` rolls the grid by M/2 first, masking pairs that the
    roll made neighbours (Swin's alternate layers). M = min(window, h, w); the shift is off when
    one window covers the grid. O(N M^2)."""

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        grid: tuple[int, int] | None = None,
        window: int = 8,
        shift: bool = False,
    ):
        super().__init__(dim, heads)
        if grid is None:
            raise ValueError("swin attention needs the token grid=(h, w)")
        h, w = grid
        m = min(window, h, w)
        if h % m or w % m:
            raise ValueError(f"token grid {h}x{w} is not divisible into {m}x{m} windows")
        self.grid, self.window = (h, w), m
        self.shift = m // 2 if shift and min(h, w) > m else 0
        self.rel_bias = nn.Parameter(torch.zeros((2 * m - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()])  # (2, M*M)
        rel = pos[:, :, None] - pos[:, None, :] + (m - 1)
        self.register_buffer("rel_index", rel[0] * (2 * m - 1) + rel[1], persistent=False)
        self.register_buffer("shift_mask", self._shift_mask(), persistent=False)

    def _shift_mask(self) -> torch.Tensor | None:
        """(windows, M*M, M*M): -inf between tokens from different regions of the rolled grid."""
        if not self.shift:
            return None
        (h, w), m, s = self.grid, self.window, self.shift
        labels = torch.zeros(1, h, w, 1)
        bands = (slice(0, -m), slice(-m, -s), slice(-s, None))
        for i, (rows, cols) in enumerate((r, c) for r in bands for c in bands):
            labels[:, rows, cols] = i
        labels = self._windows(labels).squeeze(-1)[0]  # (windows, M*M)
        different = labels[:, :, None] != labels[:, None, :]
        return torch.zeros(different.shape).masked_fill(different, float("-inf"))

    def _windows(self, t: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) -> (B, windows, M*M, C)."""
        (h, w), m = self.grid, self.window
        t = t.reshape(t.shape[0], h // m, m, w // m, m, t.shape[-1]).transpose(2, 3)
        return t.reshape(t.shape[0], -1, m * m, t.shape[-1])

    def _unwindows(self, t: torch.Tensor) -> torch.Tensor:
        """(B, windows, M*M, C) -> (B, h, w, C)."""
        (h, w), m = self.grid, self.window
        t = t.reshape(t.shape[0], h // m, w // m, m, m, t.shape[-1]).transpose(2, 3)
        return t.reshape(t.shape[0], h, w, t.shape[-1])

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> Output:
        """x (B, h*w, C) -> y (B, h*w, C), or (y, maps (B, heads, windows, M*M, M*M))."""
        (h, w), s = self.grid, self.shift
        if x.shape[1] != h * w:
            raise ValueError(f"swin built for a {h}x{w} grid ({h * w} tokens), got {x.shape[1]}")
        x = x.reshape(x.shape[0], h, w, -1)
        if s:
            x = x.roll((-s, -s), dims=(1, 2))
        q, k, v = (_split(t, self.heads) for t in self.to_qkv(self._windows(x)).chunk(3, dim=-1))
        bias = self.rel_bias[self.rel_index].permute(2, 0, 1)  # (heads, M*M, M*M)
        if self.shift_mask is not None:
            bias = bias + self.shift_mask[:, None]  # (windows, heads, M*M, M*M)
        out, maps = _softmax_attention(q, k, v, bias.to(q.dtype), return_maps)
        y = self._unwindows(self.to_out(_merge(out)))
        if s:
            y = y.roll((s, s), dims=(1, 2))
        y = y.flatten(1, 2)
        return (y, maps.transpose(1, 2)) if return_maps else y


_CLASSES = {
    "additive": AdditiveAttention,
    "fastformer": FastformerAttention,
    "linformer": LinformerAttention,
    "swin": SwinWindowAttention,
    "dot": DotProductAttention,
    "l2": L2Attention,
}


def build_attention(
    kind: str, dim: int, heads: int = 4, *, grid: tuple[int, int] | None = None, **kw
) -> nn.Module:
    """The attention ``kind`` (one of ATTENTION_KINDS) for ``dim`` channels and ``heads`` heads.

    ``grid=(h, w)``, the token grid, is what linformer (seq_len = h*w) and swin need; the other
    kinds ignore it, so callers can always pass it. ``kw`` go to the class (``k``, ``window``,
    ``shift``, ``local_logits``, ``seq_len``)."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown attention '{kind}'; choose one of {', '.join(ATTENTION_KINDS)}")
    if kind == "linformer" and grid is not None:
        kw.setdefault("seq_len", grid[0] * grid[1])
    if kind == "swin":
        kw["grid"] = grid
    return _CLASSES[kind](dim, heads, **kw)
