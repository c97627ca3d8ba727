"""On-disk cache for exported models, parity results and ``auto`` choices.

Everything derived from a model lives in one folder named after the model and a hash of its
weights *content* (not the file path or mtime), so retrained weights never reuse stale exports and
the same weights loaded from two places share one export. Root: ``garbseg.core.paths.cache_root()``
(``$GARBSEG_CACHE`` or ``.garbseg_cache/`` in the project).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import torch

from ...core.paths import cache_root
from ...models import LoadedModel

# Bump when the export recipe or a check's definition changes: old entries are then ignored.
CACHE_VERSION = 2  # 2: exports stop at the head's logits (models.head_logits)


def weights_hash(loaded: LoadedModel) -> str:
    """sha256 over the architecture description and every inference tensor's bytes."""
    h = hashlib.sha256()
    meta = loaded.meta
    header = {"model": meta.model, "classes": list(meta.classes), "model_kwargs": meta.model_kwargs,
              "cache_version": CACHE_VERSION}
    h.update(json.dumps(header, sort_keys=True).encode())
    for name, tensor in loaded.model.state_dict().items():
        if name.startswith("aux_classifier."):
            continue  # training-only head; never exported
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: 0-d tensors cannot be viewed as bytes
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()) if t.numel() else b"")
    return h.hexdigest()


def model_dir(loaded: LoadedModel) -> Path:
    """The cache folder of these weights (created on demand)."""
    key = getattr(loaded, "_garbseg_weights_key", None)
    if key is None or getattr(loaded, "_garbseg_weights_version", None) != _param_version(loaded):
        key = weights_hash(loaded)
        # Remember the hash while the parameters are untouched (in-place edits bump _version).
        loaded._garbseg_weights_key = key
        loaded._garbseg_weights_version = _param_version(loaded)
    folder = cache_root() / f"{loaded.name}-{key[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _param_version(loaded: LoadedModel) -> tuple:
    # Tensor._version counts in-place writes, and ids change when tensors are replaced.
    return tuple((id(t), t._version) for t in loaded.model.state_dict(keep_vars=True).values())


# --- size and clean-up (python -m garbseg cache) ----------------------------------------------------

_ENTRY = re.compile(r"^.+-[0-9a-f]{16}$")  # model_dir's names; nothing else in the root is touched


def cache_entries(root: Path | None = None) -> list[tuple[Path, int, float]]:
    """(folder, bytes, last modified) of every model folder in the cache, least recently used first."""
    root = Path(root or cache_root())
    entries = []
    for folder in root.iterdir() if root.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink() and _ENTRY.match(folder.name):
            files = [f for f in folder.rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            latest = max([f.stat().st_mtime for f in files] + [folder.stat().st_mtime])
            entries.append((folder, size, latest))
    return sorted(entries, key=lambda e: e[2])


def clean_cache(max_bytes: int = 0, root: Path | None = None) -> list[Path]:
    """Delete model folders, least recently used first, until the rest holds at most ``max_bytes``
    (0: all of them). They are rebuilt on next use; the removed folders are returned."""
    entries = cache_entries(root)
    total = sum(size for _, size, _ in entries)
    removed = []
    for folder, size, _ in entries:
        if total <= max_bytes:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(folder)
    return removed
