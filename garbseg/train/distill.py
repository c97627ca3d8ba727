"""Knowledge distillation from a trained teacher's soft outputs (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent").

*Consistent*: the teacher sees exactly the batch the student sees, after every augmentation
(copy-paste included), so its soft classes describe the very pixels the student is asked about. The
teacher runs at its own input size (the batch resized), its logits brought back to the student's
resolution. The loss is the per-pixel KL divergence from the teacher's to the student's class
distribution at temperature ``T`` (times ``T**2``, so its gradients keep their scale), averaged
over every pixel: also the ones a pseudo-label leaves ignored, where the teacher's doubt is itself
the lesson.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import GarbsegError
from ..data import IMAGENET_MEAN, IMAGENET_STD
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


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean per-pixel KL(teacher || student) of the class distributions at ``temperature``, times T^2."""
    t = temperature
    log_student = F.log_softmax(student.float() / t, dim=1)
    log_teacher = F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1)
    return kl.mean() * t * t
