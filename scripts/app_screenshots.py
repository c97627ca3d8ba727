"""Screenshot every page of the running app with headless Chromium (for reviews and docs).

Starts ``streamlit run app.py`` on a free port, uploads a real photo on Segment, picks a labelled
example there, runs a benchmark (whole split by default), and writes one PNG per page. Usage:

    python scripts/app_screenshots.py --out /tmp/shots [--photo IMG] [--compare MODEL ...]
        [--checkpoints DIR] [--webcam]

``--checkpoints`` points the app at another weights folder; ``--webcam`` also films the live
WebRTC view, fed by Chromium's synthetic camera. A short slideshow of the data set's photos
stands in for an uploaded video.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    """Until Streamlit has rendered a page title and finished running the script."""
    page.wait_for_selector("h1", timeout=timeout_ms)
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(700)


def snap(page, path: Path) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its main container, so grow the viewport
    to the content's height first."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stMainBlockContainer]')].map(e => e.scrollHeight), 800)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(800)  # charts re-layout after the resize
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1100})


def slideshow(photos: list[Path], path: Path, seconds_each: float = 0.5, fps: int = 10, size=(480, 360)) -> Path:
    """An mp4 that shows each photo for ``seconds_each`` (a stand-in for a phone video)."""
    import av
    import numpy as np
    from PIL import Image

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for photo in photos:
            frame = np.asarray(Image.open(photo).convert("RGB").resize(size))
            for _ in range(int(seconds_each * fps)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/shots")
    parser.add_argument("--photo", default=None, help="photo to upload (default: first shared val image)")
    parser.add_argument("--compare", nargs="*", default=["mobilenet_v3_large-lraspp", "mobilenet_v2-lraspp",
                                                                 "resnet50-deeplabv3"])
    parser.add_argument("--bench-models", nargs="*", default=["mobilenet_v3_large-deeplabv3", "mobilenet_v2-lraspp",
                                                                      "resnet50-fcn"])
    parser.add_argument("--bench-photos", default="0", help="photos to evaluate on (0: the whole split)")
    parser.add_argument("--checkpoints", default=None, help="weights folder for the app (GARBSEG_CHECKPOINTS)")
    parser.add_argument("--webcam", action="store_true", help="also screenshot the live webcam view")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from garbseg.core.paths import default_data_dir

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = Path(args.photo) if args.photo else sorted((default_data_dir() / "val" / "images").glob("*.jpg"))[0]
    env = {"GARBSEG_CACHE": str(out / "cache")}
    if args.checkpoints:
        env["GARBSEG_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())
    app = AppServer({**os.environ, **env}).__enter__()
    video = slideshow(sorted((default_data_dir() / "val" / "images").glob("*.jpg"))[:8], out / "slideshow.mp4")
    base = app.url
    try:
        with sync_playwright() as p:
            fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_camera)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})

            page.goto(base)
            wait_idle(page)
            snap(page, out / "home.png")

            page.goto(f"{base}/segment")
            wait_idle(page)
            chosen = []
            box = page.get_by_role("combobox", name="Compare with")  # the multiselect's input
            for name in args.compare:
                box.click()
                option = page.get_by_role("option", name=name, exact=False)
                if option.count():  # absent when it is already the main pick
                    option.first.click()
                    chosen.append(name)
                    wait_idle(page)
                page.keyboard.press("Escape")
            t0 = time.perf_counter()
            page.locator("input[type=file]").set_input_files(str(photo))
            n_images = 1 + 1 + len(chosen)
            page.wait_for_function(f"() => document.querySelectorAll('[data-testid=\"stImage\"] img').length >= {n_images}",
                                   timeout=600_000)
            print(f"upload -> {n_images - 1} overlays: {time.perf_counter() - t0:.2f} s")
            wait_idle(page)
            snap(page, out / "segment.png")

            page.goto(f"{base}/segment")  # a labelled example instead of an upload: truth and mIoU shown
            wait_idle(page)
            examples = page.get_by_role("combobox", name="Example photos")
            examples.click()
            examples.fill("glass")  # filter the (virtualised) list, then take the first glass photo
            page.get_by_role("option").first.click()
            page.keyboard.press("Escape")
            page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImage\"] img').length >= 3",
                                   timeout=180_000)
            wait_idle(page)
            snap(page, out / "segment_example.png")

            page.goto(f"{base}/stream")
            wait_idle(page)
            page.locator("input[type=file]").first.set_input_files(str(video))
            wait_idle(page)
            page.get_by_role("button", name="Segment video").click()
            page.locator("[data-testid=stVideo]").wait_for(timeout=300_000)
            wait_idle(page)
            snap(page, out / "stream.png")
            if args.webcam:
                page.get_by_role("tab", name="Webcam").click()
                frame = page.frame_locator("iframe[title*='webrtc']").first
                frame.get_by_role("button", name="START").click()
                page.wait_for_timeout(15_000)  # connect, then let a few segmented frames through
                snap(page, out / "stream_webcam.png")

            page.goto(f"{base}/benchmark")
            wait_idle(page)
            chips = page.locator("[data-testid=stMultiSelect]").first.locator("[aria-label^='Remove ']")
            for label in [c.get_attribute("aria-label") for c in chips.all()]:
                if not any(f"Remove {name}" in label for name in args.bench_models):
                    page.locator(f"[aria-label='{label}']").click()  # inside a form: no rerun yet
            models_box = page.get_by_role("combobox", name="Models")
            for name in args.bench_models:
                models_box.click()
                option = page.get_by_role("option", name=name, exact=False)
                if option.count():  # not selected yet
                    option.first.click()
                page.keyboard.press("Escape")
            page.get_by_role("spinbutton", name="Photos (0 = whole split)").fill(args.bench_photos)
            page.get_by_role("spinbutton", name="Timed runs").fill("5")
            page.get_by_role("button", name="Run benchmark").click()
            page.wait_for_selector("[data-testid=stAlertContentSuccess]", timeout=900_000)
            wait_idle(page)
            snap(page, out / "benchmark.png")

            page.goto(f"{base}/models")
            wait_idle(page)
            snap(page, out / "models.png")
            browser.close()
    finally:
        app.__exit__()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
