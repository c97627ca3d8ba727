"""Writing files so that a reader never sees half of one, and reading JSON that may be damaged."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable


_PARTIAL = ".partial"  # the suffix of atomic_write's temp files: what a killed process leaves behind
# safetensors' save_file writes through its own temp file beside the target (Rust's tempfile crate:
# ".tmp" and six characters) before renaming it, so a kill inside atomic_write can leave one of those.
_SAFETENSORS_TEMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file.

    The temp file is ``.<name>.<random>.partial`` beside ``path``; one left by a killed process is
    removed by :func:`remove_partial_writes`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_PARTIAL, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_partial_writes(folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Delete the temp files that atomic writes into ``folder`` (of ``names`` only, when given) left
    behind when their process was killed, and safetensors' own (which name no target); the removed
    paths. Call it only where no writer is running."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if not path.name.startswith(".") or not path.is_file():
            continue
        if _SAFETENSORS_TEMP.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
            continue
        target = path.name[1:].rsplit(".", 2)[0] if path.name.endswith(_PARTIAL) else path.name[1:].rsplit(".", 1)[0]
        if names is not None and target not in names:
            continue
        if path.name.endswith(_PARTIAL) or (names is not None and target in names):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
