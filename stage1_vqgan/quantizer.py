"""Vector quantisation of a latent grid onto a learned codebook.

``VectorQuantizer(n_embed, embed_dim, ...)`` maps z (B, D, h, w) to the nearest of K codes with
straight-through gradients. Options (keyword arguments): beta placement (taming's legacy form for
its checkpoints), l2-normalised (cosine) codes, a low-dimensional lookup space (factorised codes),
EMA codebook updates, and restart of codes unused for a number of training steps. The nearest-code
search runs in row chunks, so its memory stays bounded for 16384+ codes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

SEARCH_BUDGET = 1 << 22  # distance-matrix elements per chunk (16 MiB in fp32)


class QuantizerOutput(NamedTuple):
    z_q: torch.Tensor  # (B, D, h, w) quantised latents, straight-through in training
    loss: torch.Tensor  # scalar codebook + commitment loss
    indices: torch.Tensor  # (B, h, w) int64 code ids
    perplexity: torch.Tensor  # exp(entropy) of this batch's code histogram
    usage: torch.Tensor  # fraction of the K codes used in this batch


@torch.no_grad()
def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Index of the nearest code (squared L2) for each row: z (N, D), codebook (K, D) -> (N,).

    Rows are processed ``chunk`` at a time, so at most chunk*K distances exist at once; the
    distances are computed in fp32 even under autocast."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, codebook = z.float(), codebook.float()
        chunk = chunk or max(1, SEARCH_BUDGET // codebook.shape[0])
        e_sq = codebook.pow(2).sum(1)
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], chunk):
            part = z[start : start + chunk]
            d = part.pow(2).sum(1, keepdim=True) + e_sq - 2 * part @ codebook.t()
            out[start : start + chunk] = d.argmin(1)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser.

    Args:
        n_embed: number of codes K.
        embed_dim: channels D of the latent grid.
        beta: commitment weight. With ``legacy_beta`` it multiplies the codebook term instead
            (taming's ``VectorQuantizer2(legacy=True)``, needed to fine-tune its checkpoints).
        l2_normalize: compare l2-normalised latents and codes (cosine similarity).
        codebook_dim: search in a lower-dimensional space (linear in/out projections), or None.
        ema: update codes by exponential moving averages instead of gradients.
        ema_decay: decay of those averages.
        restart_unused_steps: re-seed a code with a random current latent once it has not been
            used for this many training steps (0 disables).
        search_chunk: rows per chunk of the nearest-code search (None: bounded automatically).
    """

    def __init__(
        self,
        n_embed: int,
        embed_dim: int,
        beta: float = 0.25,
        legacy_beta: bool = False,
        l2_normalize: bool = False,
        codebook_dim: int | None = None,
        ema: bool = False,
        ema_decay: float = 0.99,
        restart_unused_steps: int = 0,
        search_chunk: int | None = None,
    ):
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.beta, self.legacy_beta, self.l2_normalize = beta, legacy_beta, l2_normalize
        self.ema, self.ema_decay = ema, ema_decay
        self.restart_unused_steps, self.search_chunk = restart_unused_steps, search_chunk
        dim = codebook_dim or embed_dim
        if dim != embed_dim:
            self.in_proj = nn.Linear(embed_dim, dim)
            self.out_proj = nn.Linear(dim, embed_dim)
        self.embedding = nn.Embedding(n_embed, dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        if ema:
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_count", torch.ones(n_embed))
            self.register_buffer("ema_sum", self.embedding.weight.data.clone())
        if restart_unused_steps:
            self.register_buffer("steps_unused", torch.zeros(n_embed, dtype=torch.long))

    @property
    def low_dim(self) -> bool:
        return hasattr(self, "in_proj")

    def codes(self) -> torch.Tensor:
        """Codes in the search space, (K, codebook_dim), normalised when ``l2_normalize``."""
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_normalize else w

    def to_search_space(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) latents -> (N, codebook_dim) vectors compared with :meth:`codes`."""
        z = self.in_proj(z) if self.low_dim else z
        return F.normalize(z, dim=1) if self.l2_normalize else z

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) latents -> (B, h, w) nearest-code indices; no state changes."""
        b, d, h, w = z.shape
        flat = self.to_search_space(z.permute(0, 2, 3, 1).reshape(-1, d))
        return nearest_code(flat, self.codes(), self.search_chunk).reshape(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, D, h, w) quantised latents."""
        z = F.embedding(indices, self.codes())
        z = self.out_proj(z) if self.low_dim else z
        return z.permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, h, w = z.shape
        flat = self.to_search_space(z.permute(0, 2, 3, 1).reshape(-1, d))
        idx = nearest_code(flat, self.codes(), self.search_chunk)
        counts = torch.bincount(idx, minlength=self.n_embed).float()
        if self.training:  # collective ops only here: evaluation may run on one process
            counts = all_reduce_sum(counts)
            if self.ema:
                self._ema_update(flat.detach().float(), idx, counts)
            if self.restart_unused_steps:
                self._restart_unused(flat.detach(), counts)
        q = F.embedding(idx, self.codes())
        commit = F.mse_loss(flat, q.detach())
        if self.ema:
            loss = self.beta * commit
        else:
            codebook = F.mse_loss(q, flat.detach())
            legacy = commit + self.beta * codebook
            loss = legacy if self.legacy_beta else self.beta * commit + codebook
        q = flat + (q - flat).detach()
        q = self.out_proj(q) if self.low_dim else q
        z_q = q.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        p = counts / counts.sum().clamp(min=1)
        perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum())
        usage = (counts > 0).float().mean()
        return QuantizerOutput(z_q, loss, idx.reshape(b, h, w), perplexity, usage)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
        all_reduce_sum(sums)
        self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
        self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.n_embed * 1e-5) * n
        self.embedding.weight.data.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_unused(self, flat: torch.Tensor, counts: torch.Tensor) -> None:
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = self.steps_unused >= self.restart_unused_steps
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[pick].float()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)
        self.embedding.weight.data[dead] = fresh.to(self.embedding.weight.dtype)
        if self.ema:
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        self.steps_unused[dead] = 0
