"""Stage 1: the VQGAN image tokenizer (and the tokenizer of segmentation maps)."""

from stage1_vqgan.config import ModelConfig
from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation import (
    colorize_mask,
    confusion_matrix,
    decode_mask,
    encode_mask,
    segmentation_scores,
)
from stage1_vqgan.taming import (
    SUPPORTED_TARGETS,
    read_taming_model,
    taming_config_path,
    taming_state_dicts,
    taming_vqgan_config,
)

__all__ = [
    "SUPPORTED_TARGETS",
    "ModelConfig",
    "VQModel",
    "colorize_mask",
    "confusion_matrix",
    "decode_mask",
    "encode_mask",
    "load_tokenizer",
    "read_taming_model",
    "segmentation_scores",
    "taming_config_path",
    "taming_state_dicts",
    "taming_vqgan_config",
]
