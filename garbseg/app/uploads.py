"""Files users hand to the app: photos, videos and zipped labelled sets, checked before use.

Every function raises :class:`UploadError` (a ``ValueError``) with a message that names the file and
says what was expected, so a page can show it as is instead of a stack trace.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..core.errors import GarbsegError
from ..data import DatasetError, load_dataset, load_image, preferred_split

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
VIDEO_TYPES = ["mp4", "mov", "avi", "webm"]
# Photos are scaled down to this longer side before segmentation: a 12 MP upload would otherwise
# need a ~300 MB logits tensor at full size, and the screen shows far fewer pixels anyway.
MAX_PHOTO_SIDE = 2048
# A zipped data set is refused beyond these (a zip bomb or a mistaken upload).
MAX_ZIP_BYTES = 4 * 2**30
MAX_ZIP_MEMBERS = 200_000
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


def extract_dataset_zip(data: bytes, dest: str | Path | None = None) -> Path:
    """Unpack a zipped labelled set into ``dest`` (default: a new temp folder) and return the folder
    that ``garbseg.data.load_dataset`` opens, wherever it sits inside the zip."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UploadError(f"not a zip file ({exc})") from exc
    with archive:
        members = archive.infolist()
        _check_members(members)
        target = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="garbseg-dataset-"))
        target.mkdir(parents=True, exist_ok=True)
        try:
            archive.extractall(target)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # RuntimeError: encrypted members
            raise UploadError(f"cannot extract the zip: {exc}") from exc
    return find_dataset_root(target)


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if not members:
        raise UploadError("the zip is empty")
    if len(members) > MAX_ZIP_MEMBERS:
        raise UploadError(f"the zip holds {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted")
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        raise UploadError(f"the zip unpacks to {total / 2**30:.1f} GiB; at most {MAX_ZIP_BYTES / 2**30:.0f} GiB")
    for m in members:
        parts = PurePosixPath(m.filename.replace("\\", "/")).parts
        if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UploadError(f"the zip has an unsafe path {m.filename!r} (absolute or with '..')")


def _opens(folder: Path) -> bool:
    """True where ``load_dataset`` can open ``folder`` (directly or through one of its splits)."""
    try:
        load_dataset(folder, preferred_split(folder))
        return True
    except Exception:  # probing: any failure just means "not here"
        return False


def find_dataset_root(folder: Path) -> Path:
    """The shallowest folder under ``folder`` that opens as a data set (zips often wrap one folder)."""
    level = [folder]
    for _ in range(_SEARCH_DEPTH + 1):
        for candidate in level:
            if _opens(candidate):
                return candidate
        level = sorted(child for parent in level for child in parent.iterdir()
                       if child.is_dir() and not child.name.startswith((".", "__MACOSX")))
    raise UploadError(
        "the zip holds no labelled set in a known layout: expected data.yaml (YOLOv8-seg), "
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
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="garbseg-upload-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{suffix}"
    path.write_bytes(data)
    return path
