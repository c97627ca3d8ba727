"""Video and webcam: annotate an uploaded video (progress, preview, mp4 download) or a live camera."""

import tempfile
import time
from pathlib import Path

import streamlit as st

from garbseg.app import ui
from garbseg.app.uploads import TEMP_PREFIX, VIDEO_TYPES, UploadError, decode_photo, digest, discard, save_upload
from garbseg.models import list_models
from garbseg.present.video import LiveSegmenter, VideoError, combined_fps, segment_videos
from garbseg.present.charts import frame_latency_figure
from garbseg.present.overlays import legend_html

settings = ui.page_setup("Stream")
st.title("Video and webcam")

with st.container(border=True):
    name = ui.model_picker("stream")
    others = st.multiselect("Compare with (video file)", [m for m in list_models() if m != name],
                            format_func=ui.label, max_selections=2, key="stream_compare",
                            help="Up to two more models on the same video: each frame is decoded once and "
                                 "segmented by every model; each gets its own video and FPS.")
    c1, c2 = st.columns(2)
    alpha = c1.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="stream_alpha")
    style = c2.radio("Show", ["overlay", "mask", "outline"], horizontal=True, key="stream_style")
classes = ui.classes_for_untrained(settings)
try:
    for model in [name, *others]:
        ui.get_model(model, classes)
except Exception as exc:  # e.g. a damaged checkpoint: say so and let the user pick another model
    ui.show_error(f"Cannot load {model}; pick another model", exc)
    st.stop()


def predictor():
    """The model on the sidebar's runtime; prepared on first use (a video started, the camera on)."""
    return ui.get_predictor(name, classes, settings)


video_tab, webcam_tab = st.tabs(["Video file", "Webcam"])

with video_tab:
    upload = st.file_uploader("Video", type=VIDEO_TYPES, key="video_upload")
    c1, c2, c3 = st.columns(3)
    stride = c1.number_input("Frame stride", 1, 60, 2, key="video_stride", help="Segment every n-th frame; the output keeps the "
                             "source's duration at source FPS / stride.")
    max_side = c2.selectbox("Max frame size (longer side, px)", [320, 480, 640, 960, 1280], index=1,
                            key="video_max_side")
    max_frames = c3.number_input("Stop after (segmented frames, 0 = whole video)", 0, 100_000, 150,
                                 key="video_max_frames")
    start = st.button("Segment video", type="primary", disabled=upload is None, key="video_start")

    if upload is not None and start:
        data = upload.getvalue()
        models = [name, *others]
        job_key = (digest(data), tuple(models), stride, max_side, max_frames, alpha, style)
        bar = st.progress(0.0, text="starting")
        preview = st.empty()
        shown = [0.0]  # when the preview was last refreshed: redrawing every frame would flood the browser

        def on_frame(event):
            if event.stream:
                return  # the first model's frames drive the progress and the preview
            total = event.expected or event.index + 1
            bar.progress(min(1.0, (event.index + 1) / total),
                         text=f"frame {event.index + 1}/{total} - {event.latency_ms:.0f} ms")
            if time.perf_counter() - shown[0] > 0.3:
                preview.image(event.frame, caption="live preview", width=480)
                shown[0] = time.perf_counter()

        src = folder = None
        try:
            src = save_upload(data, upload.name)
            folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}video-"))
            dsts = [folder / f"{Path(upload.name).stem}_{model}_segmented.mp4" for model in models]
            segmenters = [ui.get_predictor(model, classes, settings) for model in models]
            reports = segment_videos(src, dsts, segmenters, stride=int(stride), max_side=int(max_side), alpha=alpha,
                                     style=style, max_frames=int(max_frames) or None, on_frame=on_frame)
            st.session_state["video_result"] = {
                "key": job_key, "name": upload.name, "combined_fps": combined_fps(reports),
                "videos": [{"model": model, "label": ui.label(model), "report": report, "mp4": dst.read_bytes(),
                            "runtime": segmenter.resolved_runtime}
                           for model, report, dst, segmenter in zip(models, reports, dsts, segmenters)]}
        except (UploadError, VideoError) as exc:
            st.session_state.pop("video_result", None)
            ui.show_error(str(exc))
        finally:
            bar.empty()
            preview.empty()
            discard(src, folder)  # the upload and the mp4s (their bytes are kept in the session) leave the disk

    result = st.session_state.get("video_result")
    if result and upload is not None and result["key"][0] == digest(upload.getvalue()):
        videos = result["videos"]
        st.subheader(ui.plain(result["name"]))
        if len(videos) > 1:
            st.metric("Combined throughput", f"{result['combined_fps']:.1f} FPS",
                      help="segmented frames of all models per second of wall clock: decode once, "
                           "segment + overlay + encode per model")
        for video, column in zip(videos, st.columns(len(videos))):
            report = video["report"]
            with column:
                st.markdown(f"**{video['label']}**")
                if not report.browser_playable:
                    st.warning("No H.264 encoder here: the video is MPEG-4 (mp4v); download it to play it.")
                if report.truncated:
                    st.warning("The stream is damaged; segmentation stopped at the last readable frame.")
                column.video(video["mp4"])
                summary = report.summary()
                st.metric("Frames segmented", f"{summary['frames_segmented']} of {summary['frames_read']}")
                st.metric("FPS (this model)", f"{summary['model_fps']:.1f}",
                          help="frames per second of this model's own work: segmentation + overlay")
                if len(videos) == 1:
                    st.metric("Achieved FPS", f"{summary['achieved_fps']:.1f}",
                              help="segmented frames per second of wall clock: decode + segment + encode")
                st.metric("Latency p50 / p95", f"{summary['latency_p50_ms']:.0f} / {summary['latency_p95_ms']:.0f} ms",
                          help="segmentation + overlay of one frame")
                st.caption(f"Network on `{video['runtime']}`. Output {summary['size']} at "
                           f"{summary['output_fps']:.2f} fps ({report.codec})")
                st.plotly_chart(frame_latency_figure(report.latencies_ms), key=f"frame_latency_{video['model']}")
                st.download_button("Download annotated mp4", video["mp4"],
                                   f"{Path(result['name']).stem}_{video['model']}_segmented.mp4", "video/mp4",
                                   on_click="ignore", key=f"download_{video['model']}")
    elif upload is None:
        st.info("Upload a video (mp4, mov, avi, webm), then press *Segment video*.")



