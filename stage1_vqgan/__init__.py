"""Stage 1: the VQGAN image tokenizer (and the tokenizer of segmentation maps)."""

from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation import decode_mask, encode_mask

__all__ = ["VQModel", "decode_mask", "encode_mask", "load_tokenizer"]
