"""VQGAN+CLIP, the notebooks' "z+quantize" method: optimise a continuous latent z with Adam so
that CLIP finds the decoded image close to the prompts.

Each step: z -> nearest codes (straight-through) -> decode (checkpointed step by step) -> clamp to
[0, 1] (straight-through) -> ``cutn`` random augmented cutouts, encoded by every CLIP model in
chunks of ``chunk`` cutouts (each chunk's CLIP graph is freed after its backward, so memory
does not grow with ``cutn``) -> weighted spherical distances to the prompt embeddings (averaged
over CLIP models), plus ``init_weight * MSE(z, z_init) / 2`` and ``tv_weight * TV(image)``;
after the Adam step z is clamped per channel to the codebook's range. bf16 autocast on CUDA.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.data import load_image
from shared.images import from_uint8, save_png
from stage1_vqgan import VQModel
from stage2_prior.clip.cutouts import Cutouts
from stage2_prior.clip.model import ClipModel
from stage2_prior.clip.prompts import Prompt, prompt_loss

TRACE_FILE, FINAL_FILE, FRAMES_DIR = "trace.jsonl", "final.png", "frames"


@dataclass
class GuideConfig:
    prompts: list[Prompt] = field(default_factory=list)
    image_prompts: list[Prompt] = field(default_factory=list)  # text = image path
    noise_prompts: list[Prompt] = field(default_factory=list)  # text = seed of a random target
    size: tuple[int, int] = (256, 256)  # width, height in pixels (rounded down to the factor)
    steps: int = 300
    lr: float = 0.1
    cutn: int = 64
    cut_pow: float = 1.0
    chunk: int = 16  # cutouts per CLIP forward/backward
    checkpointing: bool = True  # recompute the decoder in the backward pass
    augment: bool = True
    init_image: str | None = None
    init_weight: float = 0.0
    tv_weight: float = 0.0
    seed: int = 0
    save_every: int = 50  # frames/step_XXXXX.png every N steps (0: none)
    video: str | None = None  # "gif" or "mp4": the frames as an animation


def random_latent(tokenizer: VQModel, grid: tuple[int, int], generator) -> torch.Tensor:
    """(1, embed_dim, h, w) codebook vectors of uniformly random codes."""
    idx = torch.randint(tokenizer.n_embed, (1, *grid), generator=generator)
    return tokenizer.quantize.lookup(idx.to(tokenizer.quant_conv.weight.device))


def image_tensor(path: str, width: int, height: int, device) -> torch.Tensor:
    """An image file as (1, 3, height, width) in [-1, 1]."""
    return from_uint8(np.asarray(load_image(path).resize((width, height))))[None].to(device)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()


class Guide:
    """Holds the prompts' embeddings for each CLIP model and runs :meth:`step`."""

    def __init__(self, tokenizer: VQModel, clips: list[ClipModel], cfg: GuideConfig, device):
        if not (cfg.prompts or cfg.image_prompts or cfg.noise_prompts):
            raise ValueError("give at least one text, image or noise prompt")
        self.tok = tokenizer.eval().requires_grad_(False)
        self.clips, self.cfg, self.device = clips, cfg, device
        f = tokenizer.downsample_factor
        self.width, self.height = cfg.size[0] // f * f, cfg.size[1] // f * f
        if self.width < f or self.height < f:
            raise ValueError(f"--size {cfg.size} is below the tokenizer's factor {f}")
        self.targets = [self._targets(clip) for clip in clips]
        self.cutouts = [Cutouts(c.image_size, cfg.cut_pow, cfg.augment) for c in clips]
        gen = torch.Generator().manual_seed(cfg.seed)
        self.z_init = None
        if cfg.init_image:
            image = image_tensor(cfg.init_image, self.width, self.height, device)
            with torch.no_grad():
                z = self.tok.quantize_latent(self.tok.encode_latent(image)).z_q
            self.z_init = z.clone()
        else:
            z = random_latent(self.tok, (self.height // f, self.width // f), gen)
        self.z = z.detach().clone().requires_grad_(True)
        cb = self.tok.codebook
        self.z_min, self.z_max = cb.min(0).values[:, None, None], cb.max(0).values[:, None, None]
        self.optimizer = torch.optim.Adam([self.z], lr=cfg.lr)
        labels = [p.text for p in cfg.prompts + cfg.image_prompts]
        labels += [f"noise:{p.text}" for p in cfg.noise_prompts]
        self.labels = [t if labels.index(t) == i else f"{t}#{i}" for i, t in enumerate(labels)]

    def _targets(self, clip: ClipModel) -> list[tuple[torch.Tensor, float, float]]:
        cfg, out = self.cfg, []
        if cfg.prompts:
            emb = clip.encode_text([p.text for p in cfg.prompts])
            out += [(e, p.weight, p.stop) for e, p in zip(emb, cfg.prompts, strict=True)]
        for p in cfg.image_prompts:
            image = (image_tensor(p.text, clip.image_size, clip.image_size, self.device) + 1) / 2
            with torch.no_grad():
                out.append((clip.encode_image(image)[0], p.weight, p.stop))
        for p in cfg.noise_prompts:
            gen = torch.Generator().manual_seed(int(p.text))
            dim = out[0][0].shape[0] if out else clip.encode_text(["x"]).shape[1]
            out.append((torch.randn(dim, generator=gen).to(self.device), p.weight, p.stop))
        return out

    def autocast(self):
        """bf16 autocast on CUDA, nothing elsewhere."""
        cuda = torch.device(self.device).type == "cuda"
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z -> (1, 3, H, W) in [0, 1]: nearest codes and clamping both straight-through."""
        z_q = self.tok.quantize_latent(z).z_q
        x = (self.tok.decode_latent(z_q, checkpointed=self.cfg.checkpointing) + 1) / 2
        return x + (x.clamp(0, 1) - x).detach()

    def step(self) -> dict:
        """One Adam step; returns the losses (per prompt, and the total) before the step."""
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            image = self.decode(self.z).float()
        leaf = image.detach().requires_grad_(True)
        per_prompt = torch.zeros(len(self.labels))
        for clip, cut, targets in zip(self.clips, self.cutouts, self.targets, strict=True):
            for start in range(0, cfg.cutn, cfg.chunk):
                n = min(cfg.chunk, cfg.cutn - start)
                with self.autocast():
                    emb = clip.encode_image(cut(leaf, n)).float()
                losses = torch.stack([prompt_loss(emb, t, w, s) for t, w, s in targets])
                scale = n / cfg.cutn / len(self.clips)
                (losses.sum() * scale).backward()
                per_prompt += losses.detach().cpu() * scale
        extra = (image * leaf.grad).sum()  # the CLIP gradient, pushed through the decoder
        other = {}
        if self.z_init is not None and cfg.init_weight:
            other["init"] = cfg.init_weight * F.mse_loss(self.z, self.z_init) / 2
        if cfg.tv_weight:
            other["tv"] = cfg.tv_weight * total_variation(image)
        (extra + sum(other.values())).backward()
        self.optimizer.step()
        with torch.no_grad():
            self.z.copy_(torch.maximum(torch.minimum(self.z, self.z_max), self.z_min))
        losses = dict(zip(self.labels, per_prompt.tolist(), strict=True))
        losses |= {k: v.item() for k, v in other.items()}
        return {"loss": sum(losses.values()), "losses": losses}

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The current image, (3, H, W) in [-1, 1]."""
        return self.decode(self.z)[0] * 2 - 1


def metadata(cfg: GuideConfig, clips: list[ClipModel], tokenizer: str, step: int) -> dict:
    def items(prompts):
        return " | ".join(f"{p.text}:{p.weight:g}:{p.stop:g}" for p in prompts)

    return {
        "prompt": items(cfg.prompts),
        "image_prompts": items(cfg.image_prompts),
        "noise_prompts": items(cfg.noise_prompts),
        "seed": cfg.seed,
        "steps": step,
        "clip": ", ".join(c.name for c in clips),
        "tokenizer": tokenizer,
        "software": "twostage clip",
    }


def run(guide: Guide, output: Path, tokenizer_name: str, progress: bool = True) -> Path:
    """Optimise for ``cfg.steps`` steps, writing ``trace.jsonl``, frames and ``final.png``."""
    cfg = guide.cfg
    output.mkdir(parents=True, exist_ok=True)
    frames = []
    bar = tqdm(range(1, cfg.steps + 1), disable=not progress, desc="clip", dynamic_ncols=True)
    with open(output / TRACE_FILE, "w") as trace:
        for step in bar:
            row = {"step": step, **guide.step()}
            trace.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if cfg.save_every and (step % cfg.save_every == 0 or step == cfg.steps):
                path = output / FRAMES_DIR / f"step_{step:05d}.png"
                meta = metadata(cfg, guide.clips, tokenizer_name, step)
                frames.append(save_png(guide.image(), path, meta))
    final = save_png(
        guide.image(), output / FINAL_FILE, metadata(cfg, guide.clips, tokenizer_name, cfg.steps)
    )
    if cfg.video and frames:
        write_video(frames, output / f"optimisation.{cfg.video}")
    return final


def write_video(frames: list[Path], path: Path, fps: int = 10) -> Path:
    import imageio.v2 as imageio

    images = [imageio.imread(f) for f in frames]
    if path.suffix == ".gif":
        imageio.mimsave(path, images, duration=1 / fps, loop=0)
    else:
        imageio.mimsave(path, images, fps=fps)
    return path
