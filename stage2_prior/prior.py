"""A prior network (GPT or AdatGAN) with the stage-1 tokenizers it speaks: what
``load_prior`` returns, and the contract (:class:`PriorNetwork`) it needs from the network."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from shared.data import DataError, class_id, save_class_names
from stage1_vqgan import VQModel, encode_mask

TOKENIZER_DIR, COND_TOKENIZER_DIR = "tokenizer", "cond_tokenizer"
SPEC_FILE = "prior_spec.json"  # in a run folder: the network's arguments, for mid-run loading
SPATIAL = ("spatial", "coord")  # conditions given as a code grid aligned with the image grid


class NetworkSpec(Protocol):
    """The fields every prior network's spec has (``GPTSpec``, ``AdatPriorSpec``)."""

    n_codes: int  # image codebook size: indices lie in [0, n_codes)
    window: list[int]  # trained grid [h, w]
    condition: str  # none | class | spatial | coord
    num_classes: int  # class ids lie in [0, num_classes) (class condition)


class PriorNetwork(Protocol):
    """What :class:`Prior` needs from its network (an ``nn.Module``; :class:`~stage2_prior.gpt.
    GPTPrior`, :class:`~stage2_prior.adatgan_prior.AdatPriorGenerator`): ``prepare_sample`` checks
    a request with the arguments of ``sample`` (grid, condition, sampling options) and returns its
    grid (h, w) and condition input, or raises a one-line ValueError."""

    model_type: str
    spec: NetworkSpec

    @property
    def window(self) -> tuple[int, int]: ...

    def prepare_sample(
        self, batch: int, grid=None, condition=None, cfg_scale: float = 1.0, **options
    ) -> tuple[tuple[int, int], torch.Tensor | None]: ...

    def sample(self, batch: int, grid=None, condition=None, **options) -> torch.Tensor: ...

    def nll(self, indices: torch.Tensor, condition=None) -> torch.Tensor: ...

    def save_pretrained(self, folder: str | Path) -> Path: ...

    def param_count(self) -> int: ...


class Prior(nn.Module):
    """``sample``/``nll`` over index grids, ``decode`` to images, ``encode_condition`` for maps.

    ``cond_resize``: spatial maps are resized (nearest) to this square size before encoding
    (taming's ``downsample_cond_size``); None keeps their size. ``class_names``: the names of
    a class-conditional prior's class ids (id = position), stored as ``classes.json``."""

    def __init__(
        self,
        net: PriorNetwork,
        tokenizer: VQModel,
        cond_tokenizer: VQModel | None = None,
        cond_resize: int | None = None,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        self.net, self.tokenizer, self.cond_tokenizer = net, tokenizer, cond_tokenizer
        self.cond_resize = cond_resize
        self.class_names = list(class_names) if class_names else None

    @property
    def window(self) -> tuple[int, int]:
        return self.net.window

    @property
    def condition(self) -> str:
        return self.net.spec.condition

    @property
    def n_codes(self) -> int:
        return self.net.spec.n_codes

    @property
    def num_classes(self) -> int:
        return self.net.spec.num_classes

    @property
    def n_cond_codes(self) -> int:
        """Vocabulary of a spatial or coord condition's code grids (a GPT's), else 0."""
        return self.net.spec.n_cond_codes if self.condition in SPATIAL else 0

    @property
    def downsample_factor(self) -> int:
        return self.tokenizer.downsample_factor

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def with_network(self, net: PriorNetwork) -> Prior:
        """This prior's tokenizers and class names around another network (its EMA copy)."""
        return Prior(net, self.tokenizer, self.cond_tokenizer, self.cond_resize, self.class_names)

    def sample(self, batch: int, grid: tuple[int, int] | None = None, condition=None, **kw):
        """(B,h,w) indices; see :meth:`~stage2_prior.gpt.GPTPrior.sample` /
        :meth:`~stage2_prior.adatgan_prior.AdatPriorGenerator.sample` for the keywords."""
        return self.net.sample(batch, grid, condition, **kw)

    def check_sample(self, batch: int, grid=None, condition=None, **options) -> tuple[int, int]:
        """The grid (h, w) of a :meth:`sample` request, checked before any work; a one-line
        ValueError for anything sampling would refuse: a missing class (with the class names)
        or spatial condition, a grid below the training window (in pixels), and the network's
        own checks (:meth:`PriorNetwork.prepare_sample`)."""
        if self.condition == "class" and condition is None:
            names = self.class_names or []
            choices = ", ".join(f"{i}={n}" for i, n in enumerate(names))
            raise ValueError(
                "this prior is class-conditional: pass --class NAME or ID "
                f"({choices or f'0..{self.num_classes - 1}'})"
            )
        if self.condition == "spatial" and condition is None:
            raise ValueError("this prior is spatially conditioned: pass --condition MAP.png")
        (h, w), f = grid or self.window, self.downsample_factor
        if h < self.window[0] or w < self.window[1]:
            raise ValueError(
                f"--size must be at least the training window "
                f"{self.window[1] * f}x{self.window[0] * f} pixels (WIDTHxHEIGHT)"
            )
        return self.net.prepare_sample(batch, grid, condition, **options)[0]

    def nll(self, indices: torch.Tensor, condition=None) -> torch.Tensor:
        """Per-sample mean nats/token (B,) of one training window of indices (B,h,w); a
        ValueError for an AdatGAN prior (no likelihood)."""
        return self.net.nll(indices, condition)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B,h,w) -> images (B,C,H,W) in [-1,1]."""
        return self.tokenizer.decode(indices.to(self.device)).clamp(-1, 1)

    @torch.no_grad()
    def encode_condition(self, maps: torch.Tensor) -> torch.Tensor:
        """Spatial maps -> condition codes (B,h,w). ``maps`` (B,H,W) long: label ids for a
        segmentation tokenizer, 8-bit values [0,255] for an image-like one (depth, edges)."""
        if self.cond_tokenizer is None:
            raise ValueError(
                "this prior has no condition tokenizer (it is not spatially conditioned)"
            )
        tok = self.cond_tokenizer
        maps = torch.as_tensor(maps, device=self.device).long()
        if self.cond_resize:
            size = (self.cond_resize, self.cond_resize)
            maps = F.interpolate(maps[:, None].float(), size=size, mode="nearest")[:, 0].long()
        if tok.kind == "segmentation":
            return encode_mask(tok, maps)
        x = (maps.float() / 127.5 - 1.0)[:, None]
        return tok.encode(x.expand(-1, tok.config["in_channels"], -1, -1))

    def class_id(self, value: str | int) -> int:
        """A class name or id (as ``--class`` takes it) -> the class id; a one-line DataError
        listing the valid names when it is neither, or the prior is not class-conditional."""
        if self.condition != "class":
            raise DataError(
                f"--class needs a class-conditional prior; this one is {self.condition}"
            )
        return class_id(value, self.class_names, self.num_classes)

    def save_pretrained(self, folder: str | Path) -> Path:
        """The network in ``folder`` (with ``classes.json`` when it has class names), its
        tokenizers in ``tokenizer/`` and ``cond_tokenizer/``."""
        folder = Path(folder)
        self.net.save_pretrained(folder)
        save_class_names(folder, self.class_names or [])
        self.tokenizer.save_pretrained(folder / TOKENIZER_DIR)
        if self.cond_tokenizer is not None:
            self.cond_tokenizer.save_pretrained(folder / COND_TOKENIZER_DIR)
        return folder
