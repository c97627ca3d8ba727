"""``python -m garbseg``: list, train, evaluate, run and benchmark segmentation models."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

from tqdm.auto import tqdm

from .bench import bench_runtimes, write_results
from .core import distributed
from .core.errors import GarbsegError
from .core.machine import torch_threads
from .core.paths import cache_root, default_data_dir
from .data import available_splits, load_dataset, require_classes
from .data.export import FORMATS, parse_formats
from .inference import Predictor, evaluate_sharded
from .inference.runtimes import parse_runtimes, runtimes_help
from .inference.runtimes.cache import cache_entries, clean_cache
from .models import DEFAULT_CLASSES, open_model, parse_model_name, shipped_checkpoints
from .present.batch import SUMMARY_FILE, plan_images, predict_images
from .train import TrainConfig, train

DATA_HELP = ("labelled data: a YOLOv8-seg root with data.yaml, a split folder with images/ + labels/, "
             "an image+mask folder set, or a COCO JSON (default: $GARBSEG_DATA, else ../shared/data/garbage-seg "
             "beside the checkout, else the embedded sample set)")
FLIP_HELP = ("test-time flip averaging: the class probabilities of each photo and of its mirror image, averaged, "
             "at twice the network's work")


class CLIError(GarbsegError):
    """An error to print as one line, without a traceback."""


# --- option values: every number is checked here, as argparse types (one line, exit 2) ----------

def _ranged(kind, low=None, high=None, what="", *, low_open=False):
    """An argparse ``type=`` that parses ``kind`` and refuses values outside ``low..high`` (and NaN/inf)."""
    bounds = (f"{'more than' if low_open else 'at least'} {low}" if high is None
              else f"at most {high}" if low is None else f"{low}..{high}")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {bounds}{what}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


SIZE = _ranged(int, 16, 4096, " px")
COUNT = _ranged(int, 1)  # epochs, batch size, runs, steps, images
NON_NEGATIVE = _ranged(int, 0)
THREADS = _ranged(int, 1, 1024)
POSITIVE = _ranged(float, 0, low_open=True)  # learning rate, seconds
NON_NEGATIVE_FLOAT = _ranged(float, 0)
FRACTION = _ranged(float, 0, 1)  # opacity, momentum, decay, smoothing


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block): ``prog: error: what (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# --- commands ----------------------------------------------------------------------------------

def cmd_models(args) -> None:
    rows = []
    for name, path in shipped_checkpoints().items():
        backbone, head = parse_model_name(name)
        rows.append({"name": name, "backbone": backbone, "head": head, "checkpoint": str(path) if path else None})
    if args.json:
        _print_json(rows)
    else:
        print(_table(rows, ["name", "backbone", "head", "checkpoint"]))


def cmd_train(args) -> None:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    cfg = TrainConfig(**overrides)
    trainer = train(cfg, resume=args.resume)
    if not trainer.is_main:  # under torchrun, one report for the run
        return
    written = [name for name in ("best.safetensors", "last.safetensors") if (Path(trainer.out) / name).is_file()]
    if not written:
        raise CLIError(f"no checkpoint was written into {trainer.out} (no epoch finished)")
    print(f"best val mIoU {trainer.best_miou:.4f}; checkpoints in {trainer.out} ({', '.join(written)})")


def _open_data(path, split, skip_broken=False):
    splits = available_splits(path)
    dataset = load_dataset(path, split if splits else None, on_error="skip" if skip_broken else "raise")
    if skip_broken:
        dataset.validate()  # warns about and drops broken samples before scoring
    return dataset


def cmd_eval(args) -> None:
    predictor = Predictor.from_checkpoint(args.checkpoint, args.size, runtime=_one_runtime(args.runtime),
                                          threads=args.threads, flip=args.flip)
    dataset = _open_data(args.data, args.split, args.skip_broken)
    distributed.init_from_env()  # under torchrun each rank scores its share; the matrices are summed
    try:
        with torch_threads(args.threads):
            metrics = evaluate_sharded(predictor, dataset, batch_size=args.batch_size,
                                       progress=not args.json and distributed.is_main())
    finally:
        rank, world = distributed.rank(), distributed.world_size()
        distributed.shutdown()
    if world > 1:
        if rank != 0:
            return  # one report, from rank 0
        metrics["world_size"] = world
    metrics["model"] = predictor.loaded.name
    metrics["runtime"] = args.runtime
    metrics["resolved_runtime"] = predictor.resolved_runtime
    metrics["checkpoint"] = str(predictor.loaded.path)
    metrics["size"] = predictor.size
    metrics["flip"] = predictor.flip
    metrics.pop("image_confusions")
    if args.per_image:
        _write_per_image(metrics["per_image"], Path(args.per_image))
    if args.json:
        _print_json(metrics)
        return
    low, high = metrics["miou_ci95"] or (float("nan"), float("nan"))
    print(f"{metrics['model']} on {metrics['dataset']} ({metrics['num_images']} images at {metrics['size']} px, "
          f"runtime {metrics['resolved_runtime']}{', flip-averaged' if predictor.flip else ''})")
    print(f"mIoU {metrics['miou']:.4f} (95% CI {low:.4f}-{high:.4f}, bootstrap over images)  "
          f"pixel accuracy {metrics['pixel_accuracy']:.4f}  "
          f"precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}")
    rows = [{"class": c, "iou": metrics["per_class_iou"][c], "precision": metrics["per_class_precision"][c],
             "recall": metrics["per_class_recall"][c]} for c in metrics["per_class_iou"]]
    print(_table(rows, ["class", "iou", "precision", "recall"]))


def _write_per_image(entries: list[dict], path: Path) -> None:
    """One CSV row per photo: image, miou, pixel_accuracy, truth_classes (joined by '|')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "miou", "pixel_accuracy", "truth_classes"])
        writer.writeheader()
        for entry in entries:
            writer.writerow({**entry, "truth_classes": "|".join(entry["truth_classes"])})


