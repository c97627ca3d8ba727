"""Dataset loading, rasterisation and paired transforms.

Synthetic datasets are written to tmp_path with tiny images; the real shared set is only opened
(and a couple of samples decoded), so the whole file runs in a few seconds.
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from garbseg.core.paths import default_data_dir
from garbseg.data import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetError,
    EvalTransform,
    SegmentationDataset,
    TrainTransform,
    available_splits,
    class_pixel_counts,
    decode_rle_string,
    load_dataset,
    load_image,
    normalize_image,
    rasterize_polygons,
    rle_to_mask,
)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GARBSEG_DATA", REPO.parent / "shared" / "data" / "garbage-seg"))
real_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} not found")
GARBAGE_CLASSES = ["background", "biological", "cardboard", "glass", "metal", "paper", "plastic"]


# ----------------------------------------------------------------------------- helpers


def save_image(path: Path, width: int, height: int, color=(90, 120, 150)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def encode_rle(mask: np.ndarray) -> list[int]:
    """Reference encoder: column-major run lengths, starting with a (maybe empty) 0-run."""
    flat = mask.T.ravel().astype(np.uint8)
    runs, current, length = [], 0, 0
    for value in flat:
        if value == current:
            length += 1
        else:
            runs.append(length)
            current, length = value, 1
    runs.append(length)
    return runs


def compress_rle(runs: list[int]) -> str:
    """Reference COCO string encoder: deltas to run i-2 from the 4th run, 5-bit groups + 48."""
    chars = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr(48 + (group | 0x20 if more else group)))
    return "".join(chars)


def make_yolo_root(root: Path) -> Path:
    """Roboflow-style YOLOv8-seg export: '../x/images' paths and a 'valid' folder."""
    config = {"train": "../train/images", "val": "../valid/images", "nc": 2, "names": ["metal", "paper"]}
    write_text(root / "data.yaml", yaml.safe_dump(config))
    for split in ("train", "valid"):
        save_image(root / split / "images" / "a.png", 16, 8)
        # metal rectangle x 0.125..0.5, y 0.25..0.75 -> pixels x 2..8, y 2..6 (vertices inclusive),
        # then a paper rectangle x 0.375..0.75, y 0..0.5 -> x 6..12, y 0..4 drawn over it.
        write_text(
            root / split / "labels" / "a.txt",
            "0 0.125 0.25 0.5 0.25 0.5 0.75 0.125 0.75\n1 0.375 0 0.75 0 0.75 0.5 0.375 0.5\n",
        )
        save_image(root / split / "images" / "b.png", 16, 8)  # no label file: background only
    return root


def expected_yolo_mask() -> np.ndarray:
    mask = np.zeros((8, 16), np.uint8)
    mask[2:7, 2:9] = 1
    mask[0:5, 6:13] = 2
    return mask


# ----------------------------------------------------------------------------- real data


@real_data
def test_real_layout_classes_and_sizes():
    assert default_data_dir().resolve() == DATA.resolve()
    assert available_splits(DATA) == ["train", "val"]
    train, val = load_dataset(DATA, "train"), load_dataset(DATA, "val")
    assert (train.layout, val.layout) == ("yolo", "yolo")
    assert train.classes == val.classes == GARBAGE_CLASSES
    assert (len(train), len(val)) == (349, 60)
    assert val.name == "garbage-seg/val"
    assert load_dataset(DATA / "val").classes == GARBAGE_CLASSES  # a split folder directly
    with pytest.raises(DatasetError, match="train"):
        load_dataset(DATA)  # a root needs a split; the message lists them


@real_data
def test_real_label_rasterises_to_its_classes():
    val = load_dataset(DATA, "val")
    index = next(i for i, s in enumerate(val.samples) if s.label.stat().st_size > 0)
    txt_classes = {int(line.split()[0]) for line in val.samples[index].label.read_text().splitlines()}
    image, mask = val.load_raw(index)
    assert image.mode == "RGB" and image.size == (640, 640)
    assert mask.shape == (640, 640) and mask.dtype == np.uint8
    assert set(np.unique(mask)) - {0} == {c + 1 for c in txt_classes}


@real_data
def test_real_empty_label_is_all_background():
    train = load_dataset(DATA, "train")
    index = next(i for i, s in enumerate(train.samples) if s.label.stat().st_size == 0)
    assert not train.load_raw(index)[1].any()


@real_data
def test_real_sample_through_train_transform():
    val = load_dataset(DATA, "val", transform=TrainTransform())
    image, mask = val[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert mask.shape == (224, 224) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= set(range(7)) | {IGNORE_INDEX}


# ----------------------------------------------------------------------------- rasterisation


def test_rasterize_triangle_pixel_centres_on_or_inside():
    mask = rasterize_polygons([(3, np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]]))], 8, 8)
    ys, xs = np.mgrid[0:8, 0:8]
    assert (mask == np.where(xs + ys <= 8, 3, 0)).all()


def test_rasterize_snaps_vertices_to_containing_pixel_and_later_wins():
    square = np.array([[1.9, 1.2], [4.7, 1.2], [4.7, 3.99], [1.9, 3.99]])
    mask = rasterize_polygons([(1, square), (2, square + 2)], 7, 8)
    expected = np.zeros((7, 8), np.uint8)
    expected[1:4, 1:5] = 1  # floor: x 1..4, y 1..3
    expected[3:6, 3:7] = 2
    assert (mask == expected).all()


# ----------------------------------------------------------------------------- synthetic YOLO


def test_yolo_roboflow_style_root(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    assert available_splits(root) == ["train", "val"]
    ds = load_dataset(root, "val")  # "val" -> "../valid/images"
    assert ds.layout == "yolo" and ds.name == "toy/val"
    assert ds.classes == ["background", "metal", "paper"]
    assert [p.name for p in ds.image_paths] == ["a.png", "b.png"]
    assert (ds.load_raw(0)[1] == expected_yolo_mask()).all()
    assert not ds.load_raw(1)[1].any()
    assert class_pixel_counts(ds).tolist() == [256 - 35 - 35 + 9, 35 - 9, 35]


def test_yolo_split_folder_without_yaml_gets_generic_names(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    (root / "data.yaml").unlink()
    ds = load_dataset(root / "train")
    assert ds.classes == ["background", "class_0", "class_1"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.1 0.1 0.5 0.1 0.5", "odd number"),
        ("x 0.1 0.1 0.5 0.1 0.5 0.5", "non-numeric"),
        ("7 0.1 0.1 0.5 0.1 0.5 0.5", "out of range"),
        ("0 0.5 0.5 0.2 0.2", "YOLO box"),
        ("0 10 10 50 10 50 50", "normalised"),
    ],
)
def test_yolo_malformed_line_names_file_and_line(tmp_path, line, message):
    root = make_yolo_root(tmp_path / "toy")
    write_text(root / "valid" / "labels" / "a.txt", "1 0.1 0.1 0.5 0.1 0.5 0.5\n" + line + "\n")
    ds = load_dataset(root, "val")
    with pytest.raises(DatasetError, match=rf"a\.txt, line 2: .*{message}"):
        ds.load_raw(0)


def test_broken_image_raises_naming_the_file(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    write_text(root / "valid" / "images" / "0bad.jpg", "not a jpeg")
    ds = load_dataset(root, "val")
    with pytest.raises(DatasetError, match="0bad.jpg"):
        ds[0]


def test_skip_mode_warns_and_skips(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    write_text(root / "valid" / "images" / "0bad.jpg", "not a jpeg")
    ds = load_dataset(root, "val", on_error="skip")
    with pytest.warns(UserWarning, match="0bad.jpg"):
        image, mask = ds[0]  # the next good sample stands in
    assert (mask == expected_yolo_mask()).all()
    with pytest.warns(UserWarning, match="0bad.jpg"):
        problems = ds.validate()
    assert len(problems) == 1 and [p.name for p in ds.image_paths] == ["a.png", "b.png"]


def test_cache_decodes_once_and_shrinks(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    ds = load_dataset(root, "val", cache=True, cache_max_side=8)
    assert ds.validate() == []
    for path in ds.image_paths:
        path.unlink()  # served from memory from now on
    image, mask = ds.load_raw(0)
    assert image.size == (8, 4) and mask.shape == (4, 8)
    # Nearest samples pixel centres: output pixel i comes from input pixel 2i + 1.
    assert (mask == expected_yolo_mask()[1::2, 1::2]).all()


# ----------------------------------------------------------------------------- image + mask folders


def make_mask_root(root: Path) -> np.ndarray:
    mask = np.zeros((6, 10), np.uint8)
    mask[1:4, 2:5], mask[2:6, 6:9], mask[0, 0] = 1, 3, IGNORE_INDEX
    for split in ("train", "val"):
        save_image(root / split / "images" / "x.jpg", 10, 6)
        (root / split / "masks").mkdir(parents=True)
        Image.fromarray(mask).save(root / split / "masks" / "x.png")
    return mask


def test_mask_folders_infer_class_names(tmp_path):
    mask = make_mask_root(tmp_path / "m")
    assert available_splits(tmp_path / "m") == ["train", "val"]
    ds = load_dataset(tmp_path / "m", "val")
    assert ds.layout == "masks" and ds.name == "m/val"
    assert ds.classes == ["background", "class_1", "class_2", "class_3"]
    assert (ds.load_raw(0)[1] == mask).all()


def test_mask_folders_read_classes_txt_and_report_missing_masks(tmp_path):
    make_mask_root(tmp_path / "m")
    write_text(tmp_path / "m" / "classes.txt", "background\nmetal\npaper\nglass\n")
    save_image(tmp_path / "m" / "val" / "images" / "orphan.jpg", 10, 6)
    with pytest.raises(DatasetError, match="orphan.jpg"):
        load_dataset(tmp_path / "m", "val")
    with pytest.warns(UserWarning, match="orphan.jpg"):
        ds = load_dataset(tmp_path / "m", "val", on_error="skip")
    assert ds.classes == ["background", "metal", "paper", "glass"] and len(ds) == 1


# ----------------------------------------------------------------------------- COCO


def make_coco(folder: Path) -> dict:
    """Roboflow-like export with a polygon, a compressed and an uncompressed RLE image."""
    rng = np.random.default_rng(0)
    blob = rng.random((12, 10)) > 0.5  # many runs, so deltas go negative too
    stripe = np.zeros((12, 10), bool)
    stripe[:, 3:6] = True
    for name in ("p.jpg", "c.png", "u.png", "empty.png"):
        save_image(folder / name, 10, 12)
    coco = {
        "images": [
            {"id": i, "file_name": n, "width": 10, "height": 12}
            for i, n in enumerate(["p.jpg", "c.png", "u.png", "empty.png"])
        ],
        "categories": [
            {"id": 0, "name": "garbage", "supercategory": "none"},
            {"id": 1, "name": "metal", "supercategory": "garbage"},
            {"id": 2, "name": "paper", "supercategory": "garbage"},
        ],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4], [6, 7, 9, 7, 9, 10]]},
            {"id": 2, "image_id": 0, "category_id": 2, "iscrowd": 0,
             "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]},  # later: wins where they overlap
            {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [12, 10], "counts": compress_rle(encode_rle(blob))}},
            {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [12, 10], "counts": encode_rle(stripe)}},
        ],
    }
    write_text(folder / "_annotations.coco.json", json.dumps(coco))
    polygon = np.zeros((12, 10), np.uint8)
    polygon[0:5, 0:5] = 1
    ys, xs = np.mgrid[0:12, 0:10]
    # triangle (6,7) (9,7) (9,10): x <= 9, y >= 7 and on or above the 45-degree edge y - 7 <= x - 6
    polygon[(xs <= 9) & (ys >= 7) & (ys - 7 <= xs - 6)] = 1
    polygon[2:7, 2:7] = 2
    return {"p.jpg": polygon, "c.png": blob * np.uint8(2), "u.png": stripe * np.uint8(1),
            "empty.png": np.zeros((12, 10), np.uint8)}


def test_coco_polygon_and_both_rle_forms(tmp_path):
    expected = make_coco(tmp_path / "coco" / "valid")
    ds = load_dataset(tmp_path / "coco", "val")  # "val" -> the Roboflow "valid" folder
    assert ds.layout == "coco" and ds.name == "coco/valid"
    assert ds.classes == ["background", "metal", "paper"]  # unused super-category dropped
    for i, path in enumerate(ds.image_paths):
        assert (ds.load_raw(i)[1] == expected[path.name]).all(), path.name
    direct = load_dataset(tmp_path / "coco" / "valid" / "_annotations.coco.json")
    assert len(direct) == 4 and direct.classes == ds.classes


def test_compressed_rle_round_trip_and_errors():
    runs = [5, 1, 40, 2, 0, 7, 100, 3, 1, 33]
    assert decode_rle_string(compress_rle(runs)) == runs
    with pytest.raises(ValueError):
        rle_to_mask([3, 4], 3, 3)  # runs cover 7 of 9 pixels


# ----------------------------------------------------------------------------- detection errors


def test_unknown_layout_and_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="data.yaml"):
        load_dataset(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="labels"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_missing_split_lists_available(tmp_path):
    root = make_yolo_root(tmp_path / "toy")
    with pytest.raises(DatasetError, match=r"\['train', 'val'\]"):
        load_dataset(root, "test")


# ----------------------------------------------------------------------------- images


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (20, 10), (200, 10, 10)).save(path, exif=exif)
    assert Image.open(path).size == (20, 10)
    assert load_image(path).size == (10, 20)
    assert load_image(path.read_bytes()).size == (10, 20)
    with open(path, "rb") as handle:
        assert load_image(handle).size == (10, 20)


def test_any_mode_becomes_rgb():
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    for img, pixel in [
        (sixteen, (255, 255, 255)),
        (clear, (255, 255, 255)),  # transparent -> white background
        (Image.new("L", (4, 4), 7), (7, 7, 7)),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("P", (4, 4), 0), (0, 0, 0)),
    ]:
        buffer = io.BytesIO()
        img.save(buffer, format="TIFF" if img.mode == "CMYK" else "PNG")
        out = load_image(buffer.getvalue())
        assert out.mode == "RGB" and out.getpixel((1, 1)) == pixel, img.mode


def test_undecodable_bytes_raise_dataset_error():
    with pytest.raises(DatasetError, match="cannot decode"):
        load_image(b"definitely not an image")


# ----------------------------------------------------------------------------- transforms

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float32)


def colour_coded_pair(size: int = 64, block: int = 8):
    """An image whose colour tells its class, checkerboard-style, and the matching mask."""
    ys, xs = np.mgrid[0:size, 0:size]
    mask = ((ys // block) + 2 * (xs // block)) % 4
    image = Image.fromarray(PALETTE[mask].astype(np.uint8))
    return image, mask.astype(np.uint8)


def decode_colours(image: torch.Tensor) -> np.ndarray:
    """Nearest palette class of each pixel of a normalised image."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = ((image * std + mean) * 255).permute(1, 2, 0).numpy()
    return np.linalg.norm(rgb[:, :, None, :] - PALETTE, axis=-1).argmin(-1)


