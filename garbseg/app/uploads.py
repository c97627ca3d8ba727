"""Files users hand to the app: photos, videos and zipped labelled sets, checked before use.

Every function raises :class:`UploadError` (a ``ValueError``) with a message that names the file and
says what was expected, so a page can show it as is instead of a stack trace.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml
from PIL import Image

from ..core.errors import GarbsegError
from ..data import DatasetError, load_dataset, load_image, preferred_split

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
VIDEO_TYPES = ["mp4", "mov", "avi", "webm"]
# Photos are scaled down to this longer side before segmentation: a 12 MP upload would otherwise
# need a ~300 MB logits tensor at full size, and the screen shows far fewer pixels anyway.
MAX_PHOTO_SIDE = 2048
# A zipped data set is refused beyond these (a zip bomb or a mistaken upload): the sizes the zip
# declares are checked first, then the bytes actually written while extracting.
MAX_ZIP_BYTES = 2**30
MAX_ZIP_MEMBERS = 200_000
TEMP_PREFIX = "garbseg-"  # every temp folder the app makes starts so; stale ones are swept
_CHUNK = 1 << 20
_SEARCH_DEPTH = 3  # how deep inside the zip to look for the data set's root


class UploadError(GarbsegError, ValueError):
    """An uploaded file that cannot be used; the message says why."""


@dataclass
class Photo:
    name: str
    image: Image.Image  # RGB, EXIF orientation applied, longer side <= MAX_PHOTO_SIDE
    original_size: tuple[int, int]
    digest: str  # content hash: a stable key for caching predictions

    @property
    def resized(self) -> bool:
        return self.image.size != self.original_size


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def decode_photo(name: str, data: bytes, max_side: int = MAX_PHOTO_SIDE) -> Photo:
    """Decode an uploaded photo of any mode and orientation into a bounded-size RGB image."""
    if not data:
        raise UploadError(f"{name}: the file is empty")
    try:
        image = load_image(data)
    except DatasetError as exc:
        raise UploadError(f"{name} is not an image this app can read ({', '.join(IMAGE_TYPES)}): "
                          f"{_reason(exc)}") from exc
    original = image.size
    if max(original) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return Photo(name, image, original, digest(data))


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("cannot decode image") and ": " in text else text


# ----------------------------------------------------------------------------- zipped data sets


def extract_dataset_zip(data: bytes, dest: str | Path | None = None, name: str = "the zip") -> Path:
    """Unpack a zipped labelled set into ``dest`` (default: a new temp folder) and return the folder
    that ``garbseg.data.load_dataset`` opens, wherever it sits inside the zip. Nothing is left behind
    when it fails."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{name}: not a zip file ({exc})") from exc
    target = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}dataset-"))
    made = dest is None or not target.exists()
    try:
        with archive:
            members = archive.infolist()
            _check_members(members, name)
            target.mkdir(parents=True, exist_ok=True)
            _extract(archive, members, target, name)
        _check_yaml_paths(target, name)
        return find_dataset_root(target, name)
    except BaseException:
        if made:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], target: Path, name: str) -> None:
    """Write every member under ``target``, counting the bytes really written (headers can lie)."""
    written, root = 0, target.resolve()
    for m in members:
        path = (target / m.filename.replace("\\", "/")).resolve()
        if path != root and root not in path.parents:
            raise UploadError(f"{name}: unsafe path {m.filename!r} leads outside the folder")
        if m.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(m) as src, open(path, "wb") as out:
                member_bytes = 0
                while chunk := src.read(_CHUNK):
                    member_bytes += len(chunk)
                    written += len(chunk)
                    if written > MAX_ZIP_BYTES or member_bytes > m.file_size:
                        raise UploadError(f"{name} unpacks to more than it declares or than "
                                          f"{MAX_ZIP_BYTES / 2**30:.0f} GiB (a zip bomb?); refused")
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError) as exc:
            if isinstance(exc, UploadError):
                raise
            # RuntimeError: encrypted members; zlib errors: damaged data
            raise UploadError(f"{name}: cannot extract {m.filename!r}: {exc}") from exc


