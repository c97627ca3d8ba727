"""Confusion-matrix metrics checked against numbers worked out by hand."""

import numpy as np
import pytest
import torch

from garbseg.data import IGNORE_INDEX as DATA_IGNORE_INDEX
from garbseg.metrics import IGNORE_INDEX, ConfusionMatrix, compute_metrics

NAMES = ["background", "metal", "paper"]

# Case A: class 2 ("paper") is absent from truth and prediction; two pixels are ignored.
#   truth 0 predicted as [0, 0, 0, 1] -> row 0 = [3, 1, 0]
#   truth 1 predicted as [1, 1, 0, 1] -> row 1 = [1, 3, 0]
#   the predictions 2 and 0 under the two 255 targets must not count anywhere.
TARGET_A = np.array([0, 0, 0, 0, 1, 1, 1, 1, 255, 255])
PRED_A = np.array([0, 0, 0, 1, 1, 1, 0, 1, 2, 0])
MATRIX_A = [[3, 1, 0], [1, 3, 0], [0, 0, 0]]

# Case B: class 2 is in the truth but never predicted.
#   truth 0 -> [0, 1]  row 0 = [1, 1, 0]
#   truth 1 -> [1, 1]  row 1 = [0, 2, 0]
#   truth 2 -> [1, 0]  row 2 = [1, 1, 0]
#   TP = [1, 2, 0], true pixels = [2, 2, 2], predicted pixels = [2, 4, 0]
#   IoU: 1/(2+2-1) = 1/3, 2/(2+4-2) = 1/2, 0/(2+0-0) = 0     -> mIoU = (1/3 + 1/2 + 0)/3 = 5/18
#   precision: 1/2, 2/4, undefined; recall: 1/2, 2/2, 0/2
#   weighted precision = (2*1/2 + 2*1/2 + 2*0)/6 = 1/3; weighted recall = (1 + 2 + 0)/6 = 1/2
#   macro precision = (1/2 + 1/2)/2 = 1/2; macro recall = (1/2 + 1 + 0)/3 = 1/2
TARGET_B = np.array([0, 0, 1, 1, 2, 2])
PRED_B = np.array([0, 1, 1, 1, 1, 0])
MATRIX_B = [[1, 1, 0], [0, 2, 0], [1, 1, 0]]


def test_ignore_index_matches_data_module():
    assert IGNORE_INDEX == DATA_IGNORE_INDEX == 255


def test_case_a_class_absent_from_both_is_left_out_of_miou():
    cm = ConfusionMatrix(3).update(PRED_A, TARGET_A)
    assert cm.matrix.tolist() == MATRIX_A
    m = cm.compute(NAMES)
    # IoU 0 and 1: 3 / (4 + 4 - 3) = 0.6; paper has none.
    assert m["per_class_iou"] == pytest.approx({"background": 0.6, "metal": 0.6, "paper": None})
    assert m["miou"] == pytest.approx(0.6)  # not 0.4 (paper as 0) nor 0.733 (paper as 1)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    assert m["per_class_precision"]["paper"] is None
    assert m["per_class_recall"]["paper"] is None
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["num_pixels"] == 8
    assert m["confusion_matrix"] == MATRIX_A


def test_case_b_class_never_predicted():
    m = compute_metrics(np.array(MATRIX_B), NAMES)
    assert ConfusionMatrix(3).update(PRED_B, TARGET_B).matrix.tolist() == MATRIX_B
    assert m["per_class_iou"] == pytest.approx({"background": 1 / 3, "metal": 0.5, "paper": 0.0})
    assert m["miou"] == pytest.approx(5 / 18)
    assert m["per_class_precision"] == pytest.approx({"background": 0.5, "metal": 0.5, "paper": None})
    assert m["per_class_recall"] == pytest.approx({"background": 0.5, "metal": 1.0, "paper": 0.0})
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(0.5) == m["pixel_accuracy"]
    assert m["macro_precision"] == pytest.approx(0.5)
    assert m["macro_recall"] == pytest.approx(0.5)


