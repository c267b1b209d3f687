"""CLIP guidance (VQGAN+CLIP): text and image prompts steer a stage-1 tokenizer's latent grid;
it needs only the tokenizer, no prior network."""
