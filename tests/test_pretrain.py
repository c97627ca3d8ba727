"""Backbone pretraining by classification: examples, learning, resuming, and the trunk file training loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from garbseg.data import IGNORE_INDEX
from garbseg.models import build_model, make_metadata, save_checkpoint
from garbseg.models.backbone_init import initialise_backbone
from garbseg.train.pretrain import (PretrainConfig, PretrainError, TrunkMimic, feature_similarity, gather_examples,
                                   label_classes, object_boxes, pretrain)

from conftest import TINY_COLOURS, make_yolo_set


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A labelled set (objects coloured by class) and a folder-per-class set with one extra class."""
    root = tmp_path_factory.mktemp("pretrain")
    data = make_yolo_set(root / "seg", n_train=24, n_val=12, size=96, seed=3)
    rng = np.random.default_rng(0)
    for name, colour in (("red", TINY_COLOURS[0]), ("blue", TINY_COLOURS[1]), ("trash", (30, 200, 30))):
        (root / "trashnet-like" / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (72, 96, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "trashnet-like" / name / f"{i}.jpg")
    return data, root / "trashnet-like"


def test_object_boxes_frame_each_class_and_skip_small_or_unsure_regions():
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 5:30] = 2
    mask[40:45, 40:60] = 1  # 100 pixels: below the minimum asked for below
    mask[0:3, 0:3] = IGNORE_INDEX
    assert object_boxes(mask, min_pixels=150) == [(2, (5, 10, 30, 20))]
    assert object_boxes(mask, min_pixels=50) == [(1, (40, 40, 60, 45)), (2, (5, 10, 30, 20))]


def test_examples_share_labels_between_folders_and_objects(sources):
    data, photos = sources
    classes = label_classes(str(photos), str(data))
    assert classes == ["red", "blue", "trash"]  # the labelled set's classes first, then the folders' others
    train = gather_examples(classes, photos=str(photos), data=str(data), split="train", short_side=40)
    val = gather_examples(classes, photos=str(photos), data=str(data), split="val", short_side=40)
    assert train.sources == {"trashnet-like photos": 24, "seg/train objects": 24}
    assert val.sources == {"seg/val objects": 12}  # folder photos never score
    assert all(min(image.shape[-2:]) == 40 and image.dtype == torch.uint8 for image in train.images)
    # A red object's crop is mostly red, whatever its source.
    for image, label in zip(train.images, train.labels):
        mean = image.float().mean(dim=(1, 2))
        assert int(mean.argmax()) == {0: 0, 1: 2, 2: 1}[label]


def test_pretraining_learns_resumes_and_starts_a_segmentation_trunk(sources, tmp_path):
    data, photos = sources
    cfg = PretrainConfig(backbone="mobilenet_v3_large", out=str(tmp_path / "run"), photos=str(photos),
                         data=str(data), epochs=5, size=64, batch_size=16, lr=3e-3)
    summary = pretrain(cfg, log=lambda _: None, progress=False)
    history = summary["history"]
    assert len(history) == 5 and history[-1]["loss"] < history[0]["loss"]
    assert max(h["val_accuracy"] for h in history) >= 0.75  # red vs blue objects (chance: about 0.5)

    # Asking for one more epoch continues the run: the first five epochs are not trained again.
    more = pretrain(PretrainConfig(**{**cfg.__dict__, "epochs": 6}), log=lambda _: None, progress=False)
    assert more["history"][:5] == history and len(more["history"]) == 6
    with pytest.raises(PretrainError, match="another --out"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "backbone": "mobilenet_v2"}), log=lambda _: None, progress=False)

    trunk = torch.load(summary["trunk"], weights_only=True)
    model = initialise_backbone(build_model("mobilenet_v3_large-lraspp", num_classes=3), summary["trunk"])
    own = model.backbone.state_dict()
    assert set(trunk["state_dict"]) == set(own)
    assert all(torch.equal(own[k], v) for k, v in trunk["state_dict"].items())
    assert "classification pretraining on trashnet-like photos (24) + seg/train objects (24)" in model.backbone_init
    assert "at 64 px" in model.backbone_init


def test_pretraining_says_what_is_missing(tmp_path):
    with pytest.raises(PretrainError, match="not a folder of class folders"):
        label_classes(str(tmp_path / "nowhere"), None)
    with pytest.raises(PretrainError, match="needs photos"):
        pretrain(PretrainConfig(backbone="mobilenet_v3_large", out=str(tmp_path / "run")), log=lambda _: None)
    with pytest.raises(PretrainError, match="'distill' only"):
        pretrain(PretrainConfig(backbone="mobilenet_v3_large", out=str(tmp_path / "run"), photos=str(tmp_path),
                                mixup=0.5), log=lambda _: None)


