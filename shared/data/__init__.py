"""Datasets: folders of images (optionally with class sub-folders and segmentation masks) and
the builtins ``builtin:shapes``, ``builtin:fashion-mnist``, ``builtin:photos`` and the 2-D
points ``builtin:swissroll`` / ``builtin:gaussians``; the data summary of a run and the class
names a model keeps.

Items are dicts with "image" float (C,H,W) in [-1,1], "label" long scalar (-1 if unlabeled) and,
for datasets with masks, "mask" long (H,W) (points: "points" (2,)). Augmentation is a pure
function of (seed, epoch, index), so it does not depend on DataLoader workers.
"""

from shared.data.classes import class_id, load_class_names, save_class_names
from shared.data.dataset import ImageDataset
from shared.data.decode import list_images, load_image, read_mask
from shared.data.errors import DataError
from shared.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    FashionMNISTDataset,
)
from shared.data.photos import PHOTO_NAMES, load_photo
from shared.data.points import POINT_SOURCES
from shared.data.shapes import ShapesDataset, render_shapes
from shared.data.sources import build_dataset
from shared.data.summary import DATA_FILE, data_summary, format_data_summary

__all__ = [
    "DATA_FILE",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "PHOTO_NAMES",
    "POINT_SOURCES",
    "DataError",
    "FashionMNISTDataset",
    "ImageDataset",
    "ShapesDataset",
    "build_dataset",
    "class_id",
    "data_summary",
    "format_data_summary",
    "list_images",
    "load_class_names",
    "load_image",
    "load_photo",
    "read_mask",
    "render_shapes",
    "save_class_names",
]
