"""Segmentation datasets and paired image/mask transforms.

Three on-disk layouts are read into one `SegmentationDataset`:

* ``yolo``  - YOLOv8-seg: ``data.yaml`` + ``<split>/images`` + ``<split>/labels/*.txt`` with lines
  ``class x1 y1 x2 y2 ...`` (coordinates normalised to [0, 1]). Data class id ``k`` becomes mask
  value ``k + 1``. A missing or empty label file means "background only", as in Ultralytics.
* ``masks`` - ``images/`` + ``masks/`` folders; masks are PNGs with the image's stem whose pixel
  values are class indices (0 = background, 255 = ignore).
* ``coco``  - a COCO JSON file (or a folder holding ``annotations.json`` / ``_annotations.coco.json``,
  the Roboflow export) with polygon or RLE segmentations.

Every sample becomes an RGB ``PIL.Image`` and a ``uint8`` mask of class indices where
``classes[0] == "background"`` and ``IGNORE_INDEX`` (255) marks pixels no loss or metric counts.
How polygons become pixels (YOLO and COCO alike) is written in `garbseg.data.rasterize`.

One module per job; every public name is importable from ``garbseg.data`` itself:

* ``constants``    - ignore index, ImageNet mean/std, file suffixes, `DatasetError`
* ``images``       - `load_image` (EXIF orientation, any mode to RGB), `list_images` of a folder (recursive)
* ``export``       - predicted masks written as COCO (RLE), YOLOv8-seg (polygons), CVAT mask labels
* ``rasterize``    - polygons and COCO RLE to masks
* ``dataset``      - `Sample`, `SegmentationDataset`, `class_pixel_counts`, `require_classes`, the on_error policy
* ``yolo``         - data.yaml, label files and masks of the YOLOv8-seg layout
* ``mask_folders`` - the image + mask folder layout and its class files
* ``coco``         - the COCO layout
* ``layout``       - `load_dataset`, `available_splits`, `preferred_split`: which layout a path holds, which split
* ``sampling``     - `stratified_sample`: a few images that still show every class
* ``transforms``   - `normalize_image`, `EvalTransform`, `TrainTransform`
"""

from .constants import (
    CLASS_FILE_NAMES,
    COCO_FILE_NAMES,
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MASK_SUFFIXES,
    MAX_ERRORS_SHOWN,
    SPLIT_ALIASES,
    DatasetError,
)
from .dataset import MaskReader, Sample, SegmentationDataset, class_pixel_counts, require_classes
from .images import EXIF_ORIENTATION, list_images, load_image
from .layout import available_splits, load_dataset, preferred_split
from .sampling import classes_per_image, stratified_sample, subset
from .rasterize import decode_rle_string, rasterize_polygons, rle_to_mask
from .transforms import EvalTransform, TrainTransform, normalize_image
from .yolo import parse_yolo_label, yolo_label_path

__all__ = [
    "CLASS_FILE_NAMES",
    "COCO_FILE_NAMES",
    "EXIF_ORIENTATION",
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MASK_SUFFIXES",
    "MAX_ERRORS_SHOWN",
    "SPLIT_ALIASES",
    "DatasetError",
    "EvalTransform",
    "MaskReader",
    "Sample",
    "SegmentationDataset",
    "TrainTransform",
    "available_splits",
    "classes_per_image",
    "stratified_sample",
    "subset",
    "class_pixel_counts",
    "require_classes",
    "decode_rle_string",
    "list_images",
    "load_dataset",
    "preferred_split",
    "load_image",
    "normalize_image",
    "parse_yolo_label",
    "rasterize_polygons",
    "rle_to_mask",
    "yolo_label_path",
]
