"""Training: the resumable loop (:mod:`.loop`), batch augmentation on the device
(:mod:`.device_augment`) and the moving average of the weights (:mod:`.weight_average`)."""

from .loop import STATE_FILE, Trainer, TrainConfig, lr_factor, segmentation_loss, train, training_machine

__all__ = ["STATE_FILE", "Trainer", "TrainConfig", "lr_factor", "segmentation_loss", "train", "training_machine"]
