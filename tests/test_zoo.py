"""garbseg.models.zoo: which models have weights, what the pickers start on, how untrained ones are named."""

from __future__ import annotations

import pytest

from garbseg.models import UnknownModelError, list_models
from garbseg.models.zoo import (UNTRAINED, compose_name, default_model, default_selection, model_label, open_model,
                                trained_names, zoo)


def test_without_weights_everything_is_untrained_and_selected(tmp_path):
    assert trained_names(tmp_path) == []
    assert default_selection(tmp_path) == list_models()
    assert default_model(tmp_path) == "mobilenet_v3_large-lraspp"
    assert all(UNTRAINED in e.label for e in zoo(tmp_path))


def test_shipped_weights_are_preferred(tmp_path):
    (tmp_path / "resnet50-fcn.safetensors").write_bytes(b"x")  # presence is what counts here
    assert trained_names(tmp_path) == default_selection(tmp_path) == ["resnet50-fcn"]
    assert default_model(tmp_path) == "resnet50-fcn"
    (tmp_path / "mobilenet_v3_large-lraspp.safetensors").write_bytes(b"x")
    assert default_model(tmp_path) == "mobilenet_v3_large-lraspp"
    entry = next(e for e in zoo(tmp_path) if e.name == "resnet50-fcn")
    assert (entry.backbone, entry.head, entry.trained, entry.label) == ("resnet50", "fcn", True, "resnet50-fcn")


def test_names_and_labels():
    assert compose_name("mobilenet_v2", "deeplabv3") == "mobilenet_v2-deeplabv3"
    with pytest.raises(UnknownModelError, match="Valid names"):
        compose_name("vgg16", "fcn")
    assert model_label("a-b", False) == f"a-b - {UNTRAINED}"


def test_untrained_model_gets_the_given_classes_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(tmp_path))  # nothing ships there
    loaded = open_model("mobilenet_v3_large-lraspp", ["background", "x", "y"])
    assert loaded.classes == ["background", "x", "y"] and loaded.meta.trained is False
