"""scripts/average_weights.py: the average is the element-wise mean, and mixed models are refused."""

import pytest
import torch

from garbseg.core.errors import GarbsegError
from garbseg.models import build_model
from garbseg.models.checkpoints import inference_state, load_checkpoint, make_metadata, save_checkpoint
from scripts import average_weights

CLASSES = ["background", "glass", "metal"]


def _checkpoint(tmp_path, name: str, model_name: str = "mobilenet_v2-lraspp", seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes=len(CLASSES)).eval()
    meta = make_metadata(model, classes=CLASSES, input_size=64, model_kwargs={}, epoch=3, metrics={"miou": 0.5})
    return save_checkpoint(tmp_path / name, model, meta), model


def test_the_average_of_two_checkpoints_is_their_mean(tmp_path):
    a, model_a = _checkpoint(tmp_path, "a.safetensors", seed=0)
    b, model_b = _checkpoint(tmp_path, "b.safetensors", seed=1)
    out = average_weights.average_checkpoints([a, b], tmp_path / "soup.safetensors")
    soup = load_checkpoint(out)
    state_a, state_b, state_soup = (inference_state(m) for m in (model_a, model_b, soup.model))
    assert any(not torch.equal(v, state_b[k]) for k, v in state_a.items())  # two seeds: two models
    assert all(torch.allclose(state_soup[k], (state_a[k] + state_b[k]) / 2, atol=1e-6)
               for k, v in state_a.items() if v.is_floating_point())
    # The new file is a new model: the inputs' scores and epoch do not describe it.
    assert soup.meta.metrics == {} and soup.meta.epoch is None
    assert soup.meta.extra["averaged_from"] == [str(a.relative_to(a.parents[2])), str(b.relative_to(b.parents[2]))]


def test_checkpoints_of_different_models_are_refused(tmp_path, capsys):
    a, _ = _checkpoint(tmp_path, "a.safetensors")
    b, _ = _checkpoint(tmp_path, "b.safetensors", model_name="mobilenet_v2-fcn")
    with pytest.raises(GarbsegError, match="different models"):
        average_weights.average_checkpoints([a, b], tmp_path / "soup.safetensors")
    assert average_weights.main([str(a), str(b), "--out", str(tmp_path / "soup.safetensors")]) == 2
    assert "different models" in capsys.readouterr().err
    assert not (tmp_path / "soup.safetensors").exists()


def test_one_checkpoint_is_not_an_average(tmp_path):
    a, _ = _checkpoint(tmp_path, "a.safetensors")
    with pytest.raises(GarbsegError, match="at least two"):
        average_weights.average_checkpoints([a], tmp_path / "soup.safetensors")
