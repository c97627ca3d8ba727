"""Writing files so that a reader never sees half of one, and reading JSON that may be damaged."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when missing or unreadable (a corrupt entry is a miss)."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def write_json(path: str | Path, obj: dict) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def update_json(path: str | Path, key: str, value) -> None:
    """Set one key of a JSON object file (read, modify, atomic write)."""
    obj = read_json(path)
    obj[key] = value
    write_json(path, obj)