def away_from_ignore(mask: np.ndarray) -> np.ndarray:
    """Labelled pixels with no ignore pixel in their 3x3 neighbourhood.

    Next to the area the affine uncovered, the bilinear image blends with the black fill, so its
    colour says nothing about the class there.
    """
    padded = np.pad(mask == IGNORE_INDEX, 1)
    near = np.zeros(mask.shape, bool)
    for dy in range(3):
        for dx in range(3):
            near |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return ~near


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_train_transform_keeps_image_and_mask_aligned(seed):
    image, mask = colour_coded_pair()
    transform = TrainTransform(size=48, resize=64, hflip=0.5, vflip=0.5, rotation=30,
                               scale=(0.7, 1.3), translate=0.2, color_jitter=0.0)
    torch.manual_seed(seed)
    out_image, out_mask = transform(image, mask)
    labels, colours = out_mask.numpy(), decode_colours(out_image)
    keep = away_from_ignore(labels)
    assert keep.mean() > 0.3
    # Only class borders may disagree (bilinear blends of two colours): measured >= 0.998.
    assert (colours[keep] == labels[keep]).mean() > 0.99
    # The check has teeth: the same mask shifted by one pixel agrees on only ~0.8-0.9.
    shifted = np.roll(labels, 1, axis=1)
    keep = keep & (shifted != IGNORE_INDEX)
    assert (colours[keep] == shifted[keep]).mean() < 0.97


