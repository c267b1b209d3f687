"""U-Net semantic segmentation: a per-pixel classifier of images into mask classes, trained with
pixel-wise cross-entropy (``twostage segment train | predict``)."""
