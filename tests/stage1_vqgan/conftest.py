import dataclasses

import pytest

from shared.config import build_config, read_preset
from stage1_vqgan.config import VQGANConfig


@pytest.fixture(scope="session")
def tiny_model_kwargs() -> dict:
    """The shipped vqgan-tiny architecture with a 64 x 16 codebook (32x32 images -> 8x8 codes)."""
    cfg = build_config(
        VQGANConfig,
        read_preset("vqgan-tiny", "stage1_vqgan"),
        overrides=["model.n_embed=64", "model.embed_dim=16"],
    )
    return dataclasses.asdict(cfg.model)
