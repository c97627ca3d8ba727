"""Video side by side: several models on one video, as the Stream page runs them (``segment_videos``).

Builds a test clip from val photos (each shown for a few frames with a slow pan, 640x480, H.264), then
segments it with the Stream page's defaults (frames scaled to 480 px on the longer side, stride 2) by
the chosen models on the chosen runtime (``auto`` by default, as the app; int8 only once calibrated)
and prints each model's FPS (its own segmentation + overlay) and the combined throughput: segmented
frames of all models per second of wall clock, decode and encode included. For comparison it also
runs the models one after the other, each with its own decode (what one model per run costs).

    python benchmarks/video_compare.py                                  # mobilenet_v2-lraspp + mobilenet_v3_large-lraspp
    python benchmarks/video_compare.py --model resnet50-lraspp --model mobilenet_v2-lraspp --runtime torch
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from garbseg.core.machine import cpu_name, default_threads, torch_threads  # noqa: E402
from garbseg.core.paths import default_data_dir  # noqa: E402
from garbseg.inference import Predictor  # noqa: E402
from garbseg.models.zoo import open_model  # noqa: E402
from garbseg.present.video import combined_fps, segment_video, segment_videos  # noqa: E402


def make_clip(path: Path, photos: list[Path], *, frames_per_photo: int = 12, size=(640, 480), fps: int = 24) -> Path:
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for photo in photos:
            image = Image.open(photo).convert("RGB").resize((size[0] + 48, size[1] + 36))
            for k in range(frames_per_photo):  # a slow pan: every frame differs a little
                crop = np.asarray(image)[3 * k: 3 * k + size[1], 4 * k: 4 * k + size[0]]
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model (repeat; default the two LR-ASPP MobileNets)")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--max-side", type=int, default=480)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--photos", type=int, default=20, help="val photos in the clip (12 frames each)")
    parser.add_argument("--repeats", type=int, default=2, help="side-by-side runs (min and all printed)")
    args = parser.parse_args()
    models = args.model or ["mobilenet_v2-lraspp", "mobilenet_v3_large-lraspp"]
    threads = default_threads()
    photos = sorted((default_data_dir() / "val" / "images").glob("*.jpg"))[: args.photos]
    with tempfile.TemporaryDirectory(prefix="garbseg-video-") as tmp, torch_threads(threads):
        folder = Path(tmp)
        clip = make_clip(folder / "clip.mp4", photos)
        predictors = []
        for name in models:
            t0 = time.perf_counter()
            predictors.append(Predictor(open_model(name), runtime=args.runtime, threads=threads, calibrate=False))
            print(f"{name}: on {predictors[-1].resolved_runtime} (prepared in {time.perf_counter() - t0:.1f} s)",
                  flush=True)
        for p in predictors:  # warm-up: one-off setup is not billed to the video
            p.predict(Image.new("RGB", (480, 360)))
        print(f"{cpu_name()}, {threads} threads, load {os.getloadavg()[0]:.2f}; clip {len(photos) * 12} frames "
              f"640x480, stride {args.stride}, frames at {args.max_side} px", flush=True)
        combined = []
        for r in range(args.repeats):
            reports = segment_videos(clip, [folder / f"{n}-{r}.mp4" for n in models], predictors, stride=args.stride,
                                     max_side=args.max_side)
            combined.append(combined_fps(reports))
            per_model = ", ".join(f"{n} {rep.model_fps:.1f} FPS (p50 {rep.summary()['latency_p50_ms']:.0f} ms)"
                                  for n, rep in zip(models, reports))
            print(f"side by side run {r + 1}: combined {combined[-1]:.1f} FPS "
                  f"({reports[0].frames_segmented} frames x {len(models)} models in {reports[0].wall_seconds:.1f} s); "
                  f"{per_model}; load {os.getloadavg()[0]:.2f}", flush=True)
        t0 = time.perf_counter()
        frames = 0
        for n, p in zip(models, predictors):  # before: one model per run, each decoding the video itself
            frames += segment_video(clip, folder / f"{n}-alone.mp4", p, stride=args.stride,
                                    max_side=args.max_side).frames_segmented
        sequential = frames / (time.perf_counter() - t0)
        print(f"one model per run, one after the other: {sequential:.1f} FPS combined")
        print(f"combined throughput side by side: max {max(combined):.1f} FPS, all {[round(c, 1) for c in combined]}")


if __name__ == "__main__":
    main()
