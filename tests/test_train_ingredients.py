"""The training ingredients of the TrashNet recipe: mixing a second set in, copy-paste, distillation, and the
Lovász-softmax loss."""

from __future__ import annotations

import pytest
import torch

from garbseg.data import IGNORE_INDEX, load_dataset
from garbseg.data.constants import DatasetError
from garbseg.models.checkpoints import read_metadata
from garbseg.train import TrainConfig, Trainer, train
from garbseg.train.copy_paste import copy_paste
from garbseg.train.distill import (Teacher, TeacherEnsemble, blend_for_teacher, blend_neighbours, distillation_loss,
                                   load_teacher)
from garbseg.train.loop import TrainError, segmentation_loss
from garbseg.train.lovasz import lovasz_softmax_loss
from garbseg.train.mixing import MixedTrainSet

from conftest import make_yolo_set


@pytest.fixture(scope="module")
def extra_data(tmp_path_factory):
    return make_yolo_set(tmp_path_factory.mktemp("extra") / "set", n_train=20, n_val=2, seed=5)


def test_an_epoch_holds_every_primary_photo_once_and_the_ratio_of_extra_ones(tiny_data, extra_data):
    mixed = MixedTrainSet(load_dataset(tiny_data, "train"), load_dataset(extra_data, "train"), extra_ratio=1.5)
    assert len(mixed) == 28 and mixed.extra_per_epoch == 12 and mixed.epoch_size == 20
    orders = [mixed.epoch_order(torch.Generator().manual_seed(epoch)) for epoch in range(3)]
    for order in orders:
        primary, extra = order[order < 8], order[order >= 8]
        assert sorted(primary.tolist()) == list(range(8))
        assert len(extra) == 12 and len(set(extra.tolist())) == 12 and extra.max() < 28
    # A new subset of the extra set each epoch, and shuffled together with the primary photos.
    assert set(orders[0][orders[0] >= 8].tolist()) != set(orders[1][orders[1] >= 8].tolist())
    assert not torch.equal(orders[0][:8].sort().values, torch.arange(8)) or orders[0][8:].min() < 8
    assert MixedTrainSet(load_dataset(tiny_data, "train")).epoch_size == 8


def test_mixing_refuses_a_set_with_other_classes(tiny_data, tmp_path):
    other = make_yolo_set(tmp_path / "other", n_train=2, n_val=1)
    (other / "data.yaml").write_text("path: .\ntrain: train/images\nval: val/images\nnames:\n  0: cat\n  1: dog\n")
    with pytest.raises(DatasetError, match="same classes"):
        MixedTrainSet(load_dataset(tiny_data, "train"), load_dataset(other, "train"))


def test_copy_paste_moves_object_pixels_with_their_labels():
    images = torch.zeros(2, 3, 4, 4)
    images[1] = 1.0
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[1, :2, :2] = 2  # photo 1's object: top-left corner, class 2
    masks[1, 3, 3] = IGNORE_INDEX  # unsure pixels are never pasted
    pasted, labels = copy_paste(images, masks, probability=1.0, generator=torch.Generator().manual_seed(0))
    # Photo 0 received photo 1's object (pixels and labels), nothing else changed.
    assert torch.equal(labels[0, :2, :2], torch.full((2, 2), 2)) and pasted[0, :, :2, :2].eq(1).all()
    assert labels[0].sum() == 8 and pasted[0].sum() == 12 and labels[0, 3, 3] == 0
    # Photo 1's donor (photo 0) has no object: photo 1 stays as it was.
    assert torch.equal(labels[1], masks[1]) and torch.equal(pasted[1], images[1])
    same, same_labels = copy_paste(images, masks, probability=0.0)
    assert same is images and same_labels is masks


def test_distillation_loss_is_zero_for_a_matching_student_and_grows_with_disagreement():
    teacher = torch.randn(2, 3, 5, 5)
    assert distillation_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    near, far = teacher + 0.1 * torch.randn_like(teacher), -teacher
    assert 0 < distillation_loss(near, teacher) < distillation_loss(far, teacher)
    # T^2 scaling keeps the size of the loss comparable across temperatures.
    assert distillation_loss(far, teacher, 2.0) == pytest.approx(
        4 * distillation_loss(far / 2, teacher / 2).item(), rel=1e-5)