def _check_members(members: list[zipfile.ZipInfo], name: str = "the zip") -> None:
    if not members:
        raise UploadError(f"{name} is empty")
    if len(members) > MAX_ZIP_MEMBERS:
        raise UploadError(f"{name} holds {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted")
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        raise UploadError(f"{name} unpacks to {total / 2**30:.1f} GiB; at most {MAX_ZIP_BYTES / 2**30:.0f} GiB")
    for m in members:
        parts = PurePosixPath(m.filename.replace("\\", "/")).parts
        if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UploadError(f"{name} has an unsafe path {m.filename!r} (absolute or with '..')")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise UploadError(f"{name} holds a symbolic link {m.filename!r}; links are not accepted")


def _check_yaml_paths(folder: Path, name: str) -> None:
    """Every data.yaml in an uploaded set must be valid and point inside the set: a ``path:`` or split
    entry leading elsewhere on the server is refused, never followed."""
    root = folder.resolve()
    for yaml_path in sorted(folder.rglob("*.yaml")) + sorted(folder.rglob("*.yml")):
        shown = yaml_path.relative_to(folder).as_posix()
        try:
            config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UploadError(f"{name}: {shown} is not valid YAML ({problem})") from None
        if yaml_path.name not in ("data.yaml", "data.yml"):
            continue
        if not isinstance(config, dict):
            raise UploadError(f"{name}: {shown} is not a YAML mapping of path, train, val and names")
        declared = str(config.get("path") or "")
        base = _inside(root, yaml_path.parent, declared, name, shown)
        for key in ("train", "val", "valid", "test"):
            value = config.get(key)
            for entry in value if isinstance(value, list) else [value] if value else []:
                _inside(root, base, str(entry), name, shown)


def _inside(root: Path, base: Path, entry: str, name: str, shown: str) -> Path:
    """``base / entry`` resolved, refused unless inside ``root`` (with the loader's "../" retry)."""
    if not entry:
        return base
    tries = [entry] + ([entry[3:]] if entry.startswith("../") else [])
    for text in tries:
        resolved = (base / text).resolve()
        if not Path(text).is_absolute() and (resolved == root or root in resolved.parents):
            return resolved
    raise UploadError(f"{name}: {shown} points outside the zip ({entry!r}); only folders inside the upload are read")


def _opens(folder: Path) -> bool:
    """True where ``load_dataset`` can open ``folder`` (directly or through one of its splits)."""
    try:
        load_dataset(folder, preferred_split(folder))
        return True
    except Exception:  # probing: any failure just means "not here"
        return False


def find_dataset_root(folder: Path, name: str = "the zip") -> Path:
    """The shallowest folder under ``folder`` that opens as a data set (zips often wrap one folder)."""
    level = [folder]
    for _ in range(_SEARCH_DEPTH + 1):
        for candidate in level:
            if _opens(candidate):
                return candidate
        level = sorted(child for parent in level for child in parent.iterdir()
                       if child.is_dir() and not child.name.startswith((".", "__MACOSX")))
    raise UploadError(
        f"{name} holds no labelled set in a known layout: expected data.yaml (YOLOv8-seg), "
        "images/ + labels/ (YOLO split), images/ + masks/ (image+mask) or a COCO annotations.json, "
        "at its top level or inside a folder"
    )


# ----------------------------------------------------------------------------- videos


def save_upload(data: bytes, name: str, folder: str | Path | None = None) -> Path:
    """Write an upload to a fresh temp folder under its own (sanitised) name, so decoders see the
    extension and error messages name the file the user knows."""
    if not data:
        raise UploadError(f"{name}: the file is empty")
    safe = re.sub(r"[^A-Za-z0-9._ -]+", "_", Path(name).name).strip(" .") or "upload"
    stem, suffix = Path(safe).stem, Path(safe).suffix.lower()
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}upload-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{suffix}"
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- clean-up


def discard(*paths: str | Path | None) -> None:
    """Remove the temp folders the app made for these files or folders (anything else is left alone)."""
    temp = Path(tempfile.gettempdir()).resolve()
    for path in paths:
        if path is None:
            continue
        path = Path(path).resolve()
        for folder in [path, *path.parents]:
            if folder.parent == temp and folder.name.startswith(TEMP_PREFIX):
                shutil.rmtree(folder, ignore_errors=True)
                break


def sweep_stale(max_age_hours: float = 6.0, now: float | None = None) -> list[Path]:
    """Remove ``garbseg-*`` temp folders untouched for ``max_age_hours`` (sessions that ended or died)."""
    now = time.time() if now is None else now
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > max_age_hours * 3600:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            continue
    return removed