def test_torch_and_numpy_inputs_agree_for_any_shape():
    pred = torch.as_tensor(PRED_A).reshape(2, 5)
    target = torch.as_tensor(TARGET_A).reshape(2, 5)
    cm = ConfusionMatrix(3).update(pred, target)
    assert cm.matrix.tolist() == MATRIX_A
    assert cm.matrix.dtype == np.int64


def test_accumulating_equals_one_concatenated_batch_not_the_batch_average():
    # Batch 1: 10 pixels all right (8 metal, 2 background) -> its own mIoU is 1.0.
    t1, p1 = np.array([1] * 8 + [0] * 2), np.array([1] * 8 + [0] * 2)
    # Batch 2: 2 pixels both wrong -> its own mIoU is 0.0. Per-batch average = 0.5.
    t2, p2 = np.array([0, 1]), np.array([1, 0])
    acc = ConfusionMatrix(3).update(p1, t1).update(p2, t2)
    whole = ConfusionMatrix(3).update(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
    assert acc.matrix.tolist() == whole.matrix.tolist() == [[2, 1, 0], [1, 8, 0], [0, 0, 0]]
    # Dataset-level: IoU0 = 2/(3+3-2) = 0.5, IoU1 = 8/(9+9-8) = 0.8 -> mIoU 0.65.
    assert acc.compute()["miou"] == pytest.approx(0.65)
    per_batch = [ConfusionMatrix(3).update(p, t).compute()["miou"] for p, t in ((p1, t1), (p2, t2))]
    assert per_batch == pytest.approx([1.0, 0.0])
    assert np.mean(per_batch) != pytest.approx(0.65)


def test_merge_and_reset():
    a = ConfusionMatrix(3).update(PRED_A, TARGET_A)
    b = ConfusionMatrix(3).update(PRED_B, TARGET_B)
    a.merge(b)
    assert a.matrix.tolist() == (np.array(MATRIX_A) + np.array(MATRIX_B)).tolist()
    a.reset()
    assert a.matrix.sum() == 0
    with pytest.raises(ValueError):
        a.merge(ConfusionMatrix(4))


def test_bad_inputs_fail_loudly():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="target"):
        cm.update(np.zeros(2, int), np.array([0, 7]))  # 7 is neither a class nor 255
    with pytest.raises(ValueError, match="prediction"):
        cm.update(torch.tensor([0, 3]), torch.tensor([0, 1]))
    assert cm.matrix.sum() == 0


def test_empty_matrix_has_no_scores():
    m = compute_metrics(np.zeros((3, 3), dtype=np.int64))
    assert m["miou"] is None and m["pixel_accuracy"] is None and m["num_pixels"] == 0
    assert list(m["per_class_iou"]) == ["class_0", "class_1", "class_2"]


def test_bootstrap_interval_brackets_the_estimate_is_seeded_and_narrows_with_more_images():
    from garbseg.metrics import bootstrap_miou_ci, miou_of_stack

    rng = np.random.default_rng(3)
    few = rng.integers(0, 50, (12, 3, 3)) + np.eye(3, dtype=np.int64) * 100
    many = np.concatenate([few] * 20)
    low, high = bootstrap_miou_ci(few)
    estimate = compute_metrics(few.sum(axis=0))["miou"]
    assert low <= estimate <= high
    assert bootstrap_miou_ci(few) == (low, high)  # seeded: the same matrices, the same interval
    low_many, high_many = bootstrap_miou_ci(many)
    assert high_many - low_many < (high - low) / 2
    assert bootstrap_miou_ci(few[:1]) is None  # one photo says nothing about spread
    # the per-matrix mIoU of a stack equals compute_metrics on each
    assert miou_of_stack(few) == pytest.approx([compute_metrics(m)["miou"] for m in few])
