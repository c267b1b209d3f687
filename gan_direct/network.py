"""The bases of the registered pixel-GAN networks: each is built from the fields of its spec
dataclass, and a generator states what it can do beyond ``forward(z, labels)`` as class
attributes (instead of callers probing it for methods)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from shared.pretrained import Pretrained


class GANNetwork(Pretrained):
    """A network built from ``spec_class(**kwargs)``: the spec is kept as ``self.spec`` and, as a
    dict, as the exported ``self.config``. ``grows``: it has ``grow(stage, alpha)`` (ProGAN's
    progressive growing)."""

    spec_class: ClassVar[type]
    grows: ClassVar[bool] = False

    def __init__(self, **kwargs: Any):
        super().__init__()
        self.spec = self.spec_class(**kwargs)
        self.config = dataclasses.asdict(self.spec)


class GANGenerator(GANNetwork):
    """``forward(z (B, z_dim), labels (B,) | None) -> samples (B, *data shape)``; ``labels`` are
    given when ``num_classes`` > 0 and ``class_names`` (id = position) are set by the loader
    when the model stores them.

    What a generator can do beyond that:

    - ``points``: its samples are 2-D points, not images;
    - ``psi_truncation``: ``forward(..., psi=)`` truncates towards the mean style of its mapping
      network (StyleGAN);
    - ``attention_grids``: ``forward(z, labels, return_maps=True)`` also returns one additive
      attention map per grid side listed (AdatGAN); empty when it has none.
    """

    z_dim: int
    num_classes: int = 0
    class_names: list[str] | None = None
    points: bool = False
    psi_truncation: ClassVar[bool] = False
    attention_grids: ClassVar[tuple[int, ...]] = ()
