"""The class-offset fit of scripts/class_offsets.py: it finds a bias that was put in, and scores honestly."""

import numpy as np
import pytest
import torch

from garbseg.metrics import ConfusionMatrix, compute_metrics
from scripts import class_offsets


def _biased_logits(bias_on: int, bias: float, seed: int = 0):
    """Logits that favour the true class by a noisy margin, with ``bias`` added to one class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(8, 16, 16)).astype(np.uint8)
    logits = 2.0 * np.eye(3, dtype=np.float32)[labels].transpose(0, 3, 1, 2)
    logits += rng.normal(0, 1.0, size=logits.shape).astype(np.float32)
    logits[:, bias_on] += bias
    return logits, labels


def test_miou_with_is_the_confusion_matrix_miou():
    logits, labels = _biased_logits(2, 0.0)
    labels[0, :4] = 255  # ignored pixels count nowhere
    offsets = np.array([0.0, 0.5, -0.5], np.float32)
    predicted = (logits + offsets[None, :, None, None]).argmax(1)
    expected = compute_metrics(ConfusionMatrix(3).update(predicted, labels).matrix)["miou"]
    assert class_offsets.miou_with(logits, labels, offsets) == pytest.approx(expected)


def test_fit_offsets_undoes_a_bias_put_into_one_class():
    logits, labels = _biased_logits(2, 1.5)
    offsets = class_offsets.fit_offsets(logits, labels)
    assert offsets[0] == 0.0  # background is the fixed reference
    assert offsets[2] == pytest.approx(-1.5, abs=0.4)
    assert abs(offsets[1]) <= 0.4
    assert class_offsets.miou_with(logits, labels, offsets) > class_offsets.miou_with(logits, labels, 0 * offsets)


def test_offset_predictor_adds_the_offsets_to_every_pixel():
    class Fixed:
        loaded, classes = None, ["background", "a", "b"]

        def preprocess(self, images):
            return torch.zeros(len(images), 3, 4, 4)

        def logits(self, batch):
            return torch.zeros(batch.shape[0], 3, 4, 4)

    shifted = class_offsets.OffsetPredictor(Fixed(), np.array([0.0, -1.0, 2.0], np.float32))
    out = shifted.logits(shifted.preprocess([None, None]))
    assert out.shape == (2, 3, 4, 4)
    assert torch.equal(out[:, 2], torch.full((2, 4, 4), 2.0)) and torch.equal(out[:, 1], torch.full((2, 4, 4), -1.0))
