"""Label export: every exported set loads back through garbseg's own readers to the predicted masks
(exact for COCO RLE and PNG masks, IoU >= 0.98 for YOLO polygons), and predict keeps same-named photos apart."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from garbseg.data import decode_rle_string, load_dataset, parse_yolo_label, rasterize_polygons, rle_to_mask
from garbseg.cli import main
from garbseg.data.export import (ExportError, encode_rle_string, mask_to_polygons, mask_to_rle, mask_to_runs,
                                 parse_formats, read_cvat_zip, voc_colours, yolo_label_text)
from garbseg.data.mask_folders import _decode_mask
from garbseg.inference import Timing
from garbseg.present.batch import bundle_zip, plan_images, predict_images

from test_cli import run_cli

# pycocotools.mask.encode(np.asfortranarray(m.astype(np.uint8)))["counts"] of these masks, recorded
# once with pycocotools 2.0.11 (pip-installed for that check only; garbseg never needs it). The
# encoder also gave pycocotools' strings for 300 random masks in that check.
def _frame():
    mask = np.zeros((40, 50), bool)
    mask[3:37, 5:45] = True
    mask[10:20, 10:40] = False
    return mask


PYCOCOTOOLS = {
    "corner": (np.pad(np.ones((2, 2), bool), ((1, 0), (2, 0))), "7210"),
    "diagonal": (np.eye(3, dtype=bool), "013000"),
    "frame": (_frame(), "[6R1600000000UO4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:"
                        "LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:LF4:La000000000U6"),
}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


@pytest.mark.parametrize("name", PYCOCOTOOLS)
def test_rle_strings_are_pycocotools_own(name):
    mask, expected = PYCOCOTOOLS[name]
    assert mask_to_rle(mask) == {"size": list(mask.shape), "counts": expected}


def test_rle_encoder_round_trips_through_garbseg_decoder():
    rng = np.random.default_rng(0)
    masks = [np.zeros((5, 7), bool), np.ones((5, 7), bool), np.ones((1, 1), bool)]
    masks += [rng.random(rng.integers(1, 50, 2)) < p for p in rng.random(60)]
    big = np.zeros((480, 640), bool)
    big[100:400, 37:600] = True  # runs longer than several 5-bit groups, and negative differences
    masks.append(big)
    for mask in masks:
        runs = mask_to_runs(mask)
        assert decode_rle_string(encode_rle_string(runs)) == runs
        assert np.array_equal(rle_to_mask(decode_rle_string(mask_to_rle(mask)["counts"]), *mask.shape), mask)


def _blobs(height=64, width=80) -> np.ndarray:
    """Two classes: overlapping discs, a ring around a disc of the other class, a lone pixel."""
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, (20, 20), 14, 1, -1)
    cv2.circle(mask, (30, 28), 9, 2, -1)
    cv2.circle(mask, (60, 40), 15, 2, -1)
    cv2.circle(mask, (60, 40), 6, 1, -1)
    cv2.fillPoly(mask, [np.array([[5, 50], [30, 45], [20, 62]])], 1)
    mask[2, 70] = 1
    return mask


def test_yolo_label_lines_draw_back_to_the_mask(tmp_path):
    mask = _blobs()
    (tmp_path / "x.txt").write_text(yolo_label_text(mask))
    objects = parse_yolo_label(tmp_path / "x.txt", 2)
    assert len(objects) == len(mask_to_polygons(mask)) >= 5
    height, width = mask.shape
    back = rasterize_polygons([(cls + 1, pts * (width, height)) for cls, pts in objects], height, width)
    for value in (1, 2):
        assert _iou(back == value, mask == value) >= 0.98
    assert back[2, 70] == 1  # a one-pixel region survives as a degenerate polygon


def _colour_predictor():
    """Stands in for a network: the tiny set's colours are its classes, so masks have real shapes."""
    class ByColour:
        classes = ["background", "red", "blue"]
        last_timing = Timing(1.0, 2.0, 0.5)

        def predict(self, image):
            rgb = np.asarray(image).astype(int)
            mask = np.zeros(rgb.shape[:2], np.uint8)
            mask[(rgb[..., 0] > 150) & (rgb[..., 2] < 100)] = 1
            mask[(rgb[..., 2] > 150) & (rgb[..., 0] < 100)] = 2
            return mask

    return ByColour()


