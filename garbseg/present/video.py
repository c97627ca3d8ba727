"""Segment videos and live frames: decode with PyAV, overlay masks, encode an mp4 browsers can play.

``segment_video`` reads a file, segments every ``stride``-th frame (shrunk so its longer side is at
most ``max_side``), and writes only those frames at ``source_fps / stride``, so the result keeps the
source's duration. H.264 (``libx264``, yuv420p, faststart) is what browsers play; where that encoder
is missing we fall back to MPEG-4 Part 2 (``mpeg4``), which downloads fine but may not play inline.

``LiveSegmenter`` does the same per frame for a webcam stream and draws a rolling FPS readout.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.errors import GarbsegError
from .overlays import overlay

ENCODERS = ("libx264", "mpeg4")  # preferred first: H.264 plays in browsers
FALLBACK_FPS = Fraction(25)


class VideoError(GarbsegError, ValueError):
    """A video that cannot be read (or written); the message names the file."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int | None  # as declared by the container; may be missing or approximate
    duration_s: float | None


@dataclass
class FrameEvent:
    """What ``on_frame`` receives after each segmented frame."""

    index: int  # 0-based count of segmented frames
    expected: int | None  # frames we expect to segment (None when the container does not say)
    frame: np.ndarray  # the annotated RGB frame
    latency_ms: float  # segmentation + overlay of this frame
    stream: int = 0  # which model (segment_videos: the index of its predictor)


@dataclass
class VideoReport:
    source: str
    output: str
    codec: str
    width: int
    height: int
    source_fps: float
    output_fps: float
    stride: int
    frames_read: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    truncated: bool = False  # decoding stopped early on a damaged stream

    @property
    def frames_segmented(self) -> int:
        return len(self.latencies_ms)

    @property
    def achieved_fps(self) -> float:
        """Segmented frames per second of wall time, decode and encode included."""
        return self.frames_segmented / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        """Frames per second of this model's own work (segmentation + overlay), decode/encode excluded."""
        total = sum(self.latencies_ms) / 1e3
        return self.frames_segmented / total if total > 0 else 0.0

    @property
    def browser_playable(self) -> bool:
        return self.codec == "libx264"

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=float)
        return {
            "frames_read": self.frames_read, "frames_segmented": self.frames_segmented,
            "achieved_fps": round(self.achieved_fps, 2), "model_fps": round(self.model_fps, 2),
            "latency_p50_ms": round(float(np.median(lat)), 1) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            "size": f"{self.width}x{self.height}", "codec": self.codec, "output_fps": round(self.output_fps, 2),
        }


def _open(src: str | Path):
    try:
        container = av.open(str(src))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{Path(src).name}: not a video this app can read ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{Path(src).name}: the file has no video stream")
    return container