def snapshot_fallback():
    shot = st.camera_input("Snapshot", key="snapshot")
    if shot is None:
        return
    try:
        photo = decode_photo("snapshot", shot.getvalue())
    except UploadError as exc:
        ui.show_error(str(exc))
        return
    result = ui.segment(photo, name, classes, settings)
    st.image(result.render(photo.image, alpha=alpha, style=style),
             caption=f"{ui.label(name)} - {result.total_ms:.0f} ms on {result.runtime}", width=640)
    st.html(legend_html(result.legend()))


with webcam_tab:
    try:
        from streamlit_webrtc import WebRtcMode, webrtc_streamer
        webrtc_error = None
    except Exception as exc:  # the package or its native parts are missing: offer snapshots only
        webrtc_error = exc
    modes = ["Live (WebRTC)", "Single snapshot"] if webrtc_error is None else ["Single snapshot"]
    mode = st.radio("Camera mode", modes, horizontal=True, key="camera_mode")
    if webrtc_error is not None:
        st.info(f"Live video is unavailable here ({webrtc_error}); take single snapshots instead.")

    if mode == "Live (WebRTC)":
        live = predictor()
        segmenter = st.session_state.setdefault("live_segmenter", LiveSegmenter(live))
        # The callback runs in WebRTC's thread and reads these on every frame.
        segmenter.predictor, segmenter.alpha, segmenter.style = live, alpha, style
        st.caption(f"Network on `{live.resolved_runtime}`. The frame rate and per-frame latency are drawn in the "
                   "top-left corner of the video.")
        ice_servers, ice_problem = ui.ice_servers()
        if ice_problem:
            st.warning(ice_problem)
        st.caption("No picture? The browser gives a camera only to https pages or localhost, and only once you "
                   "allow it; served from another machine, the video also needs a STUN/TURN server "
                   f"({ui.ICE_ENV}). Single snapshot works without either.")
        try:
            webrtc_streamer(key="live", mode=WebRtcMode.SENDRECV, video_frame_callback=segmenter.av_callback,
                            media_stream_constraints={"video": True, "audio": False}, async_processing=True,
                            rtc_configuration={"iceServers": ice_servers})
        except Exception as exc:  # no WebRTC session in this server: fall back to snapshots
            ui.show_error("Live video is unavailable in this session; take single snapshots instead.", exc)
            snapshot_fallback()
    else:
        snapshot_fallback()