def test_every_export_loads_back_to_the_predicted_masks(tiny_data, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(tiny_data / "val" / "images", photos / "val")
    shutil.copytree(tiny_data / "train" / "images", photos / "train")
    # one more photo with the blob mask painted in colour: curved shapes for the polygons
    blobs = _blobs()
    painted = np.full((*blobs.shape, 3), 128, np.uint8)
    painted[blobs == 1], painted[blobs == 2] = (220, 30, 30), (30, 30, 220)
    Image.fromarray(painted).save(photos / "blobs.png")
    predictor = _colour_predictor()
    out = tmp_path / "out"
    plan = plan_images([photos])
    result = predict_images(predictor, plan, out, export=["coco", "yolo", "cvat"], progress=False)
    assert result.failures == 0 and len(result.rows) == len(plan) == 13
    predicted = {item.key: predictor.predict(Image.open(item.path).convert("RGB")) for item in plan}
    assert sum(m.any() for m in predicted.values()) == 13

    # the mask PNGs: exact
    for key, mask in predicted.items():
        assert np.array_equal(_decode_mask(out / f"{key}_mask.png"), mask)
    # COCO RLE: exact, through the COCO reader
    coco = load_dataset(out / "coco.json")
    assert coco.classes == predictor.classes and len(coco) == 13
    for i, path in enumerate(coco.image_paths):
        key = path.relative_to(out / "images").with_suffix("").as_posix()
        assert np.array_equal(coco.load_raw(i)[1], predicted[key]), key
    # YOLOv8-seg polygons: IoU >= 0.98 per class, through the YOLO reader (data.yaml)
    yolo = load_dataset(out, "val")
    assert yolo.classes == predictor.classes and len(yolo) == 13
    for i, path in enumerate(yolo.image_paths):
        key = path.relative_to(out / "images").with_suffix("").as_posix()
        back, mask = yolo.load_raw(i)[1], predicted[key]
        for value in (1, 2):
            assert _iou(back == value, mask == value) >= 0.98, (key, value)
    # CVAT mask 1.1: labelmap.txt and colour PNGs, exact
    classes, masks = read_cvat_zip(out / "cvat.zip")
    assert classes == predictor.classes and masks.keys() == predicted.keys()
    for key, mask in predicted.items():
        assert np.array_equal(masks[key], mask)
    with zipfile.ZipFile(out / "cvat.zip") as archive:
        assert "ImageSets/Segmentation/default.txt" in archive.namelist()
        assert archive.read("labelmap.txt").decode().splitlines()[2] == "red:%d,%d,%d::" % tuple(voc_colours(3)[1])
    # the summary: one row per photo, classes found and pixel shares
    rows = list(csv.DictReader((out / "summary.csv").open()))
    by_mask = {row["mask"]: row for row in rows}
    blob_row = by_mask["blobs_mask.png"]
    assert blob_row["classes_found"] == "red;blue"
    assert float(blob_row["share_blue"]) == pytest.approx((blobs == 2).mean(), abs=1e-6)


def test_same_names_in_different_folders_stay_apart(tmp_path):
    for folder, suffix in (("a", ".png"), ("b", ".png"), ("b", ".jpg")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / folder / f"photo{suffix}")
    plan = plan_images([tmp_path / "a" / "photo.png", tmp_path / "b"])
    assert [item.key for item in plan] == ["a/photo", "b/photo", "b/photo_png"]
    assert [item.key for item in plan_images([tmp_path / "a" / "photo.png"])] == ["photo"]
    with pytest.raises(ExportError, match="unknown export format vott"):
        parse_formats("coco,vott")


def test_bundle_zip_holds_masks_and_labels_per_model():
    image = Image.fromarray(np.full((64, 80, 3), 128, np.uint8))
    mask = _blobs()
    classes = ["background", "red", "blue"]
    data = bundle_zip([("x.jpg", image, "m1", classes, mask), ("x.png", image, "m1", classes, mask),
                       ("x.jpg", image, "m2", classes[:2], (mask == 1).astype(np.uint8))])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        assert {"m1/x_mask.png", "m1/x_2_mask.png", "m1/coco.json", "m1/data.yaml", "m1/cvat.zip",
                "m1/labels/x.txt", "m1/summary.csv"} <= names
        coco = json.loads(archive.read("m1/coco.json"))
        assert len(coco["images"]) == 2 and {a["category_id"] for a in coco["annotations"]} == {1, 2}
        classes, masks = read_cvat_zip(archive.read("m1/cvat.zip"))
        assert np.array_equal(masks["x_2"], mask)
        assert read_cvat_zip(archive.read("m2/cvat.zip"))[0] == classes[:2]


def test_cli_predicts_a_folder_with_exports_and_evaluates_them_back(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "pred"
    result = run_cli("predict", "--checkpoint", tiny_run, tiny_data / "val" / "images", "--out", out,
                     "--runtime", "torch", "--export", "coco,yolo,cvat")
    assert "4 of 4 images segmented" in result.stdout
    assert {p.name for p in out.iterdir()} >= {"summary.csv", "coco.json", "data.yaml", "cvat.zip", "images",
                                               "labels", "img0_mask.png"}
    # the model's own predictions, read back as labels, score perfectly
    scores = json.loads(run_cli("eval", "--checkpoint", tiny_run, "--data", out / "coco.json", "--json").stdout)
    assert scores["num_images"] == 4 and scores["pixel_accuracy"] == 1.0 and scores["miou"] == 1.0


def test_cli_refuses_an_unknown_export_format_in_one_line(tiny_run, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tiny_run), str(tmp_path), "--out", str(tmp_path / "o"),
                 "--export", "coco,vott"]) == 2
    assert capsys.readouterr().err == "error: unknown export format vott; choose from coco, yolo, cvat\n"
