"""End to end in a real browser: `streamlit run app.py`, headless Chromium, upload a photo, see the overlay.

Uses the system Chromium (Playwright must not download its own); skipped where it is missing.
Run with ``pytest -m browser``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from conftest import REAL_DATA, requires_real_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from app_server import CHROMIUM, CHROMIUM_ARGS, AppDidNotStart, AppServer  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    requires_real_data,
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    # Eager torch: this checks the browser path; auto's one-off preparation is covered by test_app.py.
    env = {**os.environ, "GARBSEG_CACHE": str(tmp_path_factory.mktemp("cache")),
           "GARBSEG_CHECKPOINTS": str(tmp_path_factory.mktemp("no-checkpoints")), "GARBSEG_RUNTIME": "torch"}
    try:
        with AppServer(env, log=tmp_path_factory.mktemp("log") / "streamlit.log", timeout_s=45) as app:
            yield app.url
    except AppDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_upload_on_segment_page_shows_the_overlay(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # Home first: on a fresh server, Streamlit only learns the st.navigation pages from a first run,
    # and a deep link before that shows a (harmless) "Page not found" dialog.
    page.goto(app_url)
    page.get_by_role("heading", name="garbseg - garbage segmentation").wait_for(timeout=60_000)
    page.goto(f"{app_url}/segment")
    page.get_by_role("heading", name="Segment photos").wait_for(timeout=60_000)
    photo = sorted((REAL_DATA / "val" / "images").glob("*.jpg"))[0]
    t0 = time.perf_counter()
    page.locator("input[type=file]").first.set_input_files(str(photo))
    # The photo itself, then one overlay captioned with the default model's name.
    overlay = page.locator("[data-testid=stImage]").filter(has_text="mobilenet_v3_large-lraspp")
    overlay.locator("img").wait_for(timeout=60_000)
    elapsed = time.perf_counter() - t0
    assert page.locator("[data-testid=stImage] img").count() == 2
    assert "untrained (random weights)" in overlay.inner_text()
    assert page.locator("[data-testid=stException]").count() == 0
    natural = overlay.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert min(natural) > 100  # a real picture was delivered, not a broken-image icon
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "segment_upload.png"), full_page=True)
    print(f"upload -> overlay: {elapsed:.1f} s")
    page.close()
