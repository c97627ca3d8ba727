"""Cold start: from the first upload on a freshly started app to the overlay, in a real browser.

Each run starts ``streamlit run app.py`` headless on a free port with an empty ``GARBSEG_CACHE`` and
the app's default runtime (``auto``; ``$GARBSEG_RUNTIME`` is removed), opens the Segment page in
headless Chromium (Playwright, the system's ``/usr/bin/chromium`` as in ``tests/test_browser.py``),
uploads the first photo of the val split once the page has finished loading (its script idle, as when a
person picks a file; ``--no-idle``: as soon as the heading shows), and measures:

- ``first overlay``: upload -> the default model's overlay on screen (what a new user feels);
- ``fast runtime``: upload -> the overlay computed by the runtime ``auto`` chose (the page switches
  from eager torch to it once its background preparation is done).

    python benchmarks/cold_start.py --runs 3            # three fresh starts; prints each and min/median
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from garbseg.core.paths import default_data_dir  # noqa: E402
from garbseg.models.zoo import default_model  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from app_server import CHROMIUM, CHROMIUM_ARGS, AppDidNotStart, AppServer  # noqa: E402


def one_run(browser, photo: Path, model: str, wait_fast: float, idle_first: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="garbseg-cold-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "GARBSEG_RUNTIME"}
        env["GARBSEG_CACHE"] = cache
        log_path = Path(cache) / "streamlit.log"
        started = time.perf_counter()
        try:
            server = AppServer(env, log=log_path).__enter__()
        except AppDidNotStart as exc:
            raise SystemExit(str(exc)) from exc
        url = server.url
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)  # a first run teaches a fresh server the st.navigation pages
            page.get_by_role("heading", name="garbseg - garbage segmentation").wait_for(timeout=60_000)
            page.goto(f"{url}/segment")
            page.get_by_role("heading", name="Segment photos").wait_for(timeout=60_000)
            if idle_first:  # a person picks a file after the page has loaded: wait until its script is done
                page.locator("[data-testid=stStatusWidget]").wait_for(state="hidden", timeout=120_000)
            ready = time.perf_counter() - started
            t0 = time.perf_counter()
            page.locator("input[type=file]").first.set_input_files(str(photo))
            overlay = page.locator("[data-testid=stImage]").filter(has_text=model)
            overlay.locator("img").wait_for(timeout=120_000)
            first = time.perf_counter() - t0
            timing = page.locator("[data-testid=stMarkdown]").filter(has_text=re.compile(r"network \d+ ms on \S+\)"))
            first_runtime = re.search(r"on (\S+)\)", timing.first.inner_text()).group(1)
            fast, fast_runtime = None, None
            if wait_fast:
                switched = page.locator("[data-testid=stMarkdown]").filter(
                    has_text=re.compile(r"network \d+ ms on (?!torch\))\S+\)"))
                try:
                    switched.first.wait_for(timeout=wait_fast * 1000)
                    fast = time.perf_counter() - t0
                    fast_runtime = re.search(r"on (\S+)\)", switched.first.inner_text()).group(1)
                except Exception:  # never switched within the wait: reported as such, with the server's log
                    print("no switch; server log tail:\n" + log_path.read_text(errors="replace")[-1500:]
                          + "\ncache: " + ", ".join(sorted(f.name for f in Path(cache).rglob("*") if f.is_file())),
                          flush=True)
            page.close()
            return {"page_ready_s": ready, "first_overlay_s": first, "first_runtime": first_runtime,
                    "fast_overlay_s": fast, "fast_runtime": fast_runtime}
        finally:
            server.__exit__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh starts (default 3)")
    parser.add_argument("--data", type=Path, default=None, help="labelled data root (default: the configured one)")
    parser.add_argument("--wait-fast", type=float, default=90, help="seconds to wait for the switch to the fast "
                        "runtime after the first overlay (0: do not wait)")
    parser.add_argument("--no-idle", action="store_true", help="upload as soon as the Segment page's heading shows, "
                        "not once the page has finished loading (then the model's loading is billed to the upload)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data = args.data or default_data_dir()
    photo = sorted((data / "val" / "images").glob("*.jpg"))[0]
    model = default_model()
    print(f"default model {model}; photo {photo.name}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}",
          flush=True)
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for k in range(args.runs):
            r = one_run(browser, photo, model, args.wait_fast, not args.no_idle)
            results.append(r)
            fast = f"{r['fast_overlay_s']:.2f} s on {r['fast_runtime']}" if r["fast_overlay_s"] else "not within the wait"
            print(f"run {k + 1}: upload -> first overlay {r['first_overlay_s']:.2f} s on {r['first_runtime']}; "
                  f"-> fast runtime's overlay {fast} (server start -> page ready {r['page_ready_s']:.1f} s; "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)
        browser.close()
    firsts = [r["first_overlay_s"] for r in results]
    print(f"upload -> first overlay: min {min(firsts):.2f} s, median {statistics.median(firsts):.2f} s, "
          f"max {max(firsts):.2f} s over {len(firsts)} fresh starts")


if __name__ == "__main__":
    main()
