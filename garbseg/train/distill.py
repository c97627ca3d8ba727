"""Knowledge distillation from a trained teacher's soft outputs (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent").

*Consistent*: the teacher sees exactly the batch the student sees, after every augmentation
(copy-paste included), so its soft classes describe the very pixels the student is asked about. The
teacher runs at its own input size (the batch resized), its logits brought back to the student's
resolution. The loss is the per-pixel KL divergence from the teacher's to the student's class
distribution at temperature ``T`` (times ``T**2``, so its gradients keep their scale), averaged
over every pixel: also the ones a pseudo-label leaves ignored, where the teacher's doubt is itself
the lesson.

*Function matching*: a blend of two photos is an input nobody labelled, yet the teacher answers for
it. :func:`blend_for_teacher` mixes a share of the batch with a neighbour and leaves those photos'
labels ignored, so only the teacher's soft outputs teach the student there.

*Several teachers*: :func:`load_teacher` given more than one checkpoint answers with their mean class
probabilities (:class:`TeacherEnsemble`), as the pseudo-labels' ensemble does for whole photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import GarbsegError
from ..data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ..models import load_checkpoint


class Teacher:
    """A frozen garbseg checkpoint answering with logits for augmented, normalised batches."""

    def __init__(self, ref: str, classes: list[str], *, device: str = "cpu", size: int | None = None):
        loaded = load_checkpoint(ref)
        if list(loaded.classes) != list(classes):
            raise GarbsegError(f"teacher {ref} predicts {loaded.classes}, the student {classes}")
        # The batch arrives normalised for the student (ImageNet statistics, as every garbseg model).
        if not (np.allclose(loaded.meta.mean, IMAGENET_MEAN) and np.allclose(loaded.meta.std, IMAGENET_STD)):
            raise GarbsegError(f"teacher {ref} expects other input normalisation ({loaded.meta.mean}, "
                               f"{loaded.meta.std}) than the student's ImageNet statistics")
        self.name = loaded.name
        self.size = size or loaded.meta.input_size
        scored = loaded.meta.metrics or loaded.meta.training_metrics or {}  # as the model card shows it
        # What the student's metadata records: which model taught it, how good it was, at what size.
        self.record = {"checkpoint": Path(str(ref)).name, "model": loaded.name, "input_size": self.size,
                       "val_miou": scored.get("miou")}
        self.model = loaded.model.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``N x C x H x W`` float32 logits at the batch's own resolution."""
        height, width = images.shape[-2:]
        x = images if (height, width) == (self.size, self.size) else F.interpolate(
            images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        out = self.model(x)["out"].float()
        if out.shape[-2:] != (height, width):
            out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        return out


class TeacherEnsemble:
    """Several frozen teachers answering as one, each at its own input size: the mean of their class
    probabilities, as log-probabilities, which :func:`distillation_loss` reads as it reads logits (a
    softmax leaves them unchanged)."""

    def __init__(self, teachers: Sequence[Teacher]):
        self.teachers = list(teachers)
        self.record = {"model": f"the mean of {', '.join(t.name for t in self.teachers)}",
                       "members": [t.record for t in self.teachers]}

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        mean = sum(F.softmax(t.logits(images), dim=1) for t in self.teachers) / len(self.teachers)
        return mean.clamp_min(1e-8).log()  # the floor keeps a class no teacher believes in finite


def load_teacher(refs: str | Sequence[str], classes: list[str], *, device: str = "cpu",
                 size: int | None = None) -> Teacher | TeacherEnsemble:
    """One checkpoint (a path or model name) is a :class:`Teacher`; several are a :class:`TeacherEnsemble`."""
    refs = [refs] if isinstance(refs, (str, Path)) else list(refs)
    if not refs:
        raise GarbsegError("no teacher given")
    teachers = [Teacher(str(ref), classes, device=device, size=size) for ref in refs]
    return teachers[0] if len(teachers) == 1 else TeacherEnsemble(teachers)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean per-pixel KL(teacher || student) of the class distributions at ``temperature``, times T^2."""
    t = temperature
    log_student = F.log_softmax(student.float() / t, dim=1)
    log_teacher = F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1)
    return kl.mean() * t * t


def blend_neighbours(batch: torch.Tensor, share: float,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup with the batch's neighbour: a random ``share`` of the ``N x C x H x W`` inputs becomes
    ``w * x[i] + (1 - w) * x[i - 1]``, one weight ``w`` in 0-1 per input. Returns the batch and the
    ``N`` booleans saying which were blended."""
    n = len(batch)
    if share <= 0 or n < 2:
        return batch, torch.zeros(n, dtype=torch.bool, device=batch.device)
    # Drawn on the CPU (where the generator lives), chosen first, then the weights.
    chosen = torch.rand(n, generator=generator) < share
    weight = torch.where(chosen, torch.rand(n, generator=generator), torch.ones(n))
    weight = weight.to(batch.device, batch.dtype).view(n, *[1] * (batch.dim() - 1))
    return weight * batch + (1 - weight) * batch.roll(1, dims=0), chosen.to(batch.device)


def blend_for_teacher(images: torch.Tensor, masks: torch.Tensor, share: float,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the photos blended with a neighbour (:func:`blend_neighbours`), their masks all
    ignored: a blend has no true label, only the teacher's answer."""
    images, blended = blend_neighbours(images, share, generator)
    if blended.any():
        masks = masks.masked_fill(blended[:, None, None], IGNORE_INDEX)
    return images, masks
