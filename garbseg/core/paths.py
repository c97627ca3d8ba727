"""Where things live, read at call time so that an environment variable set by a test or a shell
takes effect without re-importing anything.

- data: ``$GARBSEG_DATA``, else ``../shared/data/garbage-seg`` beside the checkout where it exists,
  else the embedded sample set (garbage-seg's val split, committed under ``sample_data/``);
- shipped checkpoints: ``$GARBSEG_CHECKPOINTS``, else ``checkpoints/`` in the project;
- caches (runtime exports, checks, results): ``$GARBSEG_CACHE``, else ``.garbseg_cache/`` in the project.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    return _PROJECT_ROOT


def shared_data_dir() -> Path:
    """The shared garbage-seg folder beside the checkout (it may not exist)."""
    return _PROJECT_ROOT.parent / "shared" / "data" / "garbage-seg"


def embedded_data_dir() -> Path:
    """The labelled sample set that ships with the project (garbage-seg val, CC BY 4.0)."""
    return _PROJECT_ROOT / "sample_data" / "garbage-seg"


def default_data_dir() -> Path:
    """``$GARBSEG_DATA``, else the shared folder where it exists, else the embedded sample."""
    if os.environ.get("GARBSEG_DATA"):
        return Path(os.environ["GARBSEG_DATA"])
    shared = shared_data_dir()
    return shared if (shared / "data.yaml").is_file() else embedded_data_dir()


def checkpoint_dir() -> Path:
    return Path(os.environ.get("GARBSEG_CHECKPOINTS") or _PROJECT_ROOT / "checkpoints")


def cache_root() -> Path:
    return Path(os.environ.get("GARBSEG_CACHE") or _PROJECT_ROOT / ".garbseg_cache")


def git_commit(root: Path | None = None) -> str | None:
    """The commit the code runs from (with ``-dirty`` when the tree has changes), if in git.

    ``$GARBSEG_COMMIT`` stands in where the code runs from a copy without ``.git`` (a GPU machine).
    """
    if os.environ.get("GARBSEG_COMMIT"):
        return os.environ["GARBSEG_COMMIT"]
    root = root or _PROJECT_ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
