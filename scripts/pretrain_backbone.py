"""Pretrain a backbone's trunk on TrashNet and garbage-seg train (classification or feature distillation).

Feature distillation learns from the ImageNet MobileNetV2, the one ImageNet trunk on this machine,
or from a MobileNetV2 segmentation file (``--teacher checkpoints/mobilenet_v2-lraspp.safetensors``).

    python -m scripts.pretrain_backbone mobilenet_v3_large                      # -> runs/pretrain/mobilenet_v3_large
    python -m scripts.pretrain_backbone mobilenet_v3_large --objective distill  # -> ..._large-distill
    python -m scripts.train_zoo mobilenet_v3_large-lraspp --recipe trashnet \\
        --set backbone_init=runs/pretrain/mobilenet_v3_large/trunk.pt ...

For MobileNetV3-Large and ResNet50, whose ImageNet weights cannot be had on this machine.
``classify`` names the class of TrashNet photos and garbage-seg object crops (scored by the accuracy
on garbage-seg val objects); ``distill`` reproduces the ImageNet MobileNetV2 trunk's features at
stride 8 and at the deep end, on TrashNet photos and whole garbage-seg train photos (scored by the
cosine similarity on garbage-seg val photos). The run resumes when started again with the same --out;
``--init-from`` starts a new run (new --out, new schedule) from a finished one's last weights;
``trunk.pt`` holds the best epoch's trunk and a line saying how it was made, which the segmentation
checkpoint's metadata and the model card repeat.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from garbseg.core.errors import GarbsegError  # noqa: E402
from garbseg.core.paths import default_data_dir, shared_data_dir  # noqa: E402
from garbseg.models import BACKBONES  # noqa: E402
from garbseg.train.pretrain import OBJECTIVES, PretrainConfig, pretrain  # noqa: E402

DEFAULT_PHOTOS = shared_data_dir().parent / "trashnet"


def main(argv: list[str] | None = None) -> int:
    defaults = PretrainConfig(backbone="", out="")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone", choices=sorted(BACKBONES))
    parser.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective, help="(default: %(default)s)")
    parser.add_argument("--teacher", default=defaults.teacher,
                        help="distill: the MobileNetV2 teacher's weights, 'imagenet' or a mobilenet_v2 checkpoint "
                             "(default: %(default)s)")
    parser.add_argument("--out", help="run folder (default runs/pretrain/BACKBONE, BACKBONE-distill for distill)")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS),
                        help="folder of class folders, e.g. TrashNet (default: %(default)s); '' for none")
    parser.add_argument("--data", default=str(default_data_dir()),
                        help="labelled set whose train objects train and val objects score (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)")
    parser.add_argument("--size", type=int, default=defaults.size, help="crop size in pixels (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--mixup", type=float, default=defaults.mixup,
                        help="distill: share of crops blended with another before student and teacher see them "
                             "(function matching; default: %(default)s)")
    parser.add_argument("--init-from", metavar="RUN",
                        help="an earlier run folder of this backbone and objective: start from its last weights "
                             "on a new schedule (more epochs after a finished run)")
    parser.add_argument("--max-steps", type=int, help="steps per epoch at most (quick trials)")
    args = parser.parse_args(argv)
    default_out = f"runs/pretrain/{args.backbone}" + ("-distill" if args.objective == "distill" else "")
    cfg = PretrainConfig(backbone=args.backbone, out=args.out or default_out, objective=args.objective,
                         teacher=args.teacher,
                         photos=args.photos or None, data=args.data or None, epochs=args.epochs, size=args.size,
                         batch_size=args.batch_size, lr=args.lr, mixup=args.mixup,
                         max_steps_per_epoch=args.max_steps, init_from=args.init_from)
    started = time.perf_counter()
    try:
        summary = pretrain(cfg, log=lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True))
    except (GarbsegError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**summary, "seconds": round(time.perf_counter() - started)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
