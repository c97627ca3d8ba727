"""Pseudo-label a folder-per-class photo set (TrashNet) with an ensemble of trained models.

--check scores the same method on labelled photos first.

    python -m scripts.pseudo_label --photos ../shared/data/trashnet --out runs/pseudo/trashnet
    python -m scripts.pseudo_label --check ../shared/data/garbage-seg      # quality on labelled val photos
    python -m scripts.pseudo_label --round 2 --photos ../shared/data/trashnet --out runs/pseudo/trashnet-round2

Teachers (each at its own input size, with flip averaging) default to the first round's: the three
MobileNetV2 models, the best shipped. ``--round 2`` is self-training's second round: the three
MobileNetV3 students that trained on the first round's labels label the photos again. The output is
an image + mask folder set (``train/``, ``classes.txt``, ``report.json``) that
``garbseg.data.load_dataset(OUT, "train")`` reads; a killed run continues where it stopped.
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

# Round 1: the ImageNet-initialised models; round 2: the students round 1 improved (issue 14).
ROUNDS = {1: ["mobilenet_v2-lraspp", "mobilenet_v2-deeplabv3", "mobilenet_v2-fcn"],
          2: ["mobilenet_v3_large-deeplabv3", "mobilenet_v3_large-fcn", "mobilenet_v3_large-lraspp"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=1,
                        help="self-training round whose teachers label: " + "; ".join(
                            f"{n}: {', '.join(names)}" for n, names in ROUNDS.items()) + " (default: 1)")
    parser.add_argument("--teacher", action="append", help="teacher checkpoint or model name (repeatable; "
                                                           "replaces the round's teachers)")
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
        teachers = [Predictor.from_checkpoint(ref) for ref in args.teacher or ROUNDS[args.round]]
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
