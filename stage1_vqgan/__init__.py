"""Stage 1: the VQGAN image tokenizer."""

from stage1_vqgan.load import load_tokenizer
from stage1_vqgan.model import VQModel

__all__ = ["VQModel", "load_tokenizer"]