def hard_logits(prediction: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose softmax is (to float precision) the one-hot ``prediction``."""
    return torch.nn.functional.one_hot(prediction, classes).permute(0, 3, 1, 2).float() * 100


def test_lovasz_loss_of_a_hard_prediction_is_one_minus_iou_averaged_over_the_labelled_classes():
    gen = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (2, 12, 12), generator=gen)  # class 4 never labelled
    prediction = torch.randint(0, 5, (2, 12, 12), generator=gen)
    target[0, :3] = IGNORE_INDEX  # ignored pixels count for nothing, whatever is predicted there
    valid = target != IGNORE_INDEX
    expected = []
    for cls in range(4):
        hit, truth = (prediction == cls) & valid, target == cls
        expected.append(1 - (hit & truth).sum().item() / (hit | truth).sum().item())
    loss = lovasz_softmax_loss(hard_logits(prediction, 5), target)
    assert loss.item() == pytest.approx(sum(expected) / 4, abs=1e-4)
    assert lovasz_softmax_loss(hard_logits(target.clamp(max=4), 5), target).item() == pytest.approx(0, abs=1e-4)


def test_lovasz_loss_falls_along_its_gradient_and_is_zero_for_ignored_pixels_only():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8))
    before = lovasz_softmax_loss(logits, target)
    before.backward()
    after = lovasz_softmax_loss((logits - 0.5 * logits.grad).detach(), target)
    assert after < before
    ignored = lovasz_softmax_loss(logits, torch.full((2, 8, 8), IGNORE_INDEX))
    assert ignored.item() == 0 and ignored.requires_grad


def test_segmentation_loss_adds_the_weighted_lovasz_term_to_cross_entropy():
    outputs = {"out": torch.randn(2, 3, 8, 8)}
    target = torch.randint(0, 3, (2, 8, 8))
    plain = segmentation_loss(outputs, target, aux_weight=0.5)
    weighted = segmentation_loss(outputs, target, aux_weight=0.5, lovasz_weight=2.0)
    assert weighted.item() == pytest.approx(plain.item() + 2 * lovasz_softmax_loss(outputs["out"], target).item(),
                                            rel=1e-5)


def test_mixup_blends_each_chosen_input_with_its_neighbour():
    # Input i is filled with the value 10 * i: a blend with input i - 1 lies strictly between the two.
    batch = torch.arange(8, dtype=torch.float32).mul(10).view(8, 1, 1, 1).expand(8, 3, 4, 4).contiguous()
    same, none = blend_neighbours(batch, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same, batch) and not none.any()
    mixed, chosen = blend_neighbours(batch, 1.0, torch.Generator().manual_seed(0))
    assert chosen.all()
    values = mixed[:, 0, 0, 0]
    neighbours = batch.roll(1, dims=0)[:, 0, 0, 0]
    low, high = torch.minimum(batch[:, 0, 0, 0], neighbours), torch.maximum(batch[:, 0, 0, 0], neighbours)
    assert bool(((values > low) & (values < high)).all())
    assert bool((mixed == mixed[:, :1, :1, :1]).all())  # one weight per input, the same at every pixel
    half, chosen = blend_neighbours(batch, 0.5, torch.Generator().manual_seed(1))
    kept = (half == batch).flatten(1).all(1)
    assert 0 < int(kept.sum()) < 8 and torch.equal(kept, ~chosen)  # the flags name exactly the blended ones


def test_blends_for_the_teacher_carry_no_labels_and_the_rest_keep_theirs():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).contiguous()
    masks = torch.randint(0, 3, (6, 8, 8))
    blended, labels = blend_for_teacher(images, masks, 0.5, torch.Generator().manual_seed(1))
    mixed = ~(blended == images).flatten(1).all(1)
    assert 0 < int(mixed.sum()) < 6
    assert bool((labels[mixed] == IGNORE_INDEX).all())
    assert torch.equal(labels[~mixed], masks[~mixed])
    assert blend_for_teacher(images, masks, 0.0)[1] is masks


def test_a_run_refuses_blends_without_a_teacher(tiny_data, tmp_path):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "b"),
                      distill_mixup=0.5)
    with pytest.raises(TrainError, match="teacher"):
        Trainer(cfg, progress=False, log=lambda s: None)


def test_teacher_answers_at_the_batch_resolution_and_refuses_other_classes(tiny_run):
    teacher = Teacher(str(tiny_run), ["background", "red", "blue"], size=64)
    assert teacher.logits(torch.randn(2, 3, 48, 48)).shape == (2, 3, 48, 48)
    with pytest.raises(Exception, match="predicts"):
        Teacher(str(tiny_run), ["background", "cat"])


def test_several_teachers_answer_with_their_mean_probabilities(tiny_run):
    classes = ["background", "red", "blue"]
    assert isinstance(load_teacher([str(tiny_run)], classes, size=64), Teacher)  # a list of one is one teacher
    first, second = Teacher(str(tiny_run), classes, size=64), Teacher(str(tiny_run), classes, size=48)
    with torch.no_grad():
        for weight in second.model.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    ensemble = TeacherEnsemble([first, second])
    images = torch.randn(2, 3, 40, 40)
    expected = (first.logits(images).softmax(1) + second.logits(images).softmax(1)) / 2
    assert not torch.allclose(first.logits(images).softmax(1), expected, atol=1e-3)  # the two do differ
    assert torch.allclose(ensemble.logits(images).exp(), expected, atol=1e-5)
    # The loss reads the mean as it reads one teacher's logits: no loss where the student already agrees.
    assert distillation_loss(ensemble.logits(images), ensemble.logits(images)).item() == pytest.approx(0, abs=1e-6)
    assert [m["input_size"] for m in ensemble.record["members"]] == [64, 48]


def test_a_config_names_one_teacher_as_a_string_however_it_came():
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data="d", teacher=["mobilenet_v2-lraspp"])
    assert cfg.resolved().teacher == "mobilenet_v2-lraspp"
    several = TrainConfig(model="mobilenet_v3_large-lraspp", data="d", teacher=("a", "b")).resolved().teacher
    assert several == ["a", "b"]


def test_a_run_with_extra_data_teacher_and_copy_paste_records_its_ingredients(tiny_data, extra_data, tiny_run,
                                                                              tmp_path):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "mix"), epochs=2,
                      batch_size=4, size=64, resize=64, lr=1e-3, bf16=False, extra_data=str(extra_data),
                      extra_ratio=1.0, teacher=str(tiny_run), copy_paste=0.5, distill_mixup=0.25,
                      lovasz_weight=0.5, augment_on_device=True)
    trainer = train(cfg, progress=False, log=lambda s: None)
    assert trainer.steps_per_epoch == 4  # (8 train + 8 extra) / 4
    meta = read_metadata(tmp_path / "mix" / "best.safetensors")
    assert meta.data["extra_images"] == 20 and meta.data["extra_per_epoch"] == 8 and meta.data["train_images"] == 8
    assert meta.recipe["teacher"]["model"] == "mobilenet_v3_large-lraspp" and meta.recipe["copy_paste"] == 0.5
    assert meta.recipe["distill_mixup"] == 0.25 and meta.recipe["lovasz_weight"] == 0.5
    assert meta.recipe["teacher"]["val_miou"] == pytest.approx(read_metadata(tiny_run / "best.safetensors").metrics["miou"])
    assert meta.data["extra_name"].endswith("/train")
    assert all(h["loss"] > 0 for h in trainer.history)


def test_the_per_image_loader_path_walks_the_same_mixed_epoch(tiny_data, extra_data, tmp_path):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "l"), epochs=1,
                      batch_size=4, size=64, resize=64, bf16=False, extra_data=str(extra_data), extra_ratio=0.5)
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    assert trainer.steps_per_epoch == 3  # (8 + 4) / 4
    batches = list(trainer._batches(torch.Generator().manual_seed(0), 0))
    assert len(batches) == 3 and batches[0][0].shape == (4, 3, 64, 64)
