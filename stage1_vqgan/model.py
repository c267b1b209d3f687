"""The VQGAN tokenizer: encoder -> quant_conv -> codebook -> post_quant_conv -> decoder.

Interface used by every later stage: ``encode(images) -> indices (B,h,w)``,
``decode(indices) -> images (B,C,H,W) in [-1,1]``, ``quantize(z)``, ``codebook``,
``downsample_factor``, ``kind``, ``save_pretrained`` / ``from_pretrained``. A tokenizer of kind
"segmentation" reads one-hot label maps and decodes to per-label logits; go through
:mod:`stage1_vqgan.segmentation` (``encode_mask`` / ``decode_mask``) for label maps."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from shared.config import ConfigError
from shared.pretrained import Pretrained, build_checked
from stage1_vqgan.autoencoder import AutoencoderLayout, Decoder, Encoder
from stage1_vqgan.config import ModelConfig
from stage1_vqgan.quantizer import QuantizerOutput, VectorQuantizer


class VQModel(Pretrained):
    """Keyword arguments are the fields of :class:`stage1_vqgan.config.ModelConfig`."""

    model_type = "vqgan"

    def __init__(self, **kwargs):
        super().__init__()
        cfg = ModelConfig(**kwargs)
        self.config = dataclasses.asdict(cfg)
        layout = AutoencoderLayout(
            ch=cfg.ch,
            ch_mult=tuple(cfg.ch_mult),
            num_res_blocks=cfg.num_res_blocks,
            attn_resolutions=tuple(cfg.attn_resolutions),
            resolution=cfg.resolution,
            z_channels=cfg.z_channels,
            dropout=cfg.dropout,
        )
        self.encoder = Encoder(layout, cfg.in_channels)
        self.decoder = Decoder(layout, cfg.out_channels)
        self.quantize = VectorQuantizer(
            cfg.n_embed,
            cfg.embed_dim,
            beta=cfg.beta,
            legacy_beta=cfg.legacy_beta,
            l2_normalize=cfg.l2_normalize,
            codebook_dim=cfg.codebook_dim,
            ema=cfg.ema_codebook,
            ema_decay=cfg.ema_codebook_decay,
            restart_unused_steps=cfg.restart_unused_steps,
            search_chunk=cfg.search_chunk,
        )
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> VQModel:
        """A fresh tokenizer; oversized or inconsistent settings are one-line errors."""
        kwargs = dataclasses.asdict(cfg)
        return build_checked(lambda: cls(**kwargs), "model (tokenizer config)", ConfigError)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config["ch_mult"]) - 1)

    @property
    def kind(self) -> str:
        """What it encodes: "image" or "segmentation" (one-hot label maps)."""
        return self.config["kind"]

    @property
    def n_embed(self) -> int:
        return self.config["n_embed"]

    @property
    def codebook(self) -> torch.Tensor:
        """(K, embed_dim) code vectors as the decoder receives them."""
        idx = torch.arange(self.n_embed, device=self.quant_conv.weight.device)
        return self.quantize.lookup(idx[None, :, None])[0, :, :, 0].t()

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adaptive GAN weight is measured."""
        return self.decoder.conv_out.weight

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) in [-1,1] -> continuous latents (B, embed_dim, H/f, W/f) before quantising."""
        return self.quant_conv(self.encoder(x))

    def decode_latent(self, z_q: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """(B, embed_dim, h, w) quantised latents -> images (B,C,h*f,w*f). ``checkpointed``
        keeps only each decoder step's input for the backward pass and recomputes one step at
        a time there, so training memory stays near that of the largest single step."""
        h = self.post_quant_conv(z_q)
        if not (checkpointed and torch.is_grad_enabled()):
            return self.decoder(h)
        for step in self.decoder.stages():
            h = checkpoint(step, h, use_reentrant=False)
        return h

    def quantize_latent(self, z: torch.Tensor) -> QuantizerOutput:
        return self.quantize(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) in [-1,1], H and W divisible by f -> code indices (B, H/f, W/f) int64."""
        return self.quantize.indices(self.encode_latent(x))

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """(B,h,w) code indices -> images (B,C,h*f,w*f), nominally in [-1,1]."""
        return self.decode_latent(self.quantize.lookup(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantize(self.encode_latent(x))
        return self.decode_latent(q.z_q), q