PER_IMAGE_LINES = 20  # more photos than this: the progress bar alone, the summary CSV has the rest


def cmd_predict(args) -> None:
    formats = parse_formats(args.export)
    plan = plan_images(args.images)
    distributed.init_from_env()  # under torchrun each rank takes its share of the photos
    main = distributed.is_main()
    predictor = Predictor.from_checkpoint(args.checkpoint, args.size, runtime=_one_runtime(args.runtime),
                                          calibrate=args.calibrate, log=_stderr_log if main else None,
                                          flip=args.flip)
    if main:
        print(f"runtime: {predictor.resolved_runtime}" + (" (chosen by auto)" if args.runtime == "auto" else "")
              + (", each photo and its mirror image averaged" if predictor.flip else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def report(item, row) -> None:
        if row["error"]:
            tqdm.write(f"skipped: {row['error']}", file=sys.stderr)
        elif len(plan) <= PER_IMAGE_LINES:
            tqdm.write(f"{item.path}: {row['classes_found'].replace(';', ', ') or 'background only'} "
                       f"({row['ms']:.1f} ms) -> {out / row['mask']}")

    try:
        result = predict_images(predictor, plan, out, alpha=args.alpha, export=formats,
                                progress=main and len(plan) > 1, on_image=report)
    finally:
        distributed.shutdown()
    if not main:
        return
    print(f"{len(plan) - result.failures} of {len(plan)} images segmented -> {out}; "
          + ", ".join(str(path) for path in result.written))
    if result.failures == len(plan):
        raise CLIError("no image could be read")


def _runtime_list(text: str) -> list[str]:
    try:
        return parse_runtimes(text)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


def _one_runtime(text: str) -> str:
    names = _runtime_list(text)
    if len(names) != 1:
        raise CLIError(f"one runtime please, not {len(names)} ({text})")
    return names[0]


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_bench(args) -> None:
    runtimes = _runtime_list(args.runtime)
    dataset = _open_data(args.data, args.split) if args.data else None
    loaded_models = [open_model(ref) for ref in args.checkpoint or []]
    for name in args.model or []:
        parse_model_name(name)
        classes = dataset.classes if dataset else _default_classes()
        loaded = open_model(name, classes, input_size=args.size or 224)
        if not loaded.trained:
            print(f"note: {name} has no shipped checkpoint; timing random weights (trained=false)", file=sys.stderr)
        loaded_models.append(loaded)
    if dataset is not None:  # before anything is timed: a mismatch would only surface at the end
        for loaded in loaded_models:
            require_classes(loaded.classes, dataset, model=loaded.name)
    rows = []
    for loaded in loaded_models:
        model_rows = bench_runtimes(loaded, runtimes, size=args.size, threads=args.threads, warmup=args.warmup,
                                    runs=args.runs, dataset=dataset, data_dir=args.data,
                                    log=None if args.json else _stderr_log)
        for row in model_rows:
            rows.append(row)
            if not args.json:
                ran = row["resolved_runtime"] + (f" (asked {row['runtime']})" if row["runtime"] != row["resolved_runtime"] else "")
                print(f"{row['model']} at {row['size']} px on {ran}: p50 {row['latency_p50_ms']:.1f} ms, "
                      f"p95 {row['latency_p95_ms']:.1f} ms, {row['fps']:.1f} FPS, "
                      f"{row['speedup_vs_torch'] or float('nan'):.2f}x torch"
                      + (f", mIoU {row['miou']:.4f}" if "miou" in row else ""), file=sys.stderr)
    if args.out:
        write_results(rows, args.out)
    if args.json:
        _print_json([{k: v for k, v in r.items() if k != "latency_samples_ms"} for r in rows])
    else:
        cols = ["model", "runtime", "resolved_runtime", "size", "threads", "trained", "params", "gflops", "size_mb",
                "latency_p50_ms", "latency_p95_ms", "fps", "speedup_vs_torch", "parity_agreement",
                "int8_miou_delta"] + (["miou", "precision", "recall"] if dataset else [])
        print(_table(rows, cols))


def cmd_cache(args) -> None:
    entries = cache_entries()
    total = sum(size for _, size, _ in entries)
    if args.clean:
        removed = clean_cache(int(args.max_size * 2**20))
        kept = total - sum(size for folder, size, _ in entries if folder in removed)
        print(f"removed {len(removed)} of {len(entries)} model folders from {cache_root()}; "
              f"{kept / 2**20:.1f} MB kept")
    else:
        print(f"{cache_root()}: {len(entries)} model folders, {total / 2**20:.1f} MB "
              "(python -m garbseg cache --clean [--max-size MB] frees it)")


def _default_classes() -> list[str]:
    """The default data set's classes when it is there (so int8 checks can measure mIoU), else the zoo's."""
    try:
        return list(load_dataset(default_data_dir(), "val").classes)
    except GarbsegError:
        return list(DEFAULT_CLASSES)


# --- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    data_dir = str(default_data_dir())
    runtime_help = runtimes_help()
    parser = _Parser(
        prog="python -m garbseg",
        description="Train, evaluate, run and benchmark garbage segmentation models. "
                    "Models are named <backbone>-<head>, e.g. mobilenet_v3_large-deeplabv3.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the model names and their shipped checkpoints",
                       description="List every backbone x head pairing and the checkpoint shipped for it.")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, backbone, head, checkpoint}")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model", description=(
        "Train a model with the seed recipe (AdamW, batch 8, 224 crops of 256 resizes, flips, rotation, "
        "affine), writing best/last checkpoints after every epoch into --out. A killed run continues "
        "with --resume. Under torchrun (e.g. `torchrun --standalone --nproc_per_node=2 -m garbseg train ...`) "
        "the same run trains with DistributedDataParallel: --batch-size is the global batch, shared evenly."))
    p.add_argument("--model", required=True, help="model name, see `python -m garbseg models`")
    p.add_argument("--data", default=data_dir, help=DATA_HELP)
    p.add_argument("--epochs", type=COUNT, help="number of epochs (default 10)")
    p.add_argument("--out", help="run folder (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    p.add_argument("--backbone-init", dest="backbone_init",
                   help="random (default), imagenet, a state_dict file for the backbone, or a garbseg "
                        "checkpoint (.safetensors) of a model with the same backbone, whose trunk is taken")
    p.add_argument("--batch-size", dest="batch_size", type=COUNT,
                   help="images per step in total (default 8); under torchrun each process takes its share")
    p.add_argument("--lr", type=POSITIVE, help="AdamW learning rate (default 1e-4 MobileNets, 5e-5 ResNet50)")
    p.add_argument("--weight-decay", dest="weight_decay", type=NON_NEGATIVE_FLOAT,
                   help="AdamW weight decay (default 1e-4)")
    p.add_argument("--schedule", choices=["cosine", "poly", "constant"], help="learning-rate schedule (default cosine)")
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=NON_NEGATIVE, help="linear warm-up epochs (default 0)")
    p.add_argument("--size", type=SIZE, help="training crop and inference size (default 224)")
    p.add_argument("--resize", type=SIZE, help="square resize before cropping (default 256)")
    p.add_argument("--output-stride", dest="output_stride", type=int, choices=[8, 16, 32], help="backbone output stride (8, 16, 32)")
    p.add_argument("--no-aux-loss", dest="aux_loss", action="store_false", default=None,
                   help="train without the auxiliary head")
    p.add_argument("--bf16", dest="bf16", action="store_true", default=None, help="force bf16 autocast")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="disable bf16 autocast")
    p.add_argument("--num-workers", dest="num_workers", type=NON_NEGATIVE, help="data loader processes (default 0)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--max-steps-per-epoch", dest="max_steps_per_epoch", type=COUNT, help="cap steps (quick trials)")
    p.add_argument("--limit-val", dest="limit_val", type=COUNT, help="validate on the first N images only")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--augment-on-device", dest="augment_on_device", action="store_true", default=None,
                   help="augment whole batches as tensors on --device (keeps a GPU busy)")
    p.add_argument("--val-every", dest="val_every", type=COUNT, help="validate every N epochs and after the last (default 1)")
    p.add_argument("--time-budget", dest="time_budget_s", type=POSITIVE,
                   help="seconds: after the first epochs, run as many epochs (up to --epochs) as fit")
    p.add_argument("--backbone-lr-scale", dest="backbone_lr_scale", type=NON_NEGATIVE_FLOAT,
                   help="backbone learning rate relative to the heads (default 1; e.g. 0.1 for a pretrained trunk)")
    p.add_argument("--bn-momentum", dest="bn_momentum", type=FRACTION, help="BatchNorm momentum (default 0.1)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no random augmentation (flips, affine, colour jitter): resize and normalise only")
    p.add_argument("--freeze-bn", dest="freeze_bn", action="store_true", default=None,
                   help="keep batch norm in eval mode while training (fixed statistics, as the paper fine-tuned; "
                        "under torchrun, N processes then train exactly as one with the same global batch)")
    p.add_argument("--label-smoothing", dest="label_smoothing", type=FRACTION, help="cross-entropy label smoothing")
    p.add_argument("--lovasz-weight", dest="lovasz_weight", type=NON_NEGATIVE_FLOAT,
                   help="weight of the Lovász-softmax loss, a surrogate of 1 - IoU per class, next to "
                        "cross-entropy (default 0: none)")
    p.add_argument("--ema-decay", dest="ema_decay", type=FRACTION,
                   help="validate and save a moving average of the weights with this per-step decay "
                        "(e.g. 0.998; default: off, the raw weights)")
    p.add_argument("--init-from", dest="init_from",
                   help="start from the weights of a garbseg checkpoint of the same model (continue training)")
    p.add_argument("--skip-broken", dest="on_error", action="store_const", const="skip",
                   help="leave out unreadable images or labels with a warning instead of stopping")
    p.add_argument("--extra-data", dest="extra_data",
                   help="a second training set with the same classes, e.g. pseudo-labelled TrashNet "
                        "(python -m scripts.pseudo_label --out runs/pseudo/trashnet); validation stays on --data")
    p.add_argument("--extra-ratio", dest="extra_ratio", type=NON_NEGATIVE_FLOAT,
                   help="extra photos per epoch, relative to the --data train photos (default 1: half of each epoch)")
    p.add_argument("--teacher", nargs="+", metavar="CHECKPOINT",
                   help="distil from this checkpoint or model name: its soft outputs on the same augmented batch; "
                        "several teach with the mean of their class probabilities")
    p.add_argument("--distill-weight", dest="distill_weight", type=NON_NEGATIVE_FLOAT,
                   help="weight of the distillation loss next to cross-entropy (default 1)")
    p.add_argument("--distill-temperature", dest="distill_temperature", type=POSITIVE,
                   help="softmax temperature of the distillation loss (default 1)")
    p.add_argument("--teacher-size", dest="teacher_size", type=SIZE,
                   help="input size the teacher runs at (default: its own; smaller is cheaper)")
    p.add_argument("--copy-paste", dest="copy_paste", type=FRACTION,
                   help="share of each batch's photos that get another photo's objects pasted in (default 0)")
    p.add_argument("--distill-mixup", dest="distill_mixup", type=FRACTION,
                   help="share of each batch's photos blended with another and taught by the --teacher alone, "
                        "their labels ignored (default 0)")
    p.set_defaults(func=cmd_train)

    def add_checkpoint(p, many=False):
        p.add_argument("--checkpoint", required=not many, nargs="+" if many else None,
                       help="a .safetensors checkpoint, a training run folder, a model name with a shipped "
                            "checkpoint, or a foreign torch file (seed notebook / torchvision state_dict)")

    p = sub.add_parser("eval", help="evaluate a checkpoint on labelled data",
                       description="Confusion-matrix metrics over the whole split: mIoU, per-class IoU, "
                                   "pixel accuracy, class-weighted precision and recall.")
    add_checkpoint(p)
    p.add_argument("--data", default=data_dir, help=DATA_HELP)
    p.add_argument("--split", default="val", help="split inside a data root (default val)")
    p.add_argument("--size", type=SIZE, help="input size (default: the checkpoint's)")
    p.add_argument("--batch-size", dest="batch_size", type=COUNT, default=4)
    p.add_argument("--threads", type=THREADS, help="torch threads (default: all cores)")
    p.add_argument("--skip-broken", action="store_true",
                   help="leave out unreadable images or labels with a warning instead of stopping")
    p.add_argument("--runtime", default="torch", help=runtime_help + " (default torch: the reference scores "
                   "recorded in checkpoints; other runtimes show their own accuracy)")
    p.add_argument("--flip", action="store_true", help=FLIP_HELP + " (the scores recorded in checkpoints "
                   "score the photo alone)")
    p.add_argument("--per-image", dest="per_image", metavar="FILE.csv",
                   help="also write one row per photo (image, miou, pixel_accuracy, truth_classes) to this CSV")
    p.add_argument("--json", action="store_true", help="print one JSON object (with miou_ci95: a 95%% bootstrap "
                   "interval over images, and per_image: one entry per photo)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="segment images, writing masks and overlays",
                       description="For each image write <name>_mask.png (class ids, palette PNG) and "
                                   "<name>_overlay.png into --out, keeping the images' folders relative to "
                                   f"the inputs, and one {SUMMARY_FILE} row per image (classes found, pixel "
                                   "shares). Under torchrun each process takes its share of the images.")
    add_checkpoint(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads) or folders "
                   "(searched recursively)")
    p.add_argument("--export", help=f"also write labels, a comma list of {','.join(FORMATS)}: COCO JSON with RLE "
                   "(coco.json), YOLOv8-seg polygons (labels/ + data.yaml), CVAT Segmentation mask 1.1 "
                   "(cvat.zip); the photos are linked into images/ so the sets load back as data")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=SIZE, help="input size (default: the checkpoint's)")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--flip", action="store_true", help=FLIP_HELP)
    p.add_argument("--runtime", default="auto", help=runtime_help + " (default auto; it considers int8 runtimes "
                   "only once they are calibrated, see --calibrate)")
    p.add_argument("--calibrate", action="store_true",
                   help="let auto calibrate and check the int8 runtimes it has not yet (minutes per model on "
                        "trained weights, once: cached like every check); bench --runtime auto does the same")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="measure latency, cost and accuracy", description=(
        "Batch-1 latency (median and p95 after warm-up), FPS, parameters, GFLOPs and file size; with "
        "--data also mIoU, per-class IoU, precision and recall. One row per model and runtime."))
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", nargs="+", help="checkpoint files or run folders")
    group.add_argument("--model", action="append", help="model name (repeatable); uses its shipped "
                                                        "checkpoint, or random weights flagged trained=false")
    p.add_argument("--size", type=SIZE, help="square input size for every model (default: each checkpoint's own)")
    p.add_argument("--threads", type=THREADS, help="torch threads (default: all cores)")
    p.add_argument("--runs", type=COUNT, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=NON_NEGATIVE, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument("--data", help="labelled data for accuracy columns; " + DATA_HELP)
    p.add_argument("--split", default="val", help="split inside a data root (default val)")
    p.add_argument("--runtime", default="torch", help=runtime_help + " Comma list: one row per model and "
                   "runtime, each with speedup_vs_torch against eager measured in the same run (default torch)")
    p.add_argument("--out", help="also write the table to this .csv or .json file")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("cache", help="show or clean the runtime cache", description=(
        "The runtime cache (exports, checks, auto's choices; $GARBSEG_CACHE or .garbseg_cache/) grows with "
        "every model and size used. --clean deletes model folders, least recently used first; they are "
        "rebuilt on next use. Benchmark results are not touched."))
    p.add_argument("--clean", action="store_true", help="delete cached model folders")
    p.add_argument("--max-size", dest="max_size", type=NON_NEGATIVE_FLOAT, default=0.0,
                   help="with --clean: keep the most recently used folders up to this many MB (default 0: all)")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (GarbsegError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