def probe(src: str | Path) -> VideoInfo:
    """Size, frame rate and declared length of a video, without decoding it."""
    container = _open(src)
    with container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or FALLBACK_FPS)
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
            container.duration / 1e6 if container.duration else None)
        frames = stream.frames or (round(duration * fps) if duration else None)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, frames or None, duration)


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Scale to at most ``max_side`` on the longer side, rounded down to even numbers (yuv420p)."""
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    return w, h


def open_encoder(dst: str | Path, width: int, height: int, fps: Fraction, codecs=ENCODERS):
    """An output container and video stream with the first encoder that opens."""
    errors = []
    for codec in codecs:
        container = av.open(str(dst), mode="w", options={"movflags": "+faststart"})
        try:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "23", "preset": "veryfast"}
            stream.codec_context.open()  # fail here, not on the first frame, when unavailable
            return container, stream, codec
        except (av.FFmpegError, ValueError, KeyError) as exc:
            errors.append(f"{codec}: {exc}")
            container.close()
    raise VideoError(f"no video encoder available ({'; '.join(errors)})")


def annotate(predictor, rgb: np.ndarray, *, alpha: float = 0.5, style: str = "overlay") -> np.ndarray:
    """The frame with its predicted mask drawn on it (same size, RGB uint8)."""
    image = Image.fromarray(rgb)
    mask = predictor.predict(image)
    return np.asarray(overlay(image, mask, len(predictor.classes), alpha=alpha, style=style))


def segment_video(src_path: str | Path, dst_path: str | Path, predictor, *, stride: int = 1,
                  max_side: int | None = 640, alpha: float = 0.5, style: str = "overlay",
                  max_frames: int | None = None,
                  on_frame: Callable[[FrameEvent], None] | None = None) -> VideoReport:
    """Segment every ``stride``-th frame of ``src_path`` and write the annotated mp4 to ``dst_path``."""
    return segment_videos(src_path, [dst_path], [predictor], stride=stride, max_side=max_side, alpha=alpha,
                          style=style, max_frames=max_frames, on_frame=on_frame)[0]


def segment_videos(src_path: str | Path, dst_paths: list, predictors: list, *, stride: int = 1,
                   max_side: int | None = 640, alpha: float = 0.5, style: str = "overlay",
                   max_frames: int | None = None,
                   on_frame: Callable[[FrameEvent], None] | None = None) -> list[VideoReport]:
    """Several models on one video, side by side: every ``stride``-th frame is decoded once and
    segmented by each predictor in turn; each writes its own annotated mp4 (``dst_paths[k]``) and gets
    its own report (its latencies; ``wall_seconds`` is the whole run's, shared). ``on_frame`` is called
    for each model's frame (``FrameEvent.stream`` says which). ``combined_fps(reports)``: segmented
    frames of all models per second of wall clock."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if len(dst_paths) != len(predictors) or not predictors:
        raise ValueError("one output path per predictor, at least one")
    info = probe(src_path)
    width, height = fit_size(info.width, info.height, max_side)
    source_fps = Fraction(info.fps).limit_denominator(1001)
    out_fps = source_fps / stride
    expected = -(-info.frames // stride) if info.frames else None
    if max_frames is not None:
        expected = min(expected, max_frames) if expected else max_frames

    start = time.perf_counter()
    src = _open(src_path)
    outputs, reports = [], []
    try:
        for dst_path in dst_paths:
            out, stream, codec = open_encoder(dst_path, width, height, out_fps)
            outputs.append((out, stream))
            reports.append(VideoReport(str(src_path), str(dst_path), codec, width, height, float(source_fps),
                                       float(out_fps), stride))
        first = reports[0]
        for rgb in _decoded_frames(src, first, width, height):
            if (first.frames_read - 1) % stride:
                continue
            for k, (predictor, (out, stream), report) in enumerate(zip(predictors, outputs, reports)):
                t0 = time.perf_counter()
                annotated = annotate(predictor, rgb, alpha=alpha, style=style)
                latency = (time.perf_counter() - t0) * 1e3
                frame = av.VideoFrame.from_ndarray(annotated, format="rgb24")
                frame.pts = report.frames_segmented
                frame.time_base = 1 / out_fps
                for packet in stream.encode(frame):
                    out.mux(packet)
                report.latencies_ms.append(latency)
                if on_frame:
                    on_frame(FrameEvent(report.frames_segmented - 1, expected, annotated, latency, stream=k))
            if max_frames is not None and first.frames_segmented >= max_frames:
                break
        for out, stream in outputs:
            for packet in stream.encode(None):  # flush the encoder's delayed frames
                out.mux(packet)
    finally:
        for out, _ in outputs:
            out.close()
        src.close()
    wall = time.perf_counter() - start
    for report in reports:
        report.wall_seconds = wall
        report.frames_read, report.truncated = first.frames_read, first.truncated
    if first.frames_segmented == 0:
        raise VideoError(f"{Path(src_path).name}: no frame could be decoded")
    return reports


def combined_fps(reports: list[VideoReport]) -> float:
    """Segmented frames of all models together per second of wall clock (one shared run)."""
    wall = max((r.wall_seconds for r in reports), default=0.0)
    return sum(r.frames_segmented for r in reports) / wall if wall > 0 else 0.0


def _decoded_frames(container, report: VideoReport, width: int, height: int):
    """RGB frames at the output size; a damaged stream ends the iteration (``report.truncated``)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        for frame in container.decode(stream):
            report.frames_read += 1
            yield frame.to_ndarray(width=width, height=height, format="rgb24")
    except (av.FFmpegError, ValueError) as exc:
        if report.frames_read == 0:
            raise VideoError(f"{Path(report.source).name}: cannot decode video ({exc})") from exc
        report.truncated = True


# ----------------------------------------------------------------------------- live frames


class FpsMeter:
    """Frames per second over the last ``window`` frames (thread-safe: WebRTC calls from its own thread)."""

    def __init__(self, window: int = 30):
        self._times: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> float:
        with self._lock:
            self._times.append(time.perf_counter() if now is None else now)
            return self._fps()

    @property
    def fps(self) -> float:
        with self._lock:
            return self._fps()

    def _fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class LiveSegmenter:
    """Per-frame overlay for a webcam stream; settings may change between frames."""

    predictor: object
    alpha: float = 0.5
    style: str = "overlay"
    max_side: int | None = 480
    meter: FpsMeter = field(default_factory=FpsMeter)
    last_latency_ms: float = 0.0

    def process(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        tw, th = fit_size(w, h, self.max_side)
        if (tw, th) != (w, h):
            rgb = np.asarray(Image.fromarray(rgb).resize((tw, th), Image.Resampling.BILINEAR))
        t0 = time.perf_counter()
        out = annotate(self.predictor, rgb, alpha=self.alpha, style=self.style)
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        fps = self.meter.tick()
        return draw_readout(out, f"{fps:4.1f} FPS  {self.last_latency_ms:4.0f} ms")

    def av_callback(self, frame: "av.VideoFrame") -> "av.VideoFrame":
        """streamlit-webrtc's ``video_frame_callback``: av frame in, annotated av frame out."""
        out = self.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")


def draw_readout(rgb: np.ndarray, text: str) -> np.ndarray:
    """``text`` in white on a dark box in the top-left corner (a new array; the input is untouched)."""
    image = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.width // 40))
    left, top, right, bottom = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((0, 0, right + 6, bottom + 6), fill=(0, 0, 0))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)
