"""Training loop: the seed paper's recipe by default, every part overridable, resumable at any moment.

A run lives in one folder: ``last.safetensors`` and ``best.safetensors`` (inference checkpoints with
metadata), ``state.pt`` (optimizer, scheduler, epoch, history: plain tensors and numbers, so it loads
with ``weights_only=True``) and ``history.json``. Everything is written atomically at the end of each
epoch, so a run killed at any moment loses at most the epoch in progress, and ``resume=True``
continues it. Each epoch reseeds from ``seed + epoch``: a resumed run sees the same data order and
augmentations as an uninterrupted one.

Under ``torchrun`` the same loop trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA):
``batch_size`` is the global batch, split evenly over the processes; every rank draws the same
epoch order (seeded per epoch) and takes its slice of each batch, the images a single process
would walk, so one step sees the same images however many processes share it; validation sums one
confusion matrix over ranks; rank 0 alone logs and writes the run folder, and every rank resumes
from it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core import distributed
from ..core.errors import GarbsegError
from ..core.files import atomic_write, remove_partial_writes
from ..core.machine import cpu_name, cpu_supports_bf16
from ..data import IGNORE_INDEX, TrainTransform, load_dataset
from ..inference import Predictor, evaluate_sharded
from ..models import (BACKBONES, CheckpointMeta, LoadedModel, build_model, default_output_stride, load_checkpoint,
                      make_metadata, parse_model_name, save_checkpoint)
from ..models.backbone_init import initialise_backbone
from .copy_paste import copy_paste
from .device_augment import AugmentParams, DeviceTrainSet
from .distill import blend_for_teacher, distillation_loss, load_teacher
from .lovasz import lovasz_softmax_loss
from .mixing import MixedTrainSet
from .weight_average import WeightEMA

STATE_FILE = "state.pt"
RUN_FILES = ["last.safetensors", "best.safetensors", "history.json", STATE_FILE]  # written atomically


class TrainError(GarbsegError, ValueError):
    """A run that cannot start or continue as asked; the message says why."""


@dataclass
class TrainConfig:
    """The recipe. Defaults follow the seed notebook (AdamW, batch 8, 224 crops of 256 resizes)."""

    model: str
    data: str
    out: str | None = None  # run folder; default runs/<model>
    epochs: int = 10
    batch_size: int = 8  # the global batch: under torchrun each process takes batch_size / world_size
    lr: float | None = None  # None: 1e-4 for MobileNets, 5e-5 for ResNet50 (the seed's values)
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_epochs: int = 0
    size: int = 224  # training crop and inference input size
    resize: int = 256
    hflip: float = 0.5
    vflip: float = 0.0
    rotation: float = 15.0
    scale: tuple[float, float] = (0.8, 1.2)
    translate: float = 0.1
    color_jitter: float = 0.2
    augment: bool = True  # False: no random augmentation at all (resize and normalise only)
    aux_loss: bool = True  # auxiliary FCN head on DeepLabv3/FCN (torchvision's weight 0.5)
    aux_weight: float = 0.5
    label_smoothing: float = 0.0
    # Weight of the Lovász-softmax loss (garbseg.train.lovasz), a surrogate of 1 - IoU per class, added
    # to cross-entropy on the main output: mIoU counts a small class as much as the background.
    lovasz_weight: float = 0.0
    # torchvision's MobileNetV3 sets BatchNorm momentum 0.01: in short from-scratch runs its running
    # statistics lag the weights so far that eval-mode predictions stayed all background for 8-9
    # epochs. 0.1 (PyTorch's default) on every BN layer; None keeps the architecture's own.
    bn_momentum: float | None = 0.1
    # Batch norm in eval mode while training (running statistics fixed, affine weights still learn),
    # as the seed paper fine-tuned. Also what makes N processes train exactly like one: otherwise
    # each process normalises with the statistics of its own share of the batch.
    freeze_bn: bool = False
    backbone_lr_scale: float = 1.0  # learning rate of the backbone relative to the heads
    # Validate and export an exponential moving average of the weights (garbseg.train.weight_average)
    # with this per-step decay; None trains and scores the raw weights.
    ema_decay: float | None = None
    output_stride: int | None = None
    backbone_init: str = "random"
    init_from: str | None = None  # a garbseg checkpoint whose weights start this run (continue training)
    train_split: str = "train"
    # A second training set with the same classes (e.g. pseudo-labelled TrashNet, garbseg.train.mixing):
    # each epoch adds extra_ratio x (train photos) of its photos, a new random subset every epoch.
    extra_data: str | None = None
    extra_split: str = "train"
    extra_ratio: float = 1.0
    # Distillation (garbseg.train.distill): a trained checkpoint whose soft outputs on the same
    # augmented batch the student also matches, loss = CE + distill_weight * T^2 * KL. Several
    # checkpoints teach together: the mean of their class probabilities.
    teacher: str | list[str] | None = None
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    teacher_size: int | None = None  # the teacher's input size; None: its own (what it was trained at)
    copy_paste: float = 0.0  # share of each batch's photos that receive another photo's objects
    # Share of each batch's photos blended with another (mixup) and taught by the teacher alone
    # (garbseg.train.distill.blend_for_teacher, "function matching"); needs a teacher.
    distill_mixup: float = 0.0
    val_split: str = "val"
    bf16: bool | None = None  # None: on where the CPU has native bf16 (or on CUDA)
    num_workers: int = 0
    on_error: str = "raise"  # or "skip": leave out broken images/labels with a warning
    seed: int = 0
    max_steps_per_epoch: int | None = None  # for quick trials and tests
    limit_val: int | None = None  # evaluate on the first N val images only
    val_every: int = 1  # validate (and write the run folder) every N epochs, and after the last
    device: str = "cpu"
    # Augment whole batches on the device (garbseg.train.device_augment) instead of per image in a
    # DataLoader: the way to keep a GPU busy. Photos are stored squashed to ``resize`` square.
    augment_on_device: bool = False
    # Wall-clock budget: after ``probe_epochs`` epochs the run sets ``epochs`` to what fits in the
    # budget (never more than asked), so a shared GPU lease ends on time with a full LR schedule.
    time_budget_s: float | None = None
    probe_epochs: int = 3  # the first epoch (cuDNN autotuning, cold caches) is left out of the pace
    extra: dict = field(default_factory=dict)  # free-form notes recorded in the metadata

    def resolved(self) -> "TrainConfig":
        backbone, head = parse_model_name(self.model)
        lr = self.lr if self.lr is not None else BACKBONES[backbone].default_lr
        out = self.out or str(Path("runs") / self.model)
        stride = self.output_stride or default_output_stride(self.model)
        # One teacher is a name whether it came alone or as a list of one (the CLI's --teacher A).
        teacher = self.teacher
        if teacher is not None and not isinstance(teacher, str):
            teacher = [*teacher]
            teacher = teacher[0] if len(teacher) == 1 else teacher or None
        return TrainConfig(**{**asdict(self), "lr": lr, "out": out, "output_stride": stride, "teacher": teacher,
                              "aux_loss": self.aux_loss and head != "lraspp", "scale": tuple(self.scale)})


def training_machine(device: str) -> str:
    """Where the run trained, for the model card: the GPU's name, or the CPU model and its threads."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU {cpu_name()}, {torch.get_num_threads()} threads"


