"""End-to-end frames per second: JPEG bytes -> decoded image -> mask -> overlay, as a user sees it.

Each frame decodes a 640x640 JPEG from memory (the shared data set's photos are 640x640), runs
``Predictor.predict`` (fast preprocessing, the chosen runtime, upsampling + argmax back to 640x640)
and draws the result with ``garbseg.present.overlays.overlay``. Stages are timed separately; the headline is the
median frame time. Batch 1, one frame after the other, no pipelining.

Usage:
    python benchmarks/end_to_end.py [--model mobilenet_v3_large-lraspp] [--runtime auto] [--size 224]
                                    [--frames 200] [--threads N] [--runs-dir runs] [--pause-pid PID]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from garbseg.core.machine import cpu_name, default_threads, torch_threads  # noqa: E402
from garbseg.core.paths import default_data_dir  # noqa: E402
from garbseg.data import load_dataset, load_image  # noqa: E402
from garbseg.inference import Predictor  # noqa: E402
from garbseg.present import overlays as viz  # noqa: E402
from garbseg.present.overlays import colorize, overlay  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtimes import paused, weights_for  # noqa: E402


def jpeg_frames(count: int = 8) -> list[bytes]:
    """640x640 JPEG files of the val split, as bytes (decoding is part of what is timed)."""
    paths = list(load_dataset(default_data_dir(), "val").image_paths)[:count]
    return [Path(p).read_bytes() for p in paths]


def float_overlay(image, mask: np.ndarray, num_classes: int, *, alpha: float = 0.5):
    """What ``viz.overlay(style="overlay")`` computed before it blended in uint8: float32 over the
    whole frame (kept here to measure the before/after in one run)."""
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    colours = colorize(mask, num_classes).astype(np.float32)
    where = mask > 0
    out = rgb.copy()
    out[where] = (1 - alpha) * rgb[where] + alpha * colours[where]
    return Image.fromarray(out.round().astype(np.uint8))


def measure(predictor: Predictor, frames: list[bytes], n: int, draw=overlay) -> dict[str, list[float]]:
    stages = {k: [] for k in ("decode", "preprocess", "model", "postprocess", "overlay", "frame")}
    classes = len(predictor.classes)
    for i in range(n):
        data = frames[i % len(frames)]
        t0 = time.perf_counter()
        image = load_image(io.BytesIO(data))
        t1 = time.perf_counter()
        mask = predictor.predict(image)
        t2 = time.perf_counter()
        draw(image, mask, classes)
        t3 = time.perf_counter()
        timing = predictor.last_timing
        stages["decode"].append((t1 - t0) * 1e3)
        stages["preprocess"].append(timing.preprocess_ms)
        stages["model"].append(timing.model_ms)
        stages["postprocess"].append(timing.postprocess_ms)
        stages["overlay"].append((t3 - t2) * 1e3)
        stages["frame"].append((t3 - t0) * 1e3)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_large-lraspp")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--runs-dir", type=Path)
    parser.add_argument("--overlay", choices=["viz", "numpy", "float"], default="viz",
                        help="viz: garbseg.present.overlays.overlay (default, OpenCV when installed); numpy: the same "
                             "without OpenCV (its fixed-point fallback); float: the float32 blend it replaced")
    parser.add_argument("--pause-pid", type=int, nargs="+", help="SIGSTOP these processes while timing")
    args = parser.parse_args()
    classes = list(load_dataset(default_data_dir(), "val").classes)
    loaded = weights_for(args.model, classes, args.size, args.runs_dir)
    frames = jpeg_frames()
    with torch_threads(args.threads):
        predictor = Predictor(loaded, args.size, runtime=args.runtime, threads=args.threads)
        with paused(args.pause_pid):
            if args.overlay == "numpy":
                viz.cv2 = None  # garbseg.present.overlays falls back to numpy, as on a machine without OpenCV
            draw = float_overlay if args.overlay == "float" else overlay
            measure(predictor, frames, 10, draw)  # warm-up
            stages = measure(predictor, frames, args.frames, draw)
    med = {k: float(np.median(v)) for k, v in stages.items()}
    p95 = float(np.percentile(stages["frame"], 95))
    print(f"machine: {cpu_name()}, {args.threads} threads")
    print(f"{args.model} ({'trained' if loaded.path else 'random weights'}) at {args.size} on "
          f"{predictor.resolved_runtime} (asked {args.runtime}); 640x640 JPEG in, 640x640 overlay out; "
          f"{args.frames} frames; overlay: {args.overlay}")
    print("median ms: " + ", ".join(f"{k} {med[k]:.2f}" for k in ("decode", "preprocess", "model", "postprocess",
                                                                  "overlay")))
    print(f"frame: p50 {med['frame']:.2f} ms, p95 {p95:.2f} ms -> {1000 / med['frame']:.1f} FPS end to end "
          f"({1000 / (med['frame'] - med['overlay']):.1f} FPS without the overlay)")


if __name__ == "__main__":
    main()
