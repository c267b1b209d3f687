"""The GPT prior: a decoder-only transformer over codebook indices (``transformers`` GPT-2 with
SDPA attention and its key/value cache; taming's minGPT maps onto it weight for weight), plus
the layout of its vocabulary and the condition tokens that precede the image tokens."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.pretrained import Pretrained
from stage2_prior.config import GPTLayers
from stage2_prior.sampling import check_sampling, draw, sample_windowed

KINDS = ("none", "class", "spatial", "coord")


@dataclass(kw_only=True)
class GPTSpec(GPTLayers):
    """Constructor arguments of :class:`GPTPrior` (saved in its ``config.json``): the layers of
    the ``model`` config section, and what the tokenizers and the data fix.

    Image tokens are ids [0, n_codes); condition tokens are ``cond_offset + c`` where c is the
    start token ``sos_token`` (none), the class id (class; id ``num_classes`` is the null class
    when ``class_dropout`` > 0), a condition-tokenizer code (spatial) or a coordinate token
    (coord). Ours put them after the image ids; taming's share ids with them (offset 0)."""

    n_codes: int
    window: list[int]
    condition: str = "none"
    num_classes: int = 0
    n_cond_codes: int = 0
    class_dropout: float = 0.0
    cond_offset: int | None = None  # None: n_codes
    sos_token: int = 0
    coord_factor: int = 1  # pixels per token side, for coordinate tokens
    vocab_size: int | None = None  # None: just enough for the image and condition ids
    block_size: int | None = None  # None: condition length + window tokens

    def __post_init__(self):
        if self.condition not in KINDS:
            raise ValueError(f"condition '{self.condition}' is not one of {', '.join(KINDS)}")
        self.window = [int(v) for v in self.window]
        if self.cond_offset is None:
            self.cond_offset = self.n_codes
        if self.vocab_size is None:
            self.vocab_size = max(self.n_codes, self.cond_offset + self.n_cond_vocab)
        if self.block_size is None:
            self.block_size = self.context_length + self.window[0] * self.window[1]

    @property
    def spatial(self) -> bool:
        """Whether the condition is a token grid aligned with the image grid."""
        return self.condition in ("spatial", "coord")

    @property
    def context_length(self) -> int:
        return self.window[0] * self.window[1] if self.spatial else 1

    @property
    def has_null_class(self) -> bool:
        return self.condition == "class" and self.class_dropout > 0

    @property
    def n_cond_vocab(self) -> int:
        if self.condition == "none":
            return self.sos_token + 1
        if self.condition == "class":
            return self.num_classes + int(self.has_null_class)
        return self.n_cond_codes


def coord_tokens(
    height: int,
    width: int,
    n_tokens: int,
    factor: int = 1,
    top: int = 0,
    left: int = 0,
    rows: int | None = None,
    cols: int | None = None,
) -> torch.Tensor:
    """Coordinate tokens (rows, cols) of the crop at (top, left) of a (height, width) token grid
    whose tokens cover ``factor`` x ``factor`` pixels: taming's CoordStage, i.e. the pixel map
    (y * W + x) / (H * W) averaged over each token's pixels, times ``n_tokens``, rounded."""
    rows, cols = rows or height, cols or width
    centre = (factor - 1) / 2
    y = torch.arange(top, top + rows, dtype=torch.float64)[:, None] * factor + centre
    x = torch.arange(left, left + cols, dtype=torch.float64)[None, :] * factor + centre
    value = (y * width * factor + x) / (height * width * factor * factor)
    return (n_tokens * value.clamp(0, 1)).round().long().clamp_(max=n_tokens - 1)


