"""Models: the architecture registry, where starting weights come from, checkpoints and their typed
metadata, the zoo ("open a model by name") and model cards.

Layers inside: ``registry`` (pure architecture) <- ``metadata`` <- ``checkpoints`` <- ``backbone_init``,
``zoo`` <- ``model_card``.
"""

from .checkpoints import (LoadedModel, load_checkpoint, make_metadata, read_metadata, resolve_checkpoint,
                          save_checkpoint, shipped_checkpoint, shipped_checkpoints)
from .metadata import CheckpointError, CheckpointMeta
from .registry import (BACKBONES, HEADS, UnknownModelError, build_model, count_parameters, default_output_stride,
                       head_logits, list_models, parse_model_name)
from .zoo import DEFAULT_CLASSES, UNTRAINED, is_trained, open_model, random_model

__all__ = ["LoadedModel", "load_checkpoint", "make_metadata", "read_metadata", "resolve_checkpoint",
           "save_checkpoint", "shipped_checkpoint", "shipped_checkpoints", "CheckpointError", "CheckpointMeta",
           "BACKBONES", "HEADS", "UnknownModelError", "build_model", "count_parameters", "default_output_stride",
           "head_logits", "list_models", "parse_model_name", "DEFAULT_CLASSES", "UNTRAINED", "is_trained",
           "open_model", "random_model"]
