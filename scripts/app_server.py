"""The app in a real browser: ``streamlit run app.py`` headless on a free local port, and the Chromium
settings every browser check uses (Debian's /usr/bin/chromium: Playwright must not download its own).

    with AppServer(env) as app:      # waits for the health endpoint; stops the server on exit
        page.goto(app.url)

Used by tests/test_browser.py, scripts/app_screenshots.py, benchmarks/cold_start.py and
benchmarks/load_test.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class AppDidNotStart(RuntimeError):
    """The server exited or did not answer its health check in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` for the length of a ``with`` block; ``env`` is the server's whole
    environment (default: this process's), ``log`` a file for its output (default: discarded)."""

    def __init__(self, env: dict | None = None, log: str | Path | None = None, timeout_s: float = 60.0):
        self.env = dict(os.environ if env is None else env)
        self.log_path = Path(log) if log else None
        self.timeout_s = timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "AppServer":
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2)
                return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.__exit__()
                    raise AppDidNotStart(f"streamlit did not start within {self.timeout_s:.0f} s"
                                         + (f" (log: {self.log_path})" if self.log_path else ""))
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
