"""Batches augmented on the device: labels stay on their pixels, the seed fixes the draws."""

import numpy as np
import pytest
import torch

from garbseg.data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, load_dataset
from garbseg.train.device_augment import AugmentParams, DeviceTrainSet, random_affine

from conftest import TINY_COLOURS


def _denormalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images * std + mean) * 255


@pytest.fixture(scope="module")
def tiny_train(tiny_data):
    return load_dataset(tiny_data, "train")


def test_masks_follow_the_pixels_through_zoom_rotation_and_flip(tiny_train):
    """The tiny set paints each class its own colour: after the warp, every labelled pixel away from
    an edge must still show its class's colour, and background pixels the grey."""
    params = AugmentParams(size=48, hflip=0.5, rotation=30, scale=(0.6, 1.7), translate=0.1, color_jitter=0)
    data = DeviceTrainSet(tiny_train, params, device="cpu", store_side=64)
    images, masks = data.augment(torch.arange(len(data)), torch.Generator().manual_seed(1))
    assert images.shape == (8, 3, 48, 48) and masks.shape == (8, 48, 48)
    rgb = _denormalise(images)
    # Pixels whose 3x3 neighbourhood shares one label: bilinear blending cannot reach them.
    padded = torch.nn.functional.pad(masks.float().unsqueeze(1), (1, 1, 1, 1), value=-1)
    same = (torch.nn.functional.max_pool2d(padded, 3, 1) == -torch.nn.functional.max_pool2d(-padded, 3, 1))[:, 0]
    colours = {0: (128, 128, 128)} | {c + 1: v for c, v in TINY_COLOURS.items()}
    checked = 0
    for label, colour in colours.items():
        where = (masks == label) & same
        expected = torch.tensor(colour, dtype=torch.float32).view(3, 1)
        got = rgb.permute(1, 0, 2, 3)[:, where]
        assert (got - expected).abs().max() < 3, label
        checked += int(where.sum())
    assert checked > 0.5 * masks.numel()
    outside = (masks == IGNORE_INDEX) & same
    assert rgb.permute(1, 0, 2, 3)[:, outside].abs().max() < 1  # warped in from outside: black, ignored
    assert (masks == IGNORE_INDEX).any(), "zooming out and rotating must leave pixels outside the photo"


def test_identity_warp_is_the_inference_view(tiny_train):
    """With no augmentation the batch is the photo squashed to the input size, as the predictor sees it."""
    params = AugmentParams(size=64, hflip=0, rotation=0, scale=(1, 1), translate=0, color_jitter=0)
    data = DeviceTrainSet(tiny_train, params, device="cpu", store_side=64)
    images, masks = data.augment(torch.tensor([3]), torch.Generator().manual_seed(0))
    image, mask = tiny_train.load_raw(3)
    assert torch.equal(masks[0], torch.from_numpy(mask).long())
    assert (_denormalise(images)[0] - torch.from_numpy(np.array(image)).permute(2, 0, 1)).abs().max() < 1


def test_flip_mirrors_image_and_mask(tiny_train):
    params = AugmentParams(size=64, hflip=1.0, rotation=0, scale=(1, 1), translate=0, color_jitter=0)
    data = DeviceTrainSet(tiny_train, params, device="cpu", store_side=64)
    _, masks = data.augment(torch.tensor([2]), torch.Generator().manual_seed(0))
    _, mask = tiny_train.load_raw(2)
    assert torch.equal(masks[0], torch.from_numpy(mask[:, ::-1].copy()).long())


def test_epochs_are_reproducible_and_cover_each_image_once(tiny_train):
    data = DeviceTrainSet(tiny_train, AugmentParams(size=32), device="cpu", store_side=64)
    first = list(data.batches(3, torch.Generator().manual_seed(7)))
    again = list(data.batches(3, torch.Generator().manual_seed(7)))
    assert len(first) == 2  # 8 images, batches of 3, the incomplete last batch dropped
    for (a, m), (b, n) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(m, n)
    other = next(data.batches(3, torch.Generator().manual_seed(8)))[0]
    assert not torch.equal(first[0][0], other)


def test_random_affine_stays_in_its_ranges():
    params = AugmentParams(rotation=10, scale=(0.5, 2.0), translate=0.0, hflip=0.0)
    theta = random_affine(2000, params, torch.Generator().manual_seed(0))
    zoom = 1 / theta[:, 0, :2].norm(dim=1)
    assert zoom.min() >= 0.5 - 1e-5 and zoom.max() <= 2.0 + 1e-5
    angle = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    assert angle.abs().max() <= 10 + 1e-4
    # a zoomed-in view stays inside the photo when there is no free shift
    assert (theta[:, :, 2].abs() <= (1 - 1 / zoom).clamp(min=0).unsqueeze(1) + 1e-5).all()
