"""Inference: pre/post-processing (:mod:`.processing`), the predictor (:mod:`.predictor`), the one
evaluation loop (:mod:`.evaluate`) and the runtimes that run the network (:mod:`.runtimes`)."""

from .evaluate import confusions, evaluate, evaluate_sharded, image_miou, miou_of, per_image_scores
from .predictor import Predictor, SharedPredictor, Timing, predict
from .processing import normalisation_arrays, prepare_image, upsample_argmax

__all__ = ["confusions", "evaluate", "evaluate_sharded", "image_miou", "miou_of", "per_image_scores", "Predictor",
           "SharedPredictor", "Timing", "predict",
           "normalisation_arrays", "prepare_image", "upsample_argmax"]