def test_train_transform_is_reproducible_and_fills_ignore():
    image, mask = colour_coded_pair()
    transform = TrainTransform(size=48, resize=64, scale=(0.5, 0.5), rotation=0, translate=0)
    torch.manual_seed(5)
    first = transform(image, mask)
    torch.manual_seed(5)
    second = transform(image, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert (first[1] == IGNORE_INDEX).any()  # shrunk by half: the border has no labels
    with pytest.raises(ValueError):
        TrainTransform(size=300, resize=256)


def test_eval_transform_and_normalize_image():
    image, mask = colour_coded_pair()
    tensor, labels = EvalTransform(size=32)(image, mask)
    assert tensor.shape == (3, 32, 32) and labels.shape == (32, 32) and labels.dtype == torch.int64
    assert (labels.numpy() == mask[::2, ::2]).all()
    assert (decode_colours(tensor) == labels.numpy()).all()
    grey = Image.new("RGB", (10, 10), tuple(round(m * 255) for m in IMAGENET_MEAN))
    assert normalize_image(grey, size=(4, 6)).shape == (3, 4, 6)
    assert normalize_image(grey, size=None).abs().max() < 0.01


def test_dataset_without_transform_returns_pil_and_numpy(tmp_path):
    ds = load_dataset(make_yolo_root(tmp_path / "toy"), "train")
    image, mask = ds[0]
    assert isinstance(ds, SegmentationDataset)
    assert isinstance(image, Image.Image) and isinstance(mask, np.ndarray)


def test_image_paths_can_be_narrowed(tmp_path):
    ds = load_dataset(make_yolo_root(tmp_path / "toy"), "train")
    ds.image_paths = ds.image_paths[1:]
    assert len(ds) == 1 and ds.image_paths[0].name == "b.png" and not ds[0][1].any()
    with pytest.raises(ValueError, match="not images"):
        ds.image_paths = [tmp_path / "elsewhere.png"]


def test_load_image_accepts_decoded_pil_images():
    """Already-open images (e.g. from an upload widget) get the same EXIF and mode handling."""
    rgba = Image.new("RGBA", (30, 20), (255, 0, 0, 128))
    assert load_image(rgba).mode == "RGB" and load_image(rgba).getpixel((0, 0)) == (255, 127, 127)
    exif = rgba.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    rgba.convert("RGB").save(buf, "JPEG", exif=exif)
    opened = Image.open(io.BytesIO(buf.getvalue()))
    assert load_image(opened).size == (20, 30)


def test_stratified_sample_shows_every_class_and_is_seeded():
    from garbseg.core.paths import embedded_data_dir
    from garbseg.data import classes_per_image, stratified_sample

    ds = load_dataset(embedded_data_dir(), "val")
    present = classes_per_image(ds)
    every = set().union(*present)
    assert every == {1, 2, 3, 4, 5, 6}  # the embedded sample holds all six garbage classes
    for count in (2, 10, 25):
        picked = stratified_sample(ds, count, seed=1)
        assert set().union(*(present[i] for i in picked)) == every
        assert len(picked) == max(count, 6) and picked == sorted(set(picked))
        assert stratified_sample(ds, count, seed=1) == picked
    # the first ten photos of the (name-sorted) split are all one class: what a naive limit would use
    assert set().union(*present[:10]) == {1}


def test_default_data_falls_back_to_the_embedded_sample(monkeypatch, tmp_path):
    from garbseg.core import paths

    monkeypatch.delenv("GARBSEG_DATA", raising=False)
    monkeypatch.setattr(paths, "shared_data_dir", lambda: tmp_path / "no-shared")
    assert paths.default_data_dir() == paths.embedded_data_dir()
    assert len(load_dataset(paths.default_data_dir(), "val")) == 60
    monkeypatch.setenv("GARBSEG_DATA", str(tmp_path))
    assert paths.default_data_dir() == tmp_path
