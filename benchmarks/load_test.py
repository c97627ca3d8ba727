"""Many visitors at once: headless Chromium sessions on one `streamlit run app.py` (not part of the tests).

8 sessions upload photos on the Segment page for --seconds (each upload a distinct JPEG, so no cached
result is reused) while 2 more run small benchmarks on the Benchmark page (5 timed runs, speed only,
threads alternating 1 and 2 so each session ends with two result rows). Reported: errors seen in any
page, upload-to-overlay p50/p95, uploads done, benchmark runs done, the server's RSS before (after
warm-up) and after, and whether each benchmark session's rows are all in the results database under
its own session and no other session's.

The server gets a private cache and results database, and a checkpoint folder holding only the
shipped MobileNetV3-LR-ASPP (the Segment page's default model and the Benchmark page's only
preselected one). Runtime: eager torch (--runtime), so no session pays auto's one-off preparation.

    python benchmarks/load_test.py --seconds 180
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from app_server import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402

MODEL = "mobilenet_v3_large-lraspp"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def photos() -> list[Image.Image]:
    folder = ROOT.parent / "shared" / "data" / "garbage-seg" / "val" / "images"
    files = sorted(folder.glob("*.jpg"))[:20] if folder.is_dir() else []
    if files:
        return [Image.open(f).convert("RGB") for f in files]
    rng = random.Random(0)
    return [Image.new("RGB", (640, 480), tuple(rng.randrange(256) for _ in range(3))) for _ in range(20)]


def distinct_jpeg(base: Image.Image, n: int) -> bytes:
    image = base.copy()
    image.putpixel((n % image.width, (n // image.width) % image.height), (n % 256, 0, 255 - n % 256))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def page_errors(page) -> list[str]:
    found = []
    for selector in ("[data-testid=stException]", "[data-testid=stAlertContentError]"):
        loc = page.locator(selector)
        for i in range(await loc.count()):
            found.append((await loc.nth(i).inner_text())[:200])
    return found


async def uploader(browser, url: str, k: int, stop: float, pictures, out: dict) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    n = 0
    try:
        await page.goto(url)
        await page.get_by_role("heading", name="garbseg - garbage segmentation").wait_for(timeout=120_000)
        while time.time() < stop:
            await page.goto(f"{url}/segment")
            await page.get_by_role("heading", name="Segment photos").wait_for(timeout=120_000)
            data = distinct_jpeg(pictures[(k + n) % len(pictures)], k * 100_000 + n)
            t0 = time.perf_counter()
            await page.locator("input[type=file]").first.set_input_files(
                {"name": f"visitor{k}-{n}.jpg", "mimeType": "image/jpeg", "buffer": data})
            overlay = page.locator("[data-testid=stImage]").filter(has_text=MODEL)
            await overlay.locator("img").first.wait_for(timeout=180_000)
            out["latencies"].append(time.perf_counter() - t0)
            out["errors"] += [f"uploader {k}: {e}" for e in await page_errors(page)]
            n += 1
    except Exception as exc:  # a timeout or a crash is an error of the run, recorded
        out["errors"].append(f"uploader {k}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        out["uploads"] += n
        await context.close()


async def benchmarker(browser, url: str, k: int, stop: float, out: dict) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 1200})
    page = await context.new_page()
    runs = 0
    try:
        await page.goto(url)
        await page.get_by_role("heading", name="garbseg - garbage segmentation").wait_for(timeout=120_000)
        await page.goto(f"{url}/benchmark")
        await page.get_by_role("heading", name="Benchmark").first.wait_for(timeout=120_000)
        while time.time() < stop:
            await page.get_by_label("Timed runs").fill("5")
            await page.get_by_label("Warm-up runs").fill("1")
            await page.get_by_label("Threads", exact=True).fill(str(1 + runs % 2))
            await page.get_by_text("none (speed only)").click()
            await page.get_by_role("button", name="Run benchmark").click()
            bar = page.locator("[data-testid=stProgress]")
            try:
                await bar.wait_for(timeout=120_000)  # the run started (waits while others hold the lock)
            except Exception:
                pass  # over before the bar was seen: the message below still says so
            await bar.wait_for(state="detached", timeout=900_000)
            await page.get_by_text(re.compile(r"Measured \d+ result row")).wait_for(timeout=60_000)
            runs += 1
            out["errors"] += [f"benchmark {k}: {e}" for e in await page_errors(page)]
    except Exception as exc:
        out["errors"].append(f"benchmark {k}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        out["bench_runs"].append(runs)
        await context.close()


async def drive(url: str, seconds: float, uploaders: int, benchmarks: int, server_pid: int, out: dict) -> None:
    from playwright.async_api import async_playwright

    pictures = photos()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Warm-up: one upload loads the model, so "before" is the server ready to serve.
        warm = {"latencies": [], "errors": [], "uploads": 0}
        await uploader(browser, url, 99, time.time() + 1, pictures, warm)
        out["warmup_errors"] = warm["errors"]
        out["rss_before_mb"] = rss_mb(server_pid)
        stop = time.time() + seconds
        await asyncio.gather(*[uploader(browser, url, k, stop, pictures, out) for k in range(uploaders)],
                             *[benchmarker(browser, url, k, stop, out) for k in range(benchmarks)])
        out["rss_after_mb"] = rss_mb(server_pid)
        await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--uploaders", type=int, default=8)
    parser.add_argument("--benchmarks", type=int, default=2)
    parser.add_argument("--runtime", default="torch")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="garbseg-loadtest-"))
    checkpoints = work / "checkpoints"
    checkpoints.mkdir()
    shutil.copy(ROOT / "checkpoints" / f"{MODEL}.safetensors", checkpoints)
    (work / "tmp").mkdir()
    env = {**os.environ, "GARBSEG_CACHE": str(work / "cache"), "GARBSEG_CHECKPOINTS": str(checkpoints),
           "GARBSEG_RUNTIME": args.runtime, "TMPDIR": str(work / "tmp")}  # the server's own temp folder
    out = {"latencies": [], "errors": [], "uploads": 0, "bench_runs": []}
    started = time.time()
    with AppServer(env, log=work / "streamlit.log", timeout_s=45) as server:
        asyncio.run(drive(server.url, args.seconds, args.uploaders, args.benchmarks, server.proc.pid, out))
        alive = server.proc.poll() is None

    with sqlite3.connect(work / "cache" / "results.sqlite") as con:
        owners = con.execute("SELECT session, COUNT(*), COUNT(DISTINCT key) FROM results GROUP BY session").fetchall()
    expected = sorted(min(r, 2) for r in out["bench_runs"])
    stored = sorted(count for _, count, _ in owners)
    lat = sorted(out["latencies"])
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; runtime {args.runtime}; {args.seconds:.0f} s; "
          f"{args.uploaders} uploading + {args.benchmarks} benchmarking sessions")
    print(f"server alive at the end: {alive}; wall {time.time() - started:.0f} s")
    print(f"uploads: {out['uploads']}; upload-to-overlay p50 {statistics.median(lat) if lat else float('nan'):.2f} s, "
          f"p95 {p95:.2f} s, max {max(lat) if lat else float('nan'):.2f} s")
    print(f"benchmark runs per session: {out['bench_runs']}; rows per owning session in the database: {stored} "
          f"(expected {expected}): {'none lost or mixed' if stored == expected and len(owners) == args.benchmarks else 'MISMATCH'}")
    print(f"server RSS: {out.get('rss_before_mb', float('nan')):.0f} MB after warm-up -> "
          f"{out.get('rss_after_mb', float('nan')):.0f} MB at the end")
    print(f"errors: {len(out['errors'])}" + "".join(f"\n  {e}" for e in out["errors"][:20]))
    made = [p.name for p in (work / "tmp").glob("garbseg-*")]
    print(f"garbseg-* temp folders the server left: {len(made)}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if not out["errors"] and alive else 1


if __name__ == "__main__":
    sys.exit(main())
