"""Backbone pretraining for the backbones whose ImageNet weights cannot be had here. Two objectives:

``classify``: the trunk of a segmentation model learns to tell the garbage classes apart: whole
photos of a folder-per-class set (TrashNet: one object per photo, the folder is its class) and the
objects cut out of a labelled segmentation set's training photos (the box around each class's
pixels, with a margin). The labelled set's val objects score it (accuracy).

``distill``: the trunk learns to reproduce, at its two taps (stride 8 and its deep end), the
features of the one ImageNet-trained trunk this machine has, MobileNetV2's, on the same augmented
crops of the folder photos and the labelled set's whole training photos (feature distillation, as
in FitNets, Romero et al. 2015: a 1x1 projection of the student's map must point the way the
teacher's does at every position; the loss is one minus their cosine similarity). It carries
ImageNet's general features into another architecture without its labels. The labelled set's val
photos score it (mean cosine similarity).

The result is a trunk file that training loads with ``backbone_init=PATH``
(:mod:`garbseg.models.backbone_init`); it says how it was made, and that line goes into the
segmentation checkpoint's metadata and the model card.

A run lives in one folder (``state.pt`` written atomically after every epoch, so a killed run
resumes) and writes ``trunk.pt`` for its best epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.optim.swa_utils import update_bn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from ..core.errors import GarbsegError
from ..core.files import atomic_write
from ..data import IGNORE_INDEX, load_dataset, load_image
from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
from ..models import BACKBONES
from ..models.backbone_init import load_backbone_weights
from ..models.checkpoints import read_metadata
from .distill import blend_neighbours
from .loop import lr_factor, set_bn_momentum
from .pseudo_labels import folder_class_photos

STATE_FILE, TRUNK_FILE = "state.pt", "trunk.pt"
OBJECTIVES = ("classify", "distill")
FEATURE_TEACHER = "mobilenet_v2"  # the only backbone with ImageNet weights on these machines
CROP_MARGIN = 0.15  # of the box's size on each side: some context around the object
MIN_OBJECT_PIXELS = 400  # smaller regions are too few pixels to name a class from
SCALE = (0.35, 1.0)  # random-resized-crop area range
STORED_SIDE = 1.15  # photos are kept in memory with their shorter side at this x the crop size
# Batch-norm statistics are recomputed from this many training batches before each validation: a trunk
# learning from scratch moves faster than the running averages follow, and eval mode then fails.
BN_BATCHES = 16


class PretrainError(GarbsegError, ValueError):
    """A pretraining run that cannot start as asked; the message says why."""


@dataclass
class PretrainConfig:
    backbone: str
    out: str
    photos: str | None = None  # folder of class folders (TrashNet)
    data: str | None = None  # labelled segmentation set: its train objects (photos) train, val ones score
    objective: str = "classify"  # or "distill" (see the module docstring)
    teacher: str = "imagenet"  # distill: the MobileNetV2 teacher's weights (any backbone init it accepts)
    epochs: int = 15
    warmup_epochs: int = 1
    schedule: str = "cosine"  # read by loop.lr_factor, as in segmentation training
    size: int = 160
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    # distill: the share of crops blended with another crop of the batch (mixup, weight uniform in 0-1)
    # before student and teacher see them: "function matching" (Beyer et al. 2022), new inputs from few
    # photos. The target is the teacher's features of the blend, so no label needs mixing.
    mixup: float = 0.0
    seed: int = 0
    max_steps_per_epoch: int | None = None  # quick trials and tests
    # An earlier run folder (same backbone and objective) whose last weights, projections included, this
    # run starts from on a new schedule: more distillation without changing the finished run's schedule.
    init_from: str | None = None


@dataclass
class Examples:
    """Photos or object crops in memory (uint8 ``3 x H x W``, shorter side fixed) with class indices."""

    images: list[torch.Tensor]
    labels: list[int]
    sources: dict[str, int]  # where they came from -> how many


def object_boxes(mask: np.ndarray, min_pixels: int = MIN_OBJECT_PIXELS) -> list[tuple[int, tuple[int, int, int, int]]]:
    """``(class index, (left, top, right, bottom))`` around each foreground class's pixels in ``mask``."""
    boxes = []
    for cls in np.unique(mask):
        if cls == 0 or cls == IGNORE_INDEX:
            continue
        ys, xs = np.nonzero(mask == cls)
        if len(ys) >= min_pixels:
            boxes.append((int(cls), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    return boxes


def _with_margin(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    dx, dy = CROP_MARGIN * (right - left), CROP_MARGIN * (bottom - top)
    return (max(0, int(left - dx)), max(0, int(top - dy)), min(width, int(right + dx)), min(height, int(bottom + dy)))


def _stored(image: Image.Image, short_side: int) -> torch.Tensor:
    scale = short_side / min(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def gather_examples(classes: Sequence[str], *, photos: str | None, data: str | None, split: str,
                    short_side: int, progress: bool = False, objects: bool = True) -> Examples:
    """The examples of one split: folder photos (train only) and the labelled set's object crops.

    ``classes``: the label list; the labelled set's foreground classes come first, then folder names
    it lacks (TrashNet's ``trash``), so a crop and a folder photo of the same material share a label.
    ``objects=False`` takes the labelled set's whole photos instead of its objects, labelled -1 (the
    distillation objective needs no label, and a whole photo holds several classes).
    """
    examples = Examples([], [], {})
    if photos and split == "train":
        found = folder_class_photos(photos, classes)
        for path, name in tqdm(found, desc=f"photos ({Path(photos).name})", disable=not progress):
            examples.images.append(_stored(load_image(path), short_side))
            examples.labels.append(classes.index(name))
        examples.sources[f"{Path(photos).name} photos"] = len(found)
    if data:
        dataset = load_dataset(data, split)
        count = 0
        kind = "objects" if objects else "photos"
        for i in tqdm(range(len(dataset)), desc=f"{kind} ({dataset.name})", disable=not progress):
            image, mask = dataset.load_raw(i)
            if not objects:
                examples.images.append(_stored(image, short_side))
                examples.labels.append(-1)
                count += 1
                continue
            for cls, box in object_boxes(mask):
                crop = image.crop(_with_margin(box, image.width, image.height))
                examples.images.append(_stored(crop, short_side))
                examples.labels.append(classes.index(dataset.classes[cls]))
                count += 1
        examples.sources[f"{dataset.name} {kind}"] = count
    return examples


def label_classes(photos: str | None, data: str | None) -> list[str]:
    """Foreground classes of the labelled set, then the folder set's other class folders."""
    if photos and not Path(photos).is_dir():
        raise PretrainError(f"{photos}: not a folder of class folders (<class>/<photo>)")
    named = list(load_dataset(data, "val").classes[1:]) if data else []
    folders = sorted(p.name for p in Path(photos).iterdir() if p.is_dir()) if photos else []
    return named + [name for name in folders if name not in named]


def random_crops(images: Sequence[torch.Tensor], size: int, generator: torch.Generator) -> torch.Tensor:
    """Random-resized crops (area ``SCALE``, aspect 3:4-4:3), mirrored half the time, brightness and
    contrast jittered by up to 20 %; normalised ``N x 3 x size x size`` float32."""
    out = []
    for image in images:
        height, width = image.shape[-2:]
        u = torch.rand(5, generator=generator).tolist()
        area = height * width * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[0])
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
        h = min(height, max(1, round(math.sqrt(area / aspect))))
        w = min(width, max(1, round(math.sqrt(area * aspect))))
        top, left = int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1))
        crop = TF.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        out.append(TF.horizontal_flip(crop) if u[4] < 0.5 else crop)
    batch = torch.stack(out).float() / 255
    jitter = 1 + 0.4 * (torch.rand(2, len(out), 1, 1, 1, generator=generator) - 0.5)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    batch = ((batch - mean) * jitter[1] + mean) * jitter[0]
    return TF.normalize(batch.clamp(0, 1), list(IMAGENET_MEAN), list(IMAGENET_STD))


def centre_crops(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    batch = torch.stack([TF.center_crop(TF.resize(im, [size], antialias=True), [size, size]) for im in images])
    return TF.normalize(batch.float() / 255, list(IMAGENET_MEAN), list(IMAGENET_STD))


class TrunkClassifier(nn.Module):
    """A backbone's segmentation trunk (up to its deep tap) with a pooled linear classifier on top.

    ``body`` has the segmentation model's ``backbone`` state_dict keys, so its weights load as they are.
    Built at the backbone's largest output stride: the same weights, the cheapest to train.
    Like :class:`TrunkMimic`, it gives the pretraining loop its ``loss``, ``score`` and provenance.
    """

    metric, metric_label = "val_accuracy", "val object accuracy"
    provenance = "classification pretraining"

    def __init__(self, backbone: str, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        if backbone not in BACKBONES:
            raise PretrainError(f"unknown backbone {backbone!r}; one of {', '.join(BACKBONES)}")
        spec = BACKBONES[backbone]
        trunk = spec.build(max(spec.output_strides))
        self.body = IntermediateLayerGetter(trunk.module, return_layers={trunk.high: "out"})
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(trunk.high_channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)["out"])

    def loss(self, batch: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
        return F.cross_entropy(self(batch), torch.tensor(labels), label_smoothing=self.label_smoothing)

    def score(self, examples: Examples, size: int) -> float:
        return accuracy(self, examples, size)


class TrunkMimic(nn.Module):
    """A backbone's trunk learning to reproduce a frozen MobileNetV2 trunk's features (ImageNet's, or a
    shipped MobileNetV2 segmentation file's: ``teacher_init`` takes what ``load_backbone_weights`` does).

    Both taps of each trunk (stride 8, and the deep end at stride 32) are compared: the student's
    map goes through a 1x1 projection to the teacher's channels (resized to the teacher's grid where
    the strides differ, as ResNet50's stride-16 low tap) and is scored by its cosine similarity with
    the teacher's map at every position. ``body`` has the segmentation ``backbone`` keys.
    """

    metric, metric_label = "val_similarity", "val feature similarity"

    def __init__(self, backbone: str, teacher_init: str = "imagenet"):
        super().__init__()
        if backbone not in BACKBONES:
            raise PretrainError(f"unknown backbone {backbone!r}; one of {', '.join(BACKBONES)}")
        spec, teacher_spec = BACKBONES[backbone], BACKBONES[FEATURE_TEACHER]
        student = spec.build(max(spec.output_strides))
        teacher = teacher_spec.build(_teacher_output_stride(teacher_init, max(teacher_spec.output_strides)))
        self.body = IntermediateLayerGetter(student.module, return_layers={student.low: "low", student.high: "high"})
        self.teacher = IntermediateLayerGetter(teacher.module, return_layers={teacher.low: "low", teacher.high: "high"})
        # Loaded after the cut, as a segmentation model's backbone is: a shipped checkpoint's trunk
        # stops at the deep tap, so the layers past it (ImageNet's 1x1 conv to 1280) are not in it.
        self.teacher_source = load_backbone_weights(self.teacher, teacher_spec, teacher_init)
        self.teacher.requires_grad_(False)
        self.project = nn.ModuleDict({
            "low": nn.Conv2d(student.low_channels, teacher.low_channels, 1),
            "high": nn.Conv2d(student.high_channels, teacher.high_channels, 1),
        })

    def train(self, mode: bool = True) -> "TrunkMimic":
        super().train(mode)
        self.teacher.eval()  # frozen, batch-norm statistics included
        return self

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of the projected student maps with the teacher's, over both taps."""
        with torch.no_grad():
            target = self.teacher(x)
        scores = []
        for tap, features in self.body(x).items():
            mapped = self.project[tap](features)
            if mapped.shape[-2:] != target[tap].shape[-2:]:
                mapped = F.interpolate(mapped, size=target[tap].shape[-2:], mode="bilinear", align_corners=False)
            scores.append(F.cosine_similarity(mapped, target[tap], dim=1).mean())
        return torch.stack(scores).mean()

    @property
    def provenance(self) -> str:
        return f"feature distillation from MobileNetV2 [{self.teacher_source}]"

    def loss(self, batch: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
        return 1 - self.similarity(batch)  # labels unused: the teacher's features are the target

    def score(self, examples: Examples, size: int) -> float:
        return feature_similarity(self, examples, size)


def _teacher_output_stride(teacher_init: str, default: int) -> int:
    """A segmentation checkpoint's trunk runs as it was trained (dilated to stride 16); ImageNet's at 32."""
    if str(teacher_init).endswith(".safetensors") and Path(teacher_init).is_file():
        return int(read_metadata(teacher_init).model_kwargs.get("output_stride", default))
    return default


@torch.inference_mode()
def accuracy(model: nn.Module, examples: Examples, size: int, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(examples.labels), batch_size):
        logits = model(centre_crops(examples.images[start:start + batch_size], size))
        correct += int((logits.argmax(1) == torch.tensor(examples.labels[start:start + batch_size])).sum())
    return correct / max(len(examples.labels), 1)


@torch.inference_mode()
def feature_similarity(model: TrunkMimic, examples: Examples, size: int, batch_size: int = 64) -> float:
    """The example-weighted mean of :meth:`TrunkMimic.similarity` over centre crops."""
    model.eval()
    total = 0.0
    for start in range(0, len(examples.images), batch_size):
        chunk = examples.images[start:start + batch_size]
        total += float(model.similarity(centre_crops(chunk, size))) * len(chunk)
    return total / max(len(examples.images), 1)


def describe(model: TrunkClassifier | TrunkMimic, cfg: PretrainConfig, train: Examples, epoch: int,
             score: float, earlier_epochs: int = 0) -> str:
    """The trunk file's provenance line (metadata and model card)."""
    sources = " + ".join(f"{name} ({count})" for name, count in train.sources.items())
    blended = f", {cfg.mixup:.0%} of crops mixed up" if cfg.mixup else ""
    epochs = f"{earlier_epochs} epochs ({cfg.init_from}) + {epoch} more" if earlier_epochs else f"{epoch} epochs"
    return (f"{model.provenance} on {sources}, {epochs} at {cfg.size} px{blended}, "
            f"{model.metric_label} {score:.3f}")


def _saved_run(folder: str | Path, cfg: PretrainConfig, classes: list[str], advice: str = "") -> dict:
    """A run folder's ``state.pt``, checked to hold the same backbone, objective and classes as ``cfg``
    (``advice`` ends the error message otherwise)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise PretrainError(f"{folder}: no {STATE_FILE}; give the folder of a pretraining run")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    found = (saved["config"]["backbone"], saved["config"].get("objective", "classify"), saved["classes"])
    if found != (cfg.backbone, cfg.objective, classes):
        raise PretrainError(f"{folder} holds a {found[1]} run of {found[0]} with classes {found[2]}, "
                            f"not a {cfg.objective} run of {cfg.backbone} with classes {classes}{advice}")
    return saved


def pretrain(cfg: PretrainConfig, *, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Train (or resume) the run in ``cfg.out``; return its summary. ``out/trunk.pt`` is the best epoch's trunk."""
    if not (cfg.photos or cfg.data):
        raise PretrainError("pretraining needs photos (a folder of class folders), labelled data, or both")
    if cfg.objective not in OBJECTIVES:
        raise PretrainError(f"objective must be one of {', '.join(OBJECTIVES)}, not {cfg.objective!r}")
    if cfg.mixup and cfg.objective != "distill":
        raise PretrainError("mixup blends inputs whose target is the teacher's features: objective 'distill' only")
    out = Path(cfg.out)
    distill = cfg.objective == "distill"
    classes = label_classes(cfg.photos, cfg.data)
    short_side = round(cfg.size * STORED_SIDE)
    gather = dict(classes=classes, data=cfg.data, short_side=short_side, objects=not distill)
    train = gather_examples(photos=cfg.photos, split="train", progress=progress, **gather)
    val = gather_examples(photos=None, split="val", **gather) if cfg.data else None
    torch.manual_seed(cfg.seed)
    model = TrunkMimic(cfg.backbone, cfg.teacher) if distill else \
        TrunkClassifier(cfg.backbone, len(classes), cfg.label_smoothing)
    set_bn_momentum(model.body, 0.1)  # MobileNetV3's own 0.01 leaves eval-mode statistics far behind (see TrainConfig)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train.labels) / cfg.batch_size)
    steps = min(steps, cfg.max_steps_per_epoch or steps)
    state = {"epoch": 0, "history": [], "best": -1.0, "earlier_epochs": 0}
    if (out / STATE_FILE).is_file():
        saved = _saved_run(out, cfg, classes, advice="; use another --out")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {k: saved.get(k, state[k]) for k in state}
        log(f"resuming {out} after epoch {state['epoch']}")
    elif cfg.init_from:
        earlier = _saved_run(cfg.init_from, cfg, classes)
        model.load_state_dict(earlier["model"])  # weights only: the optimizer and schedule start afresh
        state["earlier_epochs"] = earlier["epoch"] + earlier.get("earlier_epochs", 0)
        log(f"starting from {cfg.init_from} after its {state['earlier_epochs']} epochs")
    log(f"pretraining {cfg.backbone}: {model.provenance}, {len(classes)} classes {classes}; "
        f"{len(train.labels)} examples ({train.sources}); val: {len(val.labels) if val else 0}")
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        generator = torch.Generator().manual_seed(cfg.seed + epoch)
        order = torch.randperm(len(train.labels), generator=generator).tolist()
        total = 0.0
        for step in tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False):
            chosen = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, (epoch - 1) * steps + step, cfg.epochs * steps)
            crops, _ = blend_neighbours(random_crops([train.images[i] for i in chosen], cfg.size, generator),
                                        cfg.mixup, generator)
            loss = model.loss(crops, [train.labels[i] for i in chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        recalibrate = torch.Generator().manual_seed(cfg.seed)
        update_bn((random_crops([train.images[i] for i in order[start:start + cfg.batch_size]], cfg.size, recalibrate)
                   for start in range(0, min(len(order), BN_BATCHES * cfg.batch_size), cfg.batch_size)), model.body)
        score = model.score(val, cfg.size) if val else float("nan")
        is_best = not val or score > state["best"]
        state["history"].append({"epoch": epoch, "loss": round(total / steps, 4), model.metric: score,
                                 "seconds": round(time.perf_counter() - started, 1)})
        state["epoch"] = epoch
        if val:
            state["best"] = max(state["best"], score)
        if is_best:
            trunk = {"state_dict": model.body.state_dict(),
                     "description": describe(model, cfg, train, epoch, score, state["earlier_epochs"])}
            atomic_write(out / TRUNK_FILE, lambda tmp: torch.save(trunk, tmp))
        saved = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "classes": classes,
                 "config": asdict(cfg)}
        atomic_write(out / STATE_FILE, lambda tmp: torch.save(saved, tmp))
        log(f"epoch {epoch}/{cfg.epochs}: loss {total / steps:.4f}  {model.metric.replace('_', ' ')} {score:.3f}"
            f"{'  (best)' if is_best else ''}  {state['history'][-1]['seconds']:.0f}s")
    return {"trunk": str(out / TRUNK_FILE), "classes": classes, "train": train.sources,
            "val_examples": len(val.labels) if val else 0, "history": state["history"]}
