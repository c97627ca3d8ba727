"""Training: the resumable loop (:mod:`.loop`), batch augmentation on the device
(:mod:`.device_augment`), the moving average of the weights (:mod:`.weight_average`), and the
ingredients for training beyond the labelled split: a second, pseudo-labelled set (:mod:`.mixing`,
made by :mod:`.pseudo_labels`), copy-paste (:mod:`.copy_paste`), distillation (:mod:`.distill`), a loss that
follows IoU (:mod:`.lovasz`), and backbone pretraining by classification (:mod:`.pretrain`)."""

from .loop import STATE_FILE, Trainer, TrainConfig, lr_factor, segmentation_loss, train, training_machine

__all__ = ["STATE_FILE", "Trainer", "TrainConfig", "lr_factor", "segmentation_loss", "train", "training_machine"]