def class_ids(condition, batch: int, num_classes: int, device) -> torch.Tensor:
    """Class ids (B,) from an int or a (B,) tensor, checked against [0, num_classes); a missing
    or wrong condition is a one-line ValueError."""
    if condition is None:
        raise ValueError(f"this prior is class-conditional: pass a class in [0, {num_classes})")
    labels = torch.as_tensor(condition, device=device).long().reshape(-1)
    labels = labels.expand(batch) if labels.numel() == 1 else labels
    if labels.numel() != batch:
        raise ValueError(f"expected 1 or {batch} class ids, got {labels.numel()}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        raise ValueError(f"class {bad[0].item()} is outside [0, {num_classes})")
    return labels


class GPTPrior(Pretrained):
    """p(s | c) = prod_i p(s_i | s_<i, c) over a window of image tokens, condition tokens first.
    Keyword arguments are the fields of :class:`GPTSpec`."""

    model_type = "gpt-prior"

    def __init__(self, **kwargs):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        spec = GPTSpec(**kwargs)
        self.spec = spec
        self.config = dataclasses.asdict(spec)
        gpt_cfg = GPT2Config(
            vocab_size=spec.vocab_size,
            n_positions=spec.block_size,
            n_embd=spec.n_embd,
            n_layer=spec.n_layer,
            n_head=spec.n_head,
            activation_function="gelu",  # minGPT's exact (erf) GELU
            resid_pdrop=spec.dropout,
            embd_pdrop=spec.dropout,
            attn_pdrop=spec.dropout,
            layer_norm_epsilon=1e-5,
            bos_token_id=None,
            eos_token_id=None,
            tie_word_embeddings=False,
        )
        gpt_cfg._attn_implementation = "sdpa"
        quiet = logging.getLogger("transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            self.transformer = GPT2Model(gpt_cfg)
        finally:
            quiet.setLevel(level)
        # the key/value cache's name: ``cache`` since transformers 5.2x, ``past_key_values`` before
        forward_args = inspect.signature(GPT2Model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        self.head = nn.Linear(spec.n_embd, spec.n_codes, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)

    @property
    def window(self) -> tuple[int, int]:
        return tuple(self.spec.window)

    def forward(
        self, tokens: torch.Tensor, past=None, use_cache: bool = False
    ) -> tuple[torch.Tensor, object]:
        """tokens (B,T) ids -> (next-image-token logits (B,T,n_codes), key/value cache or None)."""
        out = self.transformer(input_ids=tokens, **{self._cache_arg: past}, use_cache=use_cache)
        cache = getattr(out, self._cache_arg) if use_cache else None
        return self.head(out.last_hidden_state), cache

    # -- conditions ----------------------------------------------------------------------------

    def context(self, condition, batch: int, grid: tuple[int, int]) -> torch.Tensor:
        """Condition ids (B,P) for a global condition, or (B,H,W) aligned with a (H,W) grid.

        ``condition``: None (unconditional; coord computes its own grid), class ids (int or
        (B,) tensor), or a (B,H,W) grid of condition-tokenizer codes (spatial) / coordinate
        tokens (coord)."""
        s, device = self.spec, self.head.weight.device
        kind = s.condition
        if kind == "none":
            if condition is not None:
                raise ValueError("this prior is unconditional: pass no condition")
            return torch.full((batch, 1), s.cond_offset + s.sos_token, device=device)
        if kind == "class":
            return (s.cond_offset + class_ids(condition, batch, s.num_classes, device))[:, None]
        if condition is None and kind == "coord":
            condition = coord_tokens(*grid, s.n_cond_codes, s.coord_factor)
            condition = condition.expand(batch, *grid)
        if condition is None:
            raise ValueError("this prior is spatially conditioned: pass condition codes (B,H,W)")
        codes = torch.as_tensor(condition, device=device).long()
        if codes.ndim == 2:
            codes = codes.expand(batch, *codes.shape)
        if tuple(codes.shape) != (batch, *grid):
            raise ValueError(
                f"condition codes must have shape {(batch, *grid)}, got {tuple(codes.shape)}"
            )
        if codes.min() < 0 or codes.max() >= s.n_cond_codes:
            raise ValueError(f"condition codes must lie in [0, {s.n_cond_codes})")
        return s.cond_offset + codes

    def null_context(self, batch: int) -> torch.Tensor:
        """The null-class ids (B,1) that classifier-free guidance contrasts with."""
        if not self.spec.has_null_class:
            raise ValueError(
                "--cfg-scale needs a class-conditional prior trained with class_dropout > 0"
            )
        s = self.spec
        return torch.full((batch, 1), s.cond_offset + s.num_classes, device=self.head.weight.device)

    @staticmethod
    def crop_context(ctx: torch.Tensor, i0: int, j0: int, window: tuple[int, int]) -> torch.Tensor:
        """The (B,P) context of the window at (i0, j0): spatial grids are cropped, else kept."""
        if ctx.ndim == 2:
            return ctx
        return ctx[:, i0 : i0 + window[0], j0 : j0 + window[1]].reshape(ctx.shape[0], -1)

    # -- likelihood ----------------------------------------------------------------------------

    def inputs(self, indices: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The network input for a window of indices (B,h,w) after ``context``: the tokens
        (B,P+h*w-1) and the position of the first output that predicts an image token."""
        ctx = self.crop_context(context, 0, 0, indices.shape[1:])
        seq = torch.cat([ctx, indices.flatten(1)], dim=1)
        return seq[:, :-1], ctx.shape[1] - 1

    def logits(self, indices: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Logits (B,h*w,n_codes) of each image token of the window ``indices`` (B,h,w) given
        the condition ``context`` (from :meth:`context`) and the tokens before it."""
        tokens, first = self.inputs(indices, context)
        return self(tokens)[0][:, first:]

    @torch.no_grad()
    def nll(self, indices: torch.Tensor, condition=None) -> torch.Tensor:
        """Per-sample mean negative log-likelihood in nats/token (B,); indices (B,h,w) must be
        one training window."""
        indices = self.check_indices(indices)
        if tuple(indices.shape[1:]) != self.window:
            raise ValueError(
                f"NLL is defined on the training window {self.window}; got a "
                f"{tuple(indices.shape[1:])} grid"
            )
        ctx = self.context(condition, indices.shape[0], self.window)
        logits = self.logits(indices, ctx)
        nll = F.cross_entropy(logits.transpose(1, 2).float(), indices.flatten(1), reduction="none")
        return nll.mean(1)

    def check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices, device=self.head.weight.device).long()
        if indices.ndim != 3:
            raise ValueError(f"indices must be (B,h,w), got shape {tuple(indices.shape)}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.spec.n_codes):
            raise ValueError(f"indices must lie in [0, {self.spec.n_codes})")
        return indices

    # -- sampling ------------------------------------------------------------------------------

    def prepare_sample(
        self, batch: int, grid=None, condition=None, cfg_scale: float = 1.0, **options
    ) -> tuple[tuple[int, int], torch.Tensor]:
        """Check a sampling request (arguments of :meth:`sample`; ``options`` those of
        :func:`check_sampling`): its grid (h, w), at least the training window, and condition
        ids (2B rows when ``cfg_scale`` != 1: the null class after the condition); a one-line
        ValueError for what cannot be sampled."""
        check_sampling(cfg_scale=cfg_scale, **options)
        grid = tuple(grid or self.window)
        wh, ww = self.window
        if len(grid) != 2 or grid[0] < wh or grid[1] < ww:
            raise ValueError(f"grid {grid} must be at least the training window {self.window}")
        ctx = self.context(condition, batch, grid)
        if cfg_scale != 1.0:
            ctx = torch.cat([ctx, self.null_context(batch)], dim=0)
        return grid, ctx

    @torch.no_grad()
    def sample(
        self,
        batch: int,
        grid: tuple[int, int] | None = None,
        condition=None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        cfg_scale: float = 1.0,
        generator: torch.Generator | None = None,
        cached: bool = True,
        progress: bool = False,
        waves: bool | None = None,
    ) -> torch.Tensor:
        """Sample (B,h,w) indices; a grid larger than the training window is filled with the
        sliding window (each token sees the window centred on it, clamped to the canvas).
        ``cached`` False runs the reference; ``waves`` picks the fast path's schedule for a
        sliding window (:func:`~stage2_prior.sampling.sample_windowed`; None: by device)."""
        grid, ctx = self.prepare_sample(
            batch, grid, condition, cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p
        )
        guided = cfg_scale != 1.0
        device = ctx.device
        uniforms = torch.rand(*grid, batch, generator=generator, device=device)

        def pick(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            if guided:
                cond, uncond = logits.float().chunk(2, dim=1)
                logits = uncond + cfg_scale * (cond - uncond)
            k = logits.shape[0]
            tokens = draw(logits.flatten(0, 1), temperature, top_k, top_p, uniform=u.flatten())
            tokens = tokens.view(k, -1)
            return tokens.repeat(1, 2) if guided else tokens

        canvas = sample_windowed(
            self,
            lambda i0, j0: self.crop_context(ctx, i0, j0, self.window),
            ctx.shape[0],
            grid,
            self.window,
            pick,
            uniforms,
            cached=cached,
            progress=progress,
            waves=waves,
        )
        return canvas[:batch]

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def bits_per_dim(nats_per_token: float, tokens: int, pixels: int, channels: int = 3) -> float:
    """Convert a mean NLL over ``tokens`` image tokens to bits per image dimension."""
    return nats_per_token * tokens / (pixels * channels * math.log(2))
