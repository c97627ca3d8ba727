"""garbseg.present.video on tiny synthetic videos made with PyAV (no model needed: a fake predictor draws a
known mask, so the annotated frames can be checked pixel by pixel)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from garbseg.present.video import (FpsMeter, LiveSegmenter, VideoError, combined_fps, draw_readout, fit_size, open_encoder,
                                   probe, segment_video, segment_videos)
from garbseg.present.overlays import palette

CLASSES = ["background", "left", "right"]


class HalfPredictor:
    """Class 1 on the left half of every frame, background elsewhere."""

    classes = CLASSES

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[:, : image.width // 2] = 1
        return mask


def make_video(path: Path, frames: int = 9, size=(96, 64), fps: int = 12, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            rgb = np.full((size[1], size[0], 3), 128, np.uint8)
            rgb[:, (i * 7) % size[0]:][:, :8] = 250  # a moving bright bar
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as src:
        return [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_probe_reads_size_rate_and_length(clip):
    info = probe(clip)
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(12)
    assert info.frames == 9


def test_segment_video_strides_shrinks_and_writes_playable_h264(clip, tmp_path):
    events = []
    predictor = HalfPredictor()
    report = segment_video(clip, tmp_path / "out.mp4", predictor, stride=2, max_side=48, alpha=1.0,
                           on_frame=events.append)
    assert report.frames_read == 9
    assert report.frames_segmented == predictor.calls == 5  # frames 0, 2, 4, 6, 8
    assert [e.index for e in events] == [0, 1, 2, 3, 4] and events[0].expected == 5
    assert (report.width, report.height) == (48, 32)
    assert report.codec == "libx264" and report.browser_playable
    assert report.output_fps == pytest.approx(6.0)  # keeps the 0.75 s duration
    assert report.achieved_fps > 0 and len(report.latencies_ms) == 5

    written = read_frames(tmp_path / "out.mp4")
    assert len(written) == 5 and written[0].shape == (32, 48, 3)
    # alpha=1: the left half is painted in class 1's colour, the right half keeps the grey frame.
    left_colour = palette(3)[1].astype(int)
    assert np.abs(written[2][8:24, 4:18].reshape(-1, 3).mean(0) - left_colour).max() < 25
    assert np.abs(written[2][8:24, 30:34].reshape(-1, 3).mean(0) - 128).max() < 25
    with av.open(str(tmp_path / "out.mp4")) as check:
        assert check.streams.video[0].codec_context.name == "h264"
    assert report.summary()["frames_segmented"] == 5


def test_segment_video_stops_after_max_frames(clip, tmp_path):
    report = segment_video(clip, tmp_path / "short.mp4", HalfPredictor(), max_frames=3, max_side=None)
    assert report.frames_segmented == 3 and (report.width, report.height) == (96, 64)
    assert len(read_frames(tmp_path / "short.mp4")) == 3


def test_encoder_falls_back_to_mpeg4(tmp_path):
    out, stream, codec = open_encoder(tmp_path / "x.mp4", 32, 32, 10, codecs=("no_such_encoder", "mpeg4"))
    out.close()
    assert codec == "mpeg4"
    with pytest.raises(VideoError, match="no video encoder"):
        open_encoder(tmp_path / "y.mp4", 32, 32, 10, codecs=("no_such_encoder",))


def test_unreadable_videos_raise_video_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video" * 10)
    with pytest.raises(VideoError, match="junk.mp4"):
        segment_video(junk, tmp_path / "o.mp4", HalfPredictor())
    with pytest.raises(VideoError):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="stride"):
        segment_video(junk, tmp_path / "o.mp4", HalfPredictor(), stride=0)


def test_fit_size_keeps_aspect_and_even_sides():
    assert fit_size(1920, 1080, 640) == (640, 360)
    assert fit_size(101, 51, None) == (100, 50)
    assert fit_size(300, 200, 1000) == (300, 200)  # never upscales


def test_fps_meter_counts_frames_over_the_window():
    meter = FpsMeter(window=5)
    assert meter.tick(0.0) == 0.0
    for t in (0.1, 0.2, 0.3, 0.4):
        fps = meter.tick(t)
    assert fps == pytest.approx(10.0)
    for t in (0.6, 0.8, 1.0, 1.2):  # the window now holds 0.4 .. 1.2: 4 intervals over 0.8 s
        fps = meter.tick(t)
    assert fps == pytest.approx(5.0)


def test_live_segmenter_annotates_av_frames_with_a_readout():
    live = LiveSegmenter(HalfPredictor(), alpha=1.0, max_side=64)
    frame = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 128, np.uint8), format="rgb24")
    out = live.av_callback(frame).to_ndarray(format="rgb24")
    assert out.shape == (48, 64, 3)
    assert (out[-5:, 2] == palette(3)[1]).all()  # left half painted, away from the readout box
    assert (out[0, :5] == 0).all()  # the readout's dark box in the corner
    assert live.last_latency_ms > 0
    plain = np.full((40, 200, 3), 200, np.uint8)
    assert (draw_readout(plain, "12 FPS") != plain).any() and (plain == 200).all()  # input untouched


def test_a_shared_predictor_serialises_calls_and_keeps_timings_per_view():
    import threading
    import time

    from PIL import Image

    from garbseg.inference import SharedPredictor, Timing

    class SlowPredictor(HalfPredictor):
        resolved_runtime = "torch"

        def __init__(self):
            super().__init__()
            self.running, self.overlaps = 0, 0

        def predict(self, image):
            self.running += 1
            self.overlaps += self.running > 1
            time.sleep(0.02)  # long enough for another thread to come in, were it allowed
            self.last_timing = Timing(model_ms=float(image.width))  # who called last, by image width
            self.running -= 1
            return super().predict(image)

    shared, lock = SlowPredictor(), threading.Lock()
    views = [SharedPredictor(shared, lock) for _ in range(3)]
    threads = [threading.Thread(target=lambda v=v, w=w: [v.predict(Image.new("RGB", (w, 8))) for _ in range(4)])
               for v, w in zip(views, (10, 20, 30))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.calls == 12 and shared.overlaps == 0
    assert [v.last_timing.model_ms for v in views] == [10.0, 20.0, 30.0]
    assert views[0].classes == CLASSES and views[0].resolved_runtime == "torch"


def test_segment_videos_decodes_once_and_writes_one_video_per_model(clip, tmp_path):
    first, second = HalfPredictor(), HalfPredictor()
    events = []
    reports = segment_videos(clip, [tmp_path / "a.mp4", tmp_path / "b.mp4"], [first, second], stride=2,
                             max_side=48, on_frame=events.append)
    assert [r.frames_read for r in reports] == [9, 9]  # one decode pass, shared
    assert first.calls == second.calls == 5
    assert [(e.stream, e.index) for e in events[:4]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert len(read_frames(tmp_path / "a.mp4")) == len(read_frames(tmp_path / "b.mp4")) == 5
    assert reports[0].wall_seconds == reports[1].wall_seconds > 0
    assert combined_fps(reports) == pytest.approx(10 / reports[0].wall_seconds)
    assert all(r.model_fps > 0 for r in reports)
    with pytest.raises(ValueError):
        segment_videos(clip, [tmp_path / "c.mp4"], [first, second])
