"""Stage 2: priors over the codebook indices of a stage-1 tokenizer."""

from stage2_prior.load import load_prior

__all__ = ["load_prior"]
