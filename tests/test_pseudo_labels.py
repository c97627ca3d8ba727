"""Pseudo-labels for folder-per-class photos: thresholds, the written set, and the check on labelled photos."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from garbseg.data import load_dataset
from garbseg.inference import Predictor
from garbseg.models.model_card import data_seen
from garbseg.train.mixing import MixedTrainSet
from garbseg.train.pseudo_labels import (PseudoLabelError, check_on_labelled, folder_class_photos, make_pseudo_labels,
                                         pseudo_mask)


def test_pseudo_mask_keeps_sure_pixels_and_ignores_the_rest():
    background_probability = np.array([[0.1, 0.29, 0.5], [0.69, 0.71, 0.95]])
    probs = np.stack([background_probability, 1 - background_probability])
    mask = pseudo_mask(probs, 4, foreground=0.7, background=0.3)
    # foreground = 1 - p(background): 0.9, 0.71 -> class; 0.5, 0.31, 0.29 -> ignored / background
    assert mask.tolist() == [[4, 4, 255], [255, 0, 0]]
    with pytest.raises(PseudoLabelError):
        pseudo_mask(probs, 4, foreground=0.3, background=0.7)


@pytest.fixture
def class_folders(tiny_data, tmp_path):
    """The tiny set's val photos sorted into folders named after their class, plus one unknown folder."""
    dataset = load_dataset(tiny_data, "val")
    root = tmp_path / "by-class"
    for i, path in enumerate(dataset.image_paths):
        _, mask = dataset.load_raw(i)
        name = dataset.classes[int(np.bincount(mask.ravel(), minlength=3)[1:].argmax()) + 1]
        (root / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / name / path.name)
    (root / "trash").mkdir()
    Image.new("RGB", (8, 8)).save(root / "trash" / "x.png")
    return root


def test_pseudo_labelled_set_loads_back_and_continues(tiny_run, tiny_data, class_folders, tmp_path):
    teacher = Predictor.from_checkpoint(tiny_run)
    photos = folder_class_photos(class_folders, teacher.classes)
    assert {name for _, name in photos} <= {"red", "blue"} and len(photos) == 4  # "trash" has no class here
    out = tmp_path / "pseudo"
    report = make_pseudo_labels([teacher], photos, out)
    dataset = load_dataset(out, "train")
    assert dataset.classes == teacher.classes and len(dataset) == 4
    for i, (photo, name) in enumerate(sorted(photos, key=lambda p: (p[1], p[0].name))):
        _, mask = dataset.load_raw(i)
        assert set(np.unique(mask)) <= {0, teacher.classes.index(name), 255}
    assert sum(report["photos"].values()) == 4
    total = report["background_pixels"] + report["ignored_pixels"] + sum(report["labelled_pixels"].values())
    assert total == 4 * 64 * 64
    assert (out / "train" / "images" / photos[0][1] / photos[0][0].name).is_symlink()  # never a copy
    # a second run keeps the masks it finds and reports the same counts
    assert make_pseudo_labels([teacher], photos, out) == report
    # a run that trains on them records whose labels they are; a hand-labelled set names no teacher
    mixed = MixedTrainSet(load_dataset(tiny_data, "train"), dataset)
    assert mixed.describe()["extra_labelled_by"] == [teacher.loaded.name]
    assert "extra_labelled_by" not in MixedTrainSet(dataset, load_dataset(tiny_data, "train")).describe()
    assert f"labelled by {teacher.loaded.name})" in data_seen(mixed.describe(), {}, [])


def test_check_on_labelled_photos_scores_what_is_kept(tiny_run, tiny_data):
    teacher = Predictor.from_checkpoint(tiny_run)
    # Thresholds that decide almost every pixel: the tiny two-epoch teacher is rarely sure.
    result = check_on_labelled([teacher], load_dataset(tiny_data, "val"), foreground=0.5, background=0.49)
    assert result["images"] == 4 and result["kept_share"] > 0.9
    assert 0.0 <= result["kept_miou"] <= 1.0 and 0.0 <= result["ensemble_miou"] <= 1.0
    strict = check_on_labelled([teacher], load_dataset(tiny_data, "val"), foreground=0.99, background=0.01)
    assert strict["kept_share"] < result["kept_share"]  # stricter thresholds keep fewer pixels
