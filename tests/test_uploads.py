"""garbseg.app.uploads: photos of any mode/orientation/size, and zipped labelled sets in any layout."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import make_yolo_set, zip_folder
from garbseg.bench.suite import open_eval_set
from garbseg.app.uploads import UploadError, decode_photo, extract_dataset_zip, save_upload
from garbseg.data import load_dataset, preferred_split


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_exif_rotated_photo_comes_upright():
    # Stored 40 wide x 20 high with orientation 6 ("rotate 90 CW to display"): shown 20 x 40.
    image = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = decode_photo("phone.jpg", encode(image, "JPEG", exif=exif))
    assert photo.image.size == (20, 40) and photo.image.mode == "RGB"


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("L", "PNG"), ("I;16", "PNG"), ("P", "BMP"),
                                      ("RGB", "WEBP")])
def test_any_mode_becomes_rgb(mode, fmt):
    image = Image.new(mode, (16, 12))
    photo = decode_photo(f"x.{fmt.lower()}", encode(image, fmt))
    assert photo.image.mode == "RGB" and photo.image.size == (16, 12) and not photo.resized


def test_large_photo_is_scaled_down_keeping_aspect():
    photo = decode_photo("big.png", encode(Image.new("RGB", (3000, 1500)), "PNG"), max_side=1000)
    assert photo.image.size == (1000, 500) and photo.original_size == (3000, 1500) and photo.resized


def test_same_bytes_same_digest_different_bytes_different_digest():
    a = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG")
    b = encode(Image.new("RGB", (8, 8), (3, 2, 1)), "PNG")
    assert decode_photo("a", a).digest == decode_photo("again", a).digest != decode_photo("b", b).digest


@pytest.mark.parametrize("data", [b"", b"this is text, not pixels", encode(Image.new("RGB", (50, 50)), "JPEG")[:120]])
def test_non_images_raise_upload_error_naming_the_file(data):
    with pytest.raises(UploadError, match="notes.jpg"):
        decode_photo("notes.jpg", data)


# ----------------------------------------------------------------------------- zipped sets


def test_zip_with_a_wrapping_folder_opens_at_the_data_root(tmp_path):
    source = make_yolo_set(tmp_path / "src", n_train=2, n_val=2, size=32)
    root = extract_dataset_zip(zip_folder(source, "export-v3/"), tmp_path / "out")
    assert root == tmp_path / "out" / "export-v3"
    assert preferred_split(root) == "val"
    assert len(load_dataset(root, "val")) == 2
    assert len(open_eval_set(root, max_images=1)) == 1


def test_zip_of_a_single_split_folder(tmp_path):
    source = make_yolo_set(tmp_path / "src", n_train=1, n_val=3, size=32)
    root = extract_dataset_zip(zip_folder(source / "val"), tmp_path / "out")
    assert root == tmp_path / "out" and preferred_split(root) is None
    assert len(open_eval_set(root)) == 3


def test_zip_of_image_and_mask_folders(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16)).save(src / "images" / f"{i}.png")
        Image.fromarray(np.full((16, 16), i, np.uint8)).save(src / "masks" / f"{i}.png")
    root = extract_dataset_zip(zip_folder(src, "a/b/"), tmp_path / "out")
    # "a" already opens: a root whose only split is "b".
    assert root == tmp_path / "out" / "a" and preferred_split(root) == "b"
    assert len(open_eval_set(root)) == 2


def test_bad_zips_give_clear_errors(tmp_path):
    with pytest.raises(UploadError, match="not a zip"):
        extract_dataset_zip(b"PK but not really")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photos/cat.jpg", encode(Image.new("RGB", (8, 8)), "JPEG"))
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UploadError, match="no labelled set in a known layout"):
        extract_dataset_zip(buf.getvalue(), tmp_path / "x")
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escape.txt", "x")
    with pytest.raises(UploadError, match="unsafe path"):
        extract_dataset_zip(evil.getvalue(), tmp_path / "y")
    assert not (tmp_path / "escape.txt").exists()


def test_save_upload_keeps_the_extension(tmp_path):
    path = save_upload(b"abc", "Clip.MOV", tmp_path)
    assert path.name == "Clip.mov" and path.read_bytes() == b"abc"
    assert save_upload(b"x", "../../a b/../evil?.mp4", tmp_path).parent == tmp_path
    with pytest.raises(UploadError, match="empty"):
        save_upload(b"", "x.mp4", tmp_path)