def test_feature_distillation_learns_the_teacher_and_leaves_it_untouched(sources, tmp_path):
    data, photos = sources
    # A random teacher keeps the test offline; the mechanics are the ImageNet teacher's.
    cfg = PretrainConfig(backbone="mobilenet_v3_large", out=str(tmp_path / "run"), photos=str(photos),
                         data=str(data), objective="distill", teacher="random", epochs=3, size=64, batch_size=16,
                         lr=3e-3)
    classes = label_classes(str(photos), str(data))
    val = gather_examples(classes, photos=None, data=str(data), split="val", short_side=74, objects=False)
    assert val.sources == {"seg/val photos": 12} and set(val.labels) == {-1}
    torch.manual_seed(cfg.seed)  # what pretrain() does before building its model: the same teacher
    untrained = TrunkMimic(cfg.backbone, cfg.teacher)
    before = feature_similarity(untrained, val, cfg.size)

    summary = pretrain(cfg, log=lambda _: None, progress=False)
    history = summary["history"]
    assert summary["val_examples"] == 12 and history[-1]["loss"] < history[0]["loss"]
    assert max(h["val_similarity"] for h in history) > before + 0.1

    # The teacher is frozen: weights and batch-norm statistics as built, after training and recalibration.
    trained = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["model"]
    for key, value in untrained.teacher.state_dict().items():
        assert torch.equal(trained[f"teacher.{key}"], value), key

    model = initialise_backbone(build_model("mobilenet_v3_large-deeplabv3", num_classes=3), summary["trunk"])
    assert "feature distillation from MobileNetV2" in model.backbone_init
    assert "trashnet-like photos (24) + seg/train photos (24)" in model.backbone_init
    with pytest.raises(PretrainError, match="another --out"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "objective": "classify"}), log=lambda _: None, progress=False)

    # --init-from: a new run on a new schedule starting from the finished run's last weights. At a learning
    # rate of zero its parameters stay exactly those it loaded; its trunk file counts both runs' epochs.
    more = PretrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "more"), "epochs": 1, "lr": 0.0,
                             "init_from": cfg.out})
    pretrain(more, log=lambda _: None, progress=False)
    continued = torch.load(tmp_path / "more" / "state.pt", weights_only=True)["model"]
    learned = [name for name, _ in untrained.named_parameters() if not name.startswith("teacher.")]
    assert all(torch.equal(continued[name], trained[name]) for name in learned)
    assert not all(torch.equal(continued[name], value) for name, value in untrained.state_dict().items()
                   if name in learned)
    described = torch.load(tmp_path / "more" / "trunk.pt", weights_only=True)["description"]
    assert f"3 epochs ({cfg.out}) + 1 more at 64 px" in described
    with pytest.raises(PretrainError, match="not a distill run of resnet50"):
        pretrain(PretrainConfig(**{**more.__dict__, "backbone": "resnet50", "out": str(tmp_path / "r50")}),
                 log=lambda _: None, progress=False)


def test_a_mobilenet_v2_segmentation_checkpoint_can_be_the_feature_teacher(tmp_path):
    # Its trunk stops at the deep tap (block 17): ImageNet's last 1x1 conv is not in the file.
    torch.manual_seed(5)
    segmenter = build_model("mobilenet_v2-lraspp", num_classes=3, output_stride=16)
    path = save_checkpoint(tmp_path / "mobilenet_v2-lraspp.safetensors", segmenter,
                           make_metadata(segmenter, classes=["a", "b", "c"], input_size=64,
                                         model_kwargs={"output_stride": 16}))
    mimic = TrunkMimic("mobilenet_v3_large", str(path)).eval()
    assert "backbone of mobilenet_v2-lraspp.safetensors" in mimic.teacher_source
    taught = mimic.teacher.state_dict()
    for key, value in segmenter.backbone.state_dict().items():
        assert torch.equal(taught[key], value), key
    # It runs dilated, as it was trained: its features are the segmenter's own, at stride 16.
    photo = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(mimic.teacher(photo)["high"], segmenter.eval().backbone(photo)["high"], atol=1e-5)
    assert mimic.teacher(photo)["high"].shape[-1] == 64 // 16
