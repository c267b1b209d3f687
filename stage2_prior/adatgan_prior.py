"""The AdatGAN prior: the AdatGAN generator family (spec ``adatgan.md`` §3-§5) emitting an h x w
grid of continuous latents in the stage-1 codebook space in one forward pass, snapped to the
nearest codes when sampling, trained adversarially against real code grids.

The discriminator sees the real index grids embedded with the tokenizer's frozen (unit-scaled)
codebook and the generated latents, both with instance noise N(0, noise^2): the noise makes the
two distributions overlap, so D cannot win on exact codebook membership and G's gradients stay
informative. (Straight-through variants, snapping the latents before D or Gumbel-softmax
one-hots over code logits, let D win at once in our runs: their code histograms did not move
towards the data.) Optional class conditioning: SLN on ``[z, class embedding]`` in G, a
projection term in D. A GAN has no likelihood: ``nll`` refuses. The training step is
:class:`stage2_prior.adatgan_task.AdatPriorTask`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from shared.equalized import MinibatchStd
from shared.gan_blocks import (
    AdatBlock,
    FastGANDownBlock,
    ModulatedAdatBlock,
    PixelShuffleUpsample,
    map_to_tokens,
    tokens_to_map,
)
from shared.pretrained import Pretrained
from stage2_prior.config import AdatGeneratorLayers
from stage2_prior.gpt import class_ids
from stage2_prior.sampling import check_sampling

CONDITIONS = ("none", "class")


@dataclass(kw_only=True)
class AdatPriorSpec(AdatGeneratorLayers):
    """Constructor arguments of :class:`AdatPriorGenerator` (saved in its ``config.json``): the
    generator layers of the ``adatgan`` config section, and what the tokenizer and the data fix.

    ``dims`` are the widths of the stages, coarse to fine; stage i runs on the grid
    ``window / 2**(len(dims) - 1 - i)``, so both window sides must be divisible by
    ``2**(len(dims) - 1)``."""

    n_codes: int
    window: list[int]
    condition: str = "none"
    num_classes: int = 0
    embed_dim: int = 32  # the codebook's width: the generator's output channels

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(
                f"the AdatGAN prior takes condition none or class, not '{self.condition}'"
            )
        self.window = [int(v) for v in self.window]
        self.dims = [int(v) for v in self.dims]
        scale = 2 ** (len(self.dims) - 1)
        if len(self.window) != 2 or any(v % scale or v < scale for v in self.window):
            raise ValueError(
                f"window {self.window} must be 2 sides divisible by 2**(len(dims)-1) = {scale}"
            )
        if self.condition == "class" and self.num_classes < 1:
            raise ValueError("a class-conditional AdatGAN prior needs num_classes >= 1")


@torch.no_grad()
def unit_codebook(codebook: torch.Tensor) -> torch.Tensor:
    """(K, E) codebook centred per dimension and scaled to unit overall std (float32): the space
    latent priors generate in and the discriminator judges."""
    cb = codebook.float()
    return (cb - cb.mean(0)) / cb.std().clamp(min=1e-8)


class AdatPriorGenerator(Pretrained):
    """``forward(z (B, z_dim), labels (B,) | None) -> (B, embed_dim, h, w)`` continuous latents
    in the unit-scaled codebook space (:func:`unit_codebook`); :meth:`snap` maps them to the
    nearest codes.

    z -> Linear -> tokens on the coarsest grid; per stage: + position embedding -> modulated
    Adat block (SLN on z, or on [z, class embedding]) -> pixel shuffle x2 + LEE conv into the
    next stage; a Linear head maps the last tokens to latents. The generator keeps the
    unit-scaled codebook (``set_codebook``) as a buffer, so it samples without its tokenizer.
    Keyword arguments are the fields of :class:`AdatPriorSpec`."""

    model_type = "adatgan-prior"

    def __init__(self, **kwargs):
        super().__init__()
        spec = AdatPriorSpec(**kwargs)
        self.spec, self.config = spec, dataclasses.asdict(spec)
        h, w = spec.window
        n = len(spec.dims)
        self.grids = [(h >> (n - 1 - i), w >> (n - 1 - i)) for i in range(n)]
        conditional = spec.condition == "class"
        self.class_embed = nn.Embedding(spec.num_classes, spec.z_dim) if conditional else None
        cond_dim = spec.z_dim * (2 if conditional else 1)
        g0 = self.grids[0]
        self.to_tokens = nn.Linear(spec.z_dim, g0[0] * g0[1] * spec.dims[0], bias=False)
        self.pos = nn.ParameterList(
            nn.Parameter(torch.randn(gh * gw, d) * 0.02)
            for (gh, gw), d in zip(self.grids, spec.dims, strict=True)
        )
        self.blocks = nn.ModuleList(
            ModulatedAdatBlock(d, cond_dim, spec.heads, spec.mlp_dim) for d in spec.dims
        )
        self.upsample = nn.ModuleList(
            PixelShuffleUpsample(a, b) for a, b in zip(spec.dims, spec.dims[1:], strict=False)
        )
        self.head = nn.Linear(spec.dims[-1], spec.embed_dim)
        self.register_buffer("codebook", torch.zeros(spec.n_codes, spec.embed_dim))

    @property
    def window(self) -> tuple[int, int]:
        return tuple(self.spec.window)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cond = z if self.class_embed is None else torch.cat([z, self.class_embed(labels)], -1)
        x = self.to_tokens(z).view(z.shape[0], -1, self.spec.dims[0])
        for i, (block, pos) in enumerate(zip(self.blocks, self.pos, strict=True)):
            if i:
                x = self.upsample[i - 1](x, self.grids[i - 1])
            x, _ = block(x + pos, cond)
        return tokens_to_map(self.head(x), self.window)

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor) -> None:
        """Store the tokenizer's (n_codes, embed_dim) codebook as :func:`unit_codebook`."""
        self.codebook.copy_(unit_codebook(codebook))

    def snap(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim, h, w) latents -> (B, h, w) indices of the nearest codes (L2)."""
        flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).float()
        distance = torch.cdist(flat, self.codebook)
        return distance.argmin(1).view(latents.shape[0], *latents.shape[2:])

    def context(self, condition, batch: int, grid: tuple[int, int] | None = None):
        """Class ids (B,) for a class-conditional prior (from an int or a (B,) tensor), None
        for an unconditional one; a wrong condition is a ValueError."""
        s = self.spec
        if s.condition == "none":
            if condition is not None:
                raise ValueError("this prior is unconditional: pass no condition")
            return None
        return class_ids(condition, batch, s.num_classes, self.head.weight.device)

    def prepare_sample(
        self, batch: int, grid=None, condition=None, cfg_scale: float = 1.0, **options
    ) -> tuple[tuple[int, int], torch.Tensor | None]:
        """Check a sampling request (arguments of :meth:`sample`; ``options`` those of
        :func:`check_sampling`): the trained grid (h, w), and class ids (B,) or None; a
        one-line ValueError for what cannot be sampled."""
        check_sampling(cfg_scale=cfg_scale, **options)
        if grid is not None and tuple(grid) != self.window:
            raise ValueError(
                f"the AdatGAN prior generates its trained {self.window[0]}x{self.window[1]} grid "
                f"only, not {tuple(grid)}"
            )
        if cfg_scale != 1.0:
            raise ValueError("classifier-free guidance (cfg_scale) needs a GPT prior")
        return self.window, self.context(condition, batch)

    @torch.no_grad()
    def sample(self, batch: int, grid=None, condition=None, generator=None, **options):
        """(B,h,w) nearest codes of one forward pass with z ~ N(0, temperature^2 I) drawn from
        ``generator``. ``grid`` must be the trained grid; ``options``: ``temperature`` (1: the
        trained distribution; below 1 truncates towards the mode z = 0), ``cfg_scale`` (must be
        1), ``top_k``/``top_p`` (checked, unused), ``cached``/``progress`` (no effect: one pass)."""
        options = {k: v for k, v in options.items() if k not in ("cached", "progress")}
        _, labels = self.prepare_sample(batch, grid, condition, **options)
        device = self.head.weight.device
        z = torch.randn(batch, self.spec.z_dim, generator=generator, device=device)
        return self.snap(self(options.get("temperature", 1.0) * z, labels))

    def nll(self, indices: torch.Tensor, condition=None) -> torch.Tensor:
        raise ValueError(
            "an AdatGAN prior has no likelihood: nll needs an autoregressive (GPT) prior"
        )

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class AdatPriorDiscriminator(nn.Module):
    """``forward(grid (B, embed_dim, h, w), labels (B,) | None) -> logits (B,)``.

    Conv3x3 + LReLU to ``dim`` -> + position embedding -> Adat block (both residuals) ->
    [minibatch std channel] -> FastGAN down block (no BN) -> mean over cells -> Linear, plus the
    projection ``<class embedding, features>`` when ``num_classes`` > 0 (Miyato & Koyama 2018).
    ``minibatch_std``: the spread of each group of samples as an extra channel, so D can tell a
    collapsed batch from a varied one (ProGAN)."""

    def __init__(
        self,
        embed_dim: int,
        window: tuple[int, int],
        dim: int = 128,
        heads: int = 4,
        mlp_dim: int = 512,
        num_classes: int = 0,
        minibatch_std: bool = False,
    ):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(embed_dim, dim, 3, padding=1), nn.LeakyReLU(0.2))
        self.pos = nn.Parameter(torch.randn(window[0] * window[1], dim) * 0.02)
        self.block = AdatBlock(dim, heads, mlp_dim)
        self.spread = MinibatchStd() if minibatch_std else nn.Identity()
        self.down = FastGANDownBlock(dim + int(minibatch_std), dim, batch_norm=False)
        self.out = nn.Linear(dim, 1)
        self.class_embed = nn.Embedding(num_classes, dim) if num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(x)
        x = tokens_to_map(self.block(map_to_tokens(x) + self.pos), x.shape[-2:])
        features = self.down(self.spread(x)).mean((2, 3))
        logits = self.out(features)[:, 0]
        if self.class_embed is not None:
            logits = logits + (self.class_embed(labels) * features).sum(1)
        return logits
