"""The values masks and normalisation share, the file names the readers look for, and the one error
they raise. (Where the data lives by default: ``garbseg.core.paths.default_data_dir``.)"""

from __future__ import annotations

from ..core.errors import GarbsegError

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG would blur class ids
COCO_FILE_NAMES = ("annotations.json", "_annotations.coco.json")
CLASS_FILE_NAMES = ("classes.txt", "classes.json")
SPLIT_ALIASES = {
    "val": ("val", "valid", "validation"),
    "valid": ("valid", "val", "validation"),
    "validation": ("validation", "val", "valid"),
}
MAX_ERRORS_SHOWN = 5


class DatasetError(GarbsegError, ValueError):
    """A dataset file or folder that cannot be used; the message names it."""
