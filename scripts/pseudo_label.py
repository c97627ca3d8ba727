"""Pseudo-label a folder-per-class photo set (TrashNet) with an ensemble of trained models, and check
the method on labelled photos first.

    python -m scripts.pseudo_label --photos ../shared/data/trashnet --out runs/pseudo/trashnet
    python -m scripts.pseudo_label --check ../shared/data/garbage-seg      # quality on labelled val photos

Teachers default to the three MobileNetV2 models (the best shipped, each at its own input size, with
flip averaging). The output is an image + mask folder set (``train/``, ``classes.txt``, ``report.json``)
that ``garbseg.data.load_dataset(OUT, "train")`` reads; a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from garbseg.core.errors import GarbsegError  # noqa: E402
from garbseg.data import load_dataset  # noqa: E402
from garbseg.inference import Predictor  # noqa: E402
from garbseg.train.pseudo_labels import (BACKGROUND, FOREGROUND, check_on_labelled, folder_class_photos,  # noqa: E402
                                         make_pseudo_labels)

TEACHERS = ["mobilenet_v2-lraspp", "mobilenet_v2-deeplabv3", "mobilenet_v2-fcn"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", help=f"teacher checkpoint or model name (repeatable; "
                                                           f"default: {', '.join(TEACHERS)})")
    parser.add_argument("--photos", help="a folder of class folders (<class>/<photo>), e.g. ../shared/data/trashnet")
    parser.add_argument("--out", help="where to write the pseudo-labelled set")
    parser.add_argument("--check", help="labelled data: pseudo-label its val photos and score them instead")
    parser.add_argument("--foreground", type=float, default=FOREGROUND, help="foreground probability for the "
                        f"folder's class (default {FOREGROUND})")
    parser.add_argument("--background", type=float, default=BACKGROUND, help="foreground probability at or below "
                        f"which a pixel is background (default {BACKGROUND}); between the two: ignored")
    parser.add_argument("--limit", type=int, help="only the first N photos (quick trials)")
    args = parser.parse_args(argv)
    try:
        teachers = [Predictor.from_checkpoint(ref) for ref in args.teacher or TEACHERS]
        thresholds = {"foreground": args.foreground, "background": args.background}
        if args.check:
            dataset = load_dataset(args.check, "val")
            if args.limit:
                dataset.image_paths = dataset.image_paths[: args.limit]
            with tqdm(total=len(dataset), desc="check", unit="img") as bar:
                result = check_on_labelled(teachers, dataset, progress=lambda d, n: bar.update(1), **thresholds)
        else:
            if not (args.photos and args.out):
                parser.error("--photos and --out are needed (or --check DATA)")
            photos = folder_class_photos(args.photos, teachers[0].classes)[: args.limit]
            with tqdm(total=len(photos), desc="pseudo-label", unit="img") as bar:
                result = make_pseudo_labels(teachers, photos, args.out, progress=lambda d, n: bar.update(1),
                                            **thresholds)
    except GarbsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