def continuation_record(meta: CheckpointMeta, ref) -> dict:
    """What a continued run started from, for its metadata: the earlier run's epochs, machine, score,
    how its backbone began and the data it saw (the continued run's own config knows neither)."""
    scored = meta.training_metrics or meta.metrics or {}
    record = {"checkpoint": Path(str(ref)).name, "epoch": meta.epoch, "machine": meta.machine,
              "train_seconds": meta.train_seconds, "commit": meta.commit, "val_miou": scored.get("miou"),
              "backbone_init": meta.backbone_init, "data": meta.data.get("name")}
    if meta.continued_from:
        record["continued_from"] = meta.continued_from
    return record


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` (linear warm-up first)."""
    warm = cfg.warmup_epochs * total // max(cfg.epochs, 1)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "poly":
        return (1 - progress) ** 0.9
    return 1.0


def segmentation_loss(outputs: dict, target: torch.Tensor, aux_weight: float,
                      label_smoothing: float = 0.0, lovasz_weight: float = 0.0) -> torch.Tensor:
    def ce(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)

    loss = ce(outputs["out"])
    if lovasz_weight:
        loss = loss + lovasz_weight * lovasz_softmax_loss(outputs["out"], target)
    if "aux" in outputs:
        loss = loss + aux_weight * ce(outputs["aux"])
    return loss


def set_bn_momentum(model: torch.nn.Module, momentum: float | None) -> None:
    if momentum is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def param_groups(model: torch.nn.Module, lr: float, backbone_lr_scale: float) -> list[dict]:
    """The backbone at ``lr * backbone_lr_scale`` (a pretrained trunk needs gentler steps), the rest at ``lr``."""
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    return [{"params": backbone, "lr": lr * backbone_lr_scale}, {"params": rest, "lr": lr}]


class Trainer:
    """Owns one run: data, model, optimiser, and the run folder."""

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] = print, progress: bool = True):
        self.cfg = cfg.resolved()
        c = self.cfg
        distributed.init_from_env(c.device)
        c.device = distributed.local_device(c.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if c.batch_size % self.world_size:
            raise TrainError(f"batch size {c.batch_size} (the global batch) does not split evenly over "
                                  f"{self.world_size} processes")
        if c.distill_mixup and not c.teacher:
            raise TrainError("distill_mixup blends photos that only a teacher can label: give a teacher")
        self.batch_per_process = c.batch_size // self.world_size
        self.is_main = self.rank == 0
        self.log = log if self.is_main else _silent  # one voice: rank 0 logs, the others stay quiet
        self.progress = progress and self.is_main
        self.out = Path(self.cfg.out)
        torch.manual_seed(c.seed)
        if c.device.startswith("cuda"):
            # Validation must score what float32 CPU inference scores: no TF32 shortcuts.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        # On the device, DeviceTrainSet augments whole batches; a per-image transform would go unused.
        transform = None if c.augment_on_device else TrainTransform(
            size=c.size, resize=c.resize, **_augmentation(c))
        split_options = dict(cache=True, cache_max_side=c.resize, on_error=c.on_error, transform=transform)
        primary = load_dataset(c.data, c.train_split, **split_options)
        mixing = c.extra_data and c.extra_ratio > 0  # a ratio of 0 is the same as no extra set
        extra = load_dataset(c.extra_data, c.extra_split, **split_options) if mixing else None
        self.val_set = load_dataset(c.data, c.val_split, cache=True, on_error=c.on_error)
        if c.on_error == "skip":  # drop broken samples for good, so none is counted twice
            for dataset in (primary, extra, self.val_set):
                if dataset is not None:
                    dataset.validate()
        self.train_set = MixedTrainSet(primary, extra, c.extra_ratio)
        if c.limit_val:
            self.val_set.samples = self.val_set.samples[: c.limit_val]
        self.classes = list(self.train_set.classes)
        self.model = initialise_backbone(build_model(c.model, num_classes=len(self.classes), aux_loss=c.aux_loss,
                                                     output_stride=c.output_stride), c.backbone_init).to(c.device)
        self.continued_from: dict | None = None
        if c.init_from:
            self._load_weights(c.init_from)
        set_bn_momentum(self.model, c.bn_momentum)
        if c.device.startswith("cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        # After the start weights are loaded and laid out: the average begins where training begins.
        self.ema = WeightEMA(self.model, c.ema_decay) if c.ema_decay else None
        self.device_set = None
        if c.augment_on_device:
            params = AugmentParams(size=c.size, **{k: v for k, v in _augmentation(c).items() if k != "vflip"})
            self.device_set = DeviceTrainSet(self.train_set, params, device=c.device,
                                             store_side=max(c.resize, math.ceil(c.size * max(c.scale))))
        # The model steps through DDP (gradients averaged over ranks); self.model stays the bare
        # module that is saved, averaged and validated.
        self.stepper = (DistributedDataParallel(self.model) if self.world_size > 1 else self.model)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, c.lr, c.backbone_lr_scale),
                                           lr=c.lr, weight_decay=c.weight_decay)
        self.steps_per_epoch = self.train_set.epoch_size // c.batch_size  # whole batches only
        if c.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, c.max_steps_per_epoch)
        # The lambda reads the current length, so a time budget can shorten the schedule mid-run.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(self.cfg, s, self.steps_per_epoch * self.cfg.epochs))
        self.bf16 = c.bf16 if c.bf16 is not None else (c.device.startswith("cuda") or cpu_supports_bf16())
        self.teacher = (load_teacher(c.teacher, self.classes, device=c.device, size=c.teacher_size)
                        if c.teacher else None)
        self.epoch = 0
        self.history: list[dict] = []
        self.best_miou = -1.0
        self.train_seconds = 0.0

    def _load_weights(self, ref: str) -> None:
        """Start from a garbseg checkpoint of the same model (its auxiliary head, if any, stays new)."""
        loaded = load_checkpoint(ref)
        if loaded.name != self.cfg.model or loaded.classes != self.classes:
            raise TrainError(f"{ref}: a {loaded.name} checkpoint for classes {loaded.classes} cannot start a "
                             f"{self.cfg.model} run on {self.classes}")
        missing, unexpected = self.model.load_state_dict(loaded.model.state_dict(), strict=False)
        if unexpected or any(not k.startswith("aux_classifier.") for k in missing):
            raise TrainError(f"{ref}: weights do not fit {self.cfg.model} (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        self.continued_from = continuation_record(loaded.meta, ref)
        self.log(f"starting from the weights of {ref} (epoch {loaded.meta.epoch})")

    # --- persistence --------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_miou": self.best_miou,
            "train_seconds": self.train_seconds,
            "history_json": json.dumps(self.history),
            "config_json": json.dumps(asdict(self.cfg)),
        }

    def resume(self) -> bool:
        """Load ``state.pt`` if present; return whether a run was resumed."""
        path = self.out / STATE_FILE
        for leftover in remove_partial_writes(self.out, RUN_FILES):  # a killed run's half-written files
            self.log(f"removed {leftover.name}, left by an interrupted write")
        if not path.is_file():
            return False
        try:
            state = torch.load(path, map_location=self.cfg.device, weights_only=True)
            saved = json.loads(state["config_json"])
        except Exception as exc:  # truncated, garbled or foreign: never retried without weights_only
            raise TrainError(f"{path} is damaged or not a garbseg training state ({type(exc).__name__}); "
                             f"delete it to start the run over, or use another --out") from None
        if self.cfg.time_budget_s:  # the budget fixed the schedule's length once; keep it
            self.cfg.epochs = int(saved["epochs"])
        for key in ("model", "output_stride", "aux_loss", "size"):
            if saved[key] != getattr(self.cfg, key):
                raise TrainError(f"{path}: the run used {key}={saved[key]!r}, not {getattr(self.cfg, key)!r}; "
                                 "use another --out folder or the same settings")
        self.model.load_state_dict(state["model"])
        if self.ema:
            if "ema" not in state:
                raise TrainError(f"{path}: the run kept no weight average; resume it without ema_decay")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best_miou = float(state["best_miou"])
        self.train_seconds = float(state["train_seconds"])
        self.history = json.loads(state["history_json"])
        self.log(f"resumed {self.out} after epoch {self.epoch} (best val mIoU {self.best_miou:.4f})")
        return True

    def metadata(self, metrics: dict) -> CheckpointMeta:
        c = self.cfg
        return make_metadata(
            self.model, classes=self.classes, input_size=c.size,
            model_kwargs={"output_stride": c.output_stride},
            trained=True,
            epoch=self.epoch,
            recipe={k: v for k, v in asdict(c).items() if k not in ("data", "out")}
            | {"bf16": self.bf16, "batch_per_process": self.batch_per_process}
            | ({"teacher": self.teacher.record} if self.teacher else {}),
            world_size=self.world_size,
            data=self.train_set.describe() | {"val_images": len(self.val_set), "val_split": c.val_split},
            metrics={k: metrics[k] for k in ("miou", "per_class_iou", "precision", "recall", "pixel_accuracy",
                                             "num_images") if k in metrics},
            train_seconds=round(self.train_seconds, 1),
            device=c.device,
            machine=training_machine(c.device),
            **({"continued_from": self.continued_from} if self.continued_from else {}),
        )

    def _save_epoch(self, metrics: dict, is_best: bool) -> None:
        if self.is_main:
            self._write_run_folder(metrics, is_best)
        distributed.barrier()  # no rank runs ahead of a run folder that is still being written

    def _write_run_folder(self, metrics: dict, is_best: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        meta = self.metadata(metrics)
        save_checkpoint(self.out / "last.safetensors", self.scored_model, meta)
        if is_best:
            save_checkpoint(self.out / "best.safetensors", self.scored_model, meta)
        history = json.dumps(self.history, indent=2)
        atomic_write(self.out / "history.json", lambda tmp: tmp.write_text(history))
        # state.pt last: if we die before it, the epoch is simply redone on resume.
        atomic_write(self.out / STATE_FILE, lambda tmp: torch.save(self._state(), tmp))

    # --- loop ---------------------------------------------------------------------------------

    def _batches(self, gen: torch.Generator, augment_seed: int):
        c = self.cfg
        order = self.train_set.epoch_order(gen)  # every rank draws the same order from the same seed
        if self.device_set is not None:
            return self.device_set.batches(c.batch_size, gen, order=order, rank=self.rank,
                                           world_size=self.world_size,
                                           augment_generator=torch.Generator().manual_seed(augment_seed)
                                           if self.world_size > 1 else None)
        # Rank r walks order[r::world_size], so step s of all ranks together covers
        # order[s * batch : (s + 1) * batch], as one process would.
        return DataLoader(self.train_set, batch_size=self.batch_per_process,
                          sampler=order[self.rank :: self.world_size].tolist(), drop_last=True,
                          num_workers=c.num_workers, persistent_workers=False)

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_epoch(self) -> float:
        c = self.cfg
        self._train_mode()
        gen = torch.Generator().manual_seed(c.seed * 1000 + self.epoch)
        # Augmentations draw from the global RNG; each rank its own stream (rank 0 the one-process one).
        augment_seed = c.seed * 1000 + self.epoch + 7919 * self.rank
        torch.manual_seed(augment_seed)
        loader = self._batches(gen, augment_seed)
        channels_last = c.device.startswith("cuda")
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{c.epochs}", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        # The loss sum stays on the device: reading it every step would stall a GPU's queue.
        total_loss, seen, t0 = torch.zeros((), device=c.device), 0, time.perf_counter()
        for step, (images, masks) in enumerate(loader):
            if step >= self.steps_per_epoch:
                break
            images, masks = images.to(c.device), masks.to(c.device)
            images, masks = copy_paste(images, masks, c.copy_paste)
            images, masks = blend_for_teacher(images, masks, c.distill_mixup)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(c.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
                outputs = self.stepper(images)
                soft = self.teacher.logits(images) if self.teacher else None
            loss = segmentation_loss(outputs, masks, c.aux_weight, c.label_smoothing, c.lovasz_weight)
            if soft is not None:
                loss = loss + c.distill_weight * distillation_loss(outputs["out"], soft, c.distill_temperature)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema:
                self.ema.update(self.model)
            total_loss += loss.detach() * len(images)
            seen += len(images)
            if self.progress:
                rate = seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.1f}",
                                lr=f"{self.scheduler.get_last_lr()[-1]:.1e}")
            bar.update(1)
        bar.close()
        # The mean loss over every rank's images, as one process would report it.
        sums = distributed.all_reduce_sum(np.array([total_loss.item(), seen], dtype=np.float64))
        return float(sums[0] / max(sums[1], 1))

    @property
    def scored_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average where the recipe keeps one."""
        return self.ema.model if self.ema else self.model

    def validate(self) -> dict:
        loaded = LoadedModel(self.scored_model.eval(), self.metadata({}), None)
        # Float32, as `garbseg eval` and the app run it: bf16 validation moved mIoU by ~0.02 on the
        # 60-image val split, so the best epoch and recorded metrics must come from float32.
        return evaluate_sharded(Predictor(loaded, runtime="torch"), self.val_set, batch_size=8, progress=False)

    def _fit_budget(self, elapsed: float, per_epoch: float) -> None:
        """After the probe epochs: as many epochs as the time budget holds at ``per_epoch`` seconds."""
        c = self.cfg
        fits = self.epoch + int((c.time_budget_s - elapsed) / per_epoch)
        epochs = max(self.epoch, min(c.epochs, fits))
        if epochs != c.epochs:
            self.log(f"time budget {c.time_budget_s:.0f}s at {per_epoch:.2f}s/epoch: {epochs} epochs, not {c.epochs}")
            self.cfg.epochs = epochs

    def fit(self) -> dict:
        """Train the remaining epochs; return the last epoch's history entry.

        ``c.epochs`` may shrink while this runs (time budget), so the loop reads it afresh.
        """
        c = self.cfg
        self.log(f"training {c.model} on {self.train_set.name} ({self.train_set.epoch_size} images an epoch, "
                 f"{len(self.classes)} classes) for {c.epochs} epochs -> {self.out}; bf16={self.bf16}")
        self.log(f"batch {c.batch_size} in total = {self.batch_per_process} per process x {self.world_size} "
                 f"process{'es' if self.world_size > 1 else ''}"
                 + (f" (DistributedDataParallel, {torch.distributed.get_backend()})" if self.world_size > 1 else ""))
        started = time.perf_counter() - self.train_seconds
        epoch_times: list[float] = []
        while self.epoch < c.epochs:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            epoch_seconds = time.perf_counter() - t0
            epoch_times.append(epoch_seconds)
            self.epoch += 1
            probe = bool(c.time_budget_s) and self.epoch == c.probe_epochs
            # Past 1.2x the budget (a slower pace than the probe saw) the run ends here, validated.
            if c.time_budget_s and time.perf_counter() - started > 1.2 * c.time_budget_s:
                self.log(f"time budget exceeded: stopping after epoch {self.epoch} of {c.epochs}")
                c.epochs = self.epoch
            if c.time_budget_s:  # clocks differ between ranks: rank 0's schedule is everyone's
                c.epochs = distributed.broadcast_int(c.epochs)
            entry = {"epoch": self.epoch, "loss": round(loss, 5), "epoch_seconds": round(epoch_seconds, 2)}
            validate = probe or self.epoch % max(c.val_every, 1) == 0 or self.epoch >= c.epochs
            if validate:
                t_val = time.perf_counter()
                metrics = self.validate()
                if probe:
                    self._fit_budget(time.perf_counter() - started,
                                     _pace(epoch_times, time.perf_counter() - t_val, c.val_every))
                    c.epochs = distributed.broadcast_int(c.epochs)
                is_best = metrics["miou"] > self.best_miou
                self.best_miou = max(self.best_miou, metrics["miou"])
                entry |= {"val_miou": round(metrics["miou"], 5),
                          "val_pixel_accuracy": round(metrics["pixel_accuracy"], 5), "best": is_best}
            self.train_seconds = time.perf_counter() - started
            self.history.append(entry)
            if validate:
                self._save_epoch(metrics, is_best)
                self.log(f"epoch {self.epoch}/{c.epochs}: loss {loss:.4f}  val mIoU {metrics['miou']:.4f}"
                         f"{'  (best)' if is_best else ''}  {epoch_seconds:.1f}s")
        return self.history[-1] if self.history else {}


def _augmentation(c: TrainConfig) -> dict:
    """The random augmentation's settings; all off when ``augment`` is False."""
    if not c.augment:
        return dict(hflip=0.0, vflip=0.0, rotation=0.0, scale=(1.0, 1.0), translate=0.0, color_jitter=0.0)
    return dict(hflip=c.hflip, vflip=c.vflip, rotation=c.rotation, scale=tuple(c.scale), translate=c.translate,
                color_jitter=c.color_jitter)


def _silent(message: str) -> None:
    pass


def _pace(epoch_times: list[float], val_seconds: float, val_every: int) -> float:
    """Seconds per epoch to plan with: the median epoch after the first (cuDNN autotuning, cold
    caches) plus one validation amortised over ``val_every`` epochs."""
    steady = sorted(epoch_times[1:] or epoch_times)
    return steady[len(steady) // 2] + val_seconds / max(val_every, 1)


def train(cfg: TrainConfig, *, resume: bool = False, **kwargs) -> Trainer:
    trainer = Trainer(cfg, **kwargs)
    try:
        if resume:
            trainer.resume()
        elif (trainer.out / STATE_FILE).exists():
            raise FileExistsError(f"{trainer.out} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        trainer.fit()
    finally:
        distributed.shutdown()
    return trainer
