"""Hostile and odd inputs, each with the exact behaviour it must get: a clear one-line message that names
the file and what is wrong (no traceback), or a correct result; nothing left behind.

Kinds covered (surface in brackets):
 1 zero-byte photo [Segment upload]          2 truncated JPEG [Segment upload]
 3 text renamed .jpg [Segment upload]        4 SVG/HTML renamed .png [Segment upload]
 5 16-bit PNG [Segment upload]               6 CMYK JPEG [Segment upload]
 7 palette PNG with transparency [upload]    8 animated GIF / WebP [upload]
 9 EXIF-rotated photo [upload]              10 1x1 photo [upload]
11 10000x50 photo [upload]                  12 decompression bomb PNG (30000x30000) [upload]
13 video that is text [Stream upload]       14 truncated MP4 [Stream upload]
15 video with no frames [Stream upload]     16 long video: bounded by max_frames [Stream]
17 zip with ../ paths [Benchmark zip]       18 zip with absolute paths [Benchmark zip]
19 zip with a symlink [Benchmark zip]       20 zip bomb, declared sizes [Benchmark zip]
21 zip bomb, lying headers [Benchmark zip]  22 zip with no images [Benchmark zip]
23 invalid data.yaml in a zip [Benchmark]   24 data.yaml path: pointing at the server [Benchmark zip]
25 labels with class ids beyond the list [eval / zip]
26 data folder /etc, a file, missing [app setting, CLI eval]
27 pickle checkpoint whose __reduce__ runs a command [CLI predict]
28 safetensors: wrong model name, 29 wrong class count, 30 NaN weights, 31 truncated header,
   input_size 0, no normalisation, metadata not JSON [CLI eval]
32 CLI values out of range [train, eval, predict, bench]     33 damaged state.pt on --resume [CLI train]
34 same photo uploaded twice + a Markdown file name [Segment page]
35 predict on an unreadable image [CLI predict]
36 a runtime cache and stale upload folders that grow [cache --clean, temp sweep]
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import make_yolo_set, zip_folder
from garbseg.app.uploads import MAX_ZIP_BYTES, UploadError, decode_photo, extract_dataset_zip
from garbseg.cli import main
from garbseg.present.video import VideoError, segment_video

FAST = "mobilenet_v3_large-lraspp"


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "<_io." not in text and "0x" not in text, text
    return lines[0]


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo_bytes(size=(64, 48), mode="RGB") -> bytes:
    return encoded(Image.new(mode, size, 120), "JPEG")


# ----------------------------------------------------------------------------- photos (Segment page)


@pytest.mark.parametrize("name, data, expected", [
    ("empty.jpg", b"", "empty.jpg: the file is empty"),
    ("cut.jpg", photo_bytes((256, 256))[:300],
     "cut.jpg is not an image this app can read (jpg, jpeg, png, webp, bmp): the file is cut short (truncated)"),
    ("notes.jpg", b"just some text, not a photo\n" * 20,
     "notes.jpg is not an image this app can read (jpg, jpeg, png, webp, bmp): not a known image format"),
    ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>',
     "drawing.png is not an image this app can read"),
    ("page.png", b"<html><body><img src='http://example.org/x.png'></body></html>",
     "drawing.png is not an image this app can read".replace("drawing", "page")),
], ids=["zero-byte", "truncated-jpeg", "text-as-jpg", "svg-as-png", "html-as-png"])
def test_unreadable_photos_get_one_line_naming_the_file(name, data, expected):
    with pytest.raises(UploadError) as info:
        decode_photo(name, data)
    assert one_line(str(info.value)).startswith(expected)


def test_a_decompression_bomb_is_refused_without_decoding():
    # A valid PNG header claiming 30000 x 30000 (900 MP) with almost no data.
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(UploadError) as info:
        decode_photo("bomb.png", data)
    message = one_line(str(info.value))
    assert message == ("bomb.png is not an image this app can read (jpg, jpeg, png, webp, bmp): Image size "
                       "(900000000 pixels) exceeds limit of 178956970 pixels (a decompression bomb?)")


def _cmyk() -> bytes:
    return encoded(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 20, 30))
    return encoded(image, "PNG", transparency=0)


def _sixteen_bit() -> bytes:
    return encoded(Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), "PNG")


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    return encoded(image, "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize("name, make, size", [
    ("deep.png", _sixteen_bit, (40, 30)),
    ("print.jpg", _cmyk, (40, 30)),
    ("palette.png", _palette_with_transparency, (40, 30)),
    ("moving.gif", lambda: _animated("GIF"), (40, 30)),
    ("moving.webp", lambda: _animated("WEBP"), (40, 30)),
    ("phone.jpg", _exif_rotated, (30, 40)),  # turned upright: width and height swap
    ("dot.png", lambda: encoded(Image.new("RGB", (1, 1), 9), "PNG"), (1, 1)),
    ("strip.png", lambda: encoded(Image.new("L", (10000, 50), 9), "PNG"), (2048, 10)),  # scaled to 2048
], ids=["16-bit-png", "cmyk-jpeg", "palette-transparency", "animated-gif", "animated-webp", "exif-rotated",
        "1x1", "10000x50"])
def test_odd_but_valid_photos_decode_to_bounded_rgb(name, make, size):
    photo = decode_photo(name, make())
    assert photo.image.mode == "RGB" and photo.image.size == size


def test_a_1x1_photo_and_a_strip_segment_without_error():
    from garbseg.inference import Predictor
    from garbseg.models import random_model

    predictor = Predictor(random_model(FAST, ["background", "a"], 32))
    for data in (encoded(Image.new("RGB", (1, 1), 9), "PNG"), encoded(Image.new("RGB", (10000, 50), 9), "PNG")):
        photo = decode_photo("x.png", data)
        assert predictor.predict(photo.image).shape == photo.image.size[::-1]


# ----------------------------------------------------------------------------- videos (Stream page)


class _Blank:
    classes = ["background", "a"]

    def predict(self, image):
        return np.zeros((image.height, image.width), dtype=np.uint8)


def _mp4(path: Path, frames: int = 12, size=(64, 48)) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), i * 20 % 255, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_a_text_file_named_mp4_is_not_a_video(tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError) as info:
        segment_video(src, tmp_path / "out.mp4", _Blank())
    assert one_line(str(info.value)).startswith("clip.mp4: not a video this app can read")


def test_a_video_without_frames_is_refused(tmp_path):
    src = _mp4(tmp_path / "none.mp4", frames=0)
    with pytest.raises(VideoError) as info:
        segment_video(src, tmp_path / "out.mp4", _Blank())
    assert one_line(str(info.value)).startswith("none.mp4: ")


def test_a_truncated_mp4_is_segmented_part_way_and_says_so(tmp_path):
    # mp4v frames at the end of the file: cut the last third (moov written first is not needed by mpegts)
    whole = _mp4(tmp_path / "whole.ts", frames=40)
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) * 2 // 3])
    report = segment_video(cut, tmp_path / "out.mp4", _Blank(), max_side=64)
    assert 0 < report.frames_segmented < 40


def test_a_long_video_is_bounded_by_max_frames(tmp_path):
    src = _mp4(tmp_path / "long.mp4", frames=120)
    seen = []
    report = segment_video(src, tmp_path / "out.mp4", _Blank(), max_frames=5, on_frame=lambda e: seen.append(e.index))
    assert report.frames_segmented == 5 and seen == [0, 1, 2, 3, 4] and report.frames_read <= 6


# ----------------------------------------------------------------------------- zipped labelled sets (Benchmark)


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buf.getvalue()


def _temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("garbseg-dataset-*")}


@pytest.mark.parametrize("entries, links, expected", [
    ({"../evil.txt": b"x"}, None, "set.zip has an unsafe path '../evil.txt'"),
    ({"/etc/evil.txt": b"x"}, None, "set.zip has an unsafe path '/etc/evil.txt'"),
    ({"data/readme.txt": b"x"}, {"data/link": "/etc/passwd"}, "set.zip holds a symbolic link 'data/link'"),
    ({"readme.txt": b"no images here"}, None, "set.zip holds no labelled set in a known layout"),
    ({"data.yaml": b"names: [a, b\ntrain: [unclosed"}, None, "set.zip: data.yaml is not valid YAML"),
    ({"data.yaml": b"path: /etc\ntrain: .\nval: .\nnames: [a]\n"}, None,
     "set.zip: data.yaml points outside the zip ('/etc')"),
    ({"data.yaml": b"path: ../../../../../../etc\ntrain: .\nval: .\nnames: [a]\n"}, None,
     "set.zip: data.yaml points outside the zip"),
    ({"data.yaml": b"train: /usr/share\nval: /usr/share\nnames: [a]\n"}, None,
     "set.zip: data.yaml points outside the zip ('/usr/share')"),
], ids=["dotdot-path", "absolute-path", "symlink", "no-images", "invalid-yaml", "yaml-path-absolute",
        "yaml-path-dotdot", "yaml-split-absolute"])
def test_hostile_zips_are_refused_with_one_line_and_leave_nothing(entries, links, expected):
    before = _temp_folders()
    with pytest.raises(UploadError) as info:
        extract_dataset_zip(_zip(entries, links), name="set.zip")
    assert one_line(str(info.value)).startswith(expected), str(info.value)
    assert _temp_folders() == before
    assert not Path("/etc/evil.txt").exists() or Path("/etc/evil.txt").read_bytes() != b"x"


def test_a_zip_bomb_is_refused_by_its_declared_size():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.yaml", b"names: [a]\n")
    data = bytearray(buf.getvalue())
    # declare 2 GiB in the central directory record of the member
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24: cd + 28] = struct.pack("<I", 2 * 2**30)
    with pytest.raises(UploadError) as info:
        extract_dataset_zip(bytes(data), name="bomb.zip")
    assert one_line(str(info.value)) == f"bomb.zip unpacks to 2.0 GiB; at most {MAX_ZIP_BYTES // 2**30} GiB"


def test_a_zip_bomb_with_lying_headers_is_stopped_while_extracting(monkeypatch):
    monkeypatch.setattr("garbseg.app.uploads.MAX_ZIP_BYTES", 4 * 2**20)  # the same check, at a testable scale
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * (8 * 2**20))
    data = bytearray(buf.getvalue())
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # claim 1 KiB unpacked
        at = data.find(sig)
        data[at + offset: at + offset + 4] = struct.pack("<I", 1024)
    before = _temp_folders()
    with pytest.raises(UploadError) as info:
        extract_dataset_zip(bytes(data), name="liar.zip")
    assert "liar.zip" in one_line(str(info.value))
    assert _temp_folders() == before


def test_labels_with_class_ids_beyond_the_class_list_name_the_file_and_line(tmp_path):
    from garbseg.data import DatasetError, load_dataset

    root = make_yolo_set(tmp_path / "set", n_train=1, n_val=1, size=32)
    label = next((root / "val" / "labels").glob("*.txt"))
    label.write_text("7 0.1 0.1 0.5 0.1 0.5 0.5\n")
    dataset = load_dataset(root, "val")
    with pytest.raises(DatasetError) as info:
        dataset[0]
    message = one_line(str(info.value))
    assert label.name in message and "7" in message


def test_a_good_zip_still_opens_after_all_these_checks(tmp_path):
    root = make_yolo_set(tmp_path / "set", n_train=1, n_val=2, size=32)
    folder = extract_dataset_zip(zip_folder(root, "export/"), name="good.zip")
    try:
        assert (folder / "data.yaml").is_file() and folder.name == "export"
    finally:
        import shutil
        shutil.rmtree(folder.parent, ignore_errors=True)


# ----------------------------------------------------------------------------- CLI


def cli(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("args, expected", [
    (["train", "--model", FAST, "--epochs", "0"], "argument --epochs: 0 is out of range: at least 1"),
    (["train", "--model", FAST, "--epochs", "-1"], "argument --epochs: -1 is out of range: at least 1"),
    (["train", "--model", FAST, "--size", "0"], "argument --size: 0 is out of range: 16..4096 px"),
    (["train", "--model", FAST, "--size", "-5"], "argument --size: -5 is out of range: 16..4096 px"),
    (["eval", "--checkpoint", "x", "--size", "100000"], "argument --size: 100000 is out of range: 16..4096 px"),
    (["train", "--model", FAST, "--batch-size", "0"], "argument --batch-size: 0 is out of range: at least 1"),
    (["eval", "--checkpoint", "x", "--threads", "-1"], "argument --threads: -1 is out of range: 1..1024"),
    (["bench", "--model", FAST, "--threads", "0"], "argument --threads: 0 is out of range: 1..1024"),
    (["train", "--model", FAST, "--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    (["bench", "--model", FAST, "--runs", "0"], "argument --runs: 0 is out of range: at least 1"),
    (["predict", "--checkpoint", "x", "--out", "o", "a.jpg", "--alpha", "2"], "argument --alpha: 2 is out of range"),
], ids=lambda v: "_".join(v) if isinstance(v, list) else None)
def test_cli_values_out_of_range_exit_2_with_one_line(capsys, args, expected):
    code, err = cli(capsys, *args)
    assert code == 2 and expected in one_line(err)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    from garbseg.models import make_metadata, random_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    loaded = random_model(FAST, ["background", "red", "blue"], 32)
    meta = make_metadata(loaded.model, classes=["background", "red", "blue"], input_size=32,
                         model_kwargs={"output_stride": 16}, trained=True)
    save_checkpoint(path, loaded.model, meta)
    return path


def _edited(good: Path, dst: Path, *, meta=None, tensors=None) -> Path:
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        header = dict(f.metadata())
    state = load_file(str(good))
    key = next(k for k in header)
    if meta:
        header[key] = json.dumps(meta(json.loads(header[key])))
    if tensors:
        tensors(state)
    save_file(state, str(dst), metadata=header)
    return dst


def _raw_header(good: Path, dst: Path, text: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        header = dict(f.metadata())
    save_file(load_file(str(good)), str(dst), metadata={k: text for k in header})
    return dst


def _truncated(good: Path, dst: Path) -> Path:
    dst.write_bytes(good.read_bytes()[:40])  # the 8-byte length, then a header cut short
    return dst


def _nan(state):
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))


@pytest.mark.parametrize("edit, expected", [
    (lambda good, dst: _edited(good, dst, meta=lambda m: {**m, "model": "resnet50-fcn"}), "weights do not fit resnet50-fcn"),
    (lambda good, dst: _edited(good, dst, meta=lambda m: {**m, "model": "nonsense-model"}), "nonsense"),
    (lambda good, dst: _edited(good, dst, meta=lambda m: {**m, "classes": ["background", "only"]}),
     "weights do not fit"),
    (lambda good, dst: _edited(good, dst, tensors=_nan), "NaN or infinite"),
    (lambda good, dst: _truncated(good, dst), "not a readable safetensors file"),
    (lambda good, dst: _edited(good, dst, meta=lambda m: {**m, "input_size": 0}),
     "input_size must be a whole number from 16 to 4096, not 0"),
    (lambda good, dst: _edited(good, dst, meta=lambda m: {**m, "normalization": {"std": [1, 1, 1]}}),
     "normalization must hold 3 means"),
    (lambda good, dst: _raw_header(good, dst, "{not json"), "metadata is not valid JSON"),
], ids=["wrong-model-name", "unknown-model-name", "wrong-class-count", "nan-weights", "truncated-header",
        "input-size-0", "no-normalisation", "metadata-not-json"])
def test_damaged_safetensors_give_one_line_from_eval(capsys, tmp_path, good_checkpoint, edit, expected, tiny_data):
    bad = edit(good_checkpoint, tmp_path / "bad.safetensors")
    code, err = cli(capsys, "eval", "--checkpoint", bad, "--data", tiny_data)
    assert code == 2, err
    line = one_line(err)
    assert line.startswith("error: ") and "bad.safetensors" in line and expected in line, line


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_checkpoint_never_runs_its_payload(capsys, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model_state_dict": _RunsACommand(marker)}, f)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")  # a real photo: the checkpoint is what is refused
    code, err = cli(capsys, "predict", "--checkpoint", bad, "--out", tmp_path / "out", tmp_path / "x.jpg")
    assert code == 2 and not marker.exists()
    line = one_line(err)
    assert "evil.pt: refused" in line and "weights_only=True" in line and "weights_only=False" not in line
    torch.save({"model_state_dict": _RunsACommand(marker)}, tmp_path / "evil2.pt")
    code, err = cli(capsys, "eval", "--checkpoint", tmp_path / "evil2.pt")
    assert code == 2 and not marker.exists() and "evil2.pt: refused" in one_line(err)
    assert "weights_only=False" not in err and "set to `False`" not in err


@pytest.mark.parametrize("folder, expected", [
    ("/etc", "/etc"),
    ("FILE", "not-a-folder.txt"),
    ("MISSING", "nowhere"),
], ids=["etc", "a-file", "missing"])
def test_bad_data_folders_give_one_line_from_eval(capsys, tmp_path, good_checkpoint, folder, expected):
    path = {"FILE": tmp_path / "not-a-folder.txt", "MISSING": tmp_path / "nowhere"}.get(folder, folder)
    if folder == "FILE":
        path.write_text("hello")
    code, err = cli(capsys, "eval", "--checkpoint", good_checkpoint, "--data", path)
    assert code == 2 and expected in one_line(err)


def test_predict_on_an_unreadable_image_names_it_and_writes_nothing(capsys, tmp_path, good_checkpoint):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    code, err = cli(capsys, "predict", "--checkpoint", good_checkpoint, "--runtime", "torch", bad,
                    "--out", tmp_path / "out")
    assert code == 2
    assert "bad.jpg" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.png"))


def test_a_damaged_state_pt_on_resume_is_one_line_without_unsafe_advice(capsys, tmp_path, tiny_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.pt").write_bytes(b"PK\x03\x04garbage" * 10)
    (out / ".last.safetensors.abc123").write_bytes(b"half a file")  # left by a SIGKILL mid-write
    code, err = cli(capsys, "train", "--model", FAST, "--data", tiny_data, "--out", out, "--resume", "--size", "32",
                    "--resize", "32", "--epochs", "1")
    assert code == 2
    line = one_line(err)
    assert "state.pt is damaged" in line and "weights_only=False" not in line
    assert not (out / ".last.safetensors.abc123").exists()


# ----------------------------------------------------------------------------- the app


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(empty))
    monkeypatch.setenv("GARBSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GARBSEG_RUNTIME", "torch")


def _app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=240).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception
    return at


def test_segment_page_takes_the_same_photo_twice_and_never_renders_a_name_as_markup(app_env):
    at = _app("pages/1_Segment.py")
    photo = encoded(Image.new("RGB", (40, 30), (200, 50, 50)), "PNG")
    evil = "![x](http://example.org/track.png)<img src=x>.png"
    uploader = at.file_uploader(key="segment_photos")
    for name, data in [("a.png", photo), ("a.png", photo), (evil, photo), ("empty.png", b"")]:
        uploader.upload(name, data, "image/png")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    headings = [h.value for h in at.subheader]
    assert headings[:2] == ["a.png", "a.png"]  # both shown, keys distinct
    assert headings[2] == r"\!\[x\]\(http://example.org/track.png\)\<img src=x\>.png"
    assert [e.value for e in at.error] == ["empty.png: the file is empty"]


@pytest.mark.parametrize("folder", ["/etc", "FILE", "MISSING"], ids=["etc", "a-file", "missing"])
def test_the_data_folder_setting_reports_a_bad_folder_and_the_app_lives(app_env, tmp_path, folder):
    path = {"FILE": tmp_path / "file.txt", "MISSING": tmp_path / "nowhere"}.get(folder, Path(folder))
    if folder == "FILE":
        path.write_text("x")
    at = _app()
    at.sidebar.text_input[0].set_value(str(path)).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "cannot be used" in error and "Traceback" not in error


# ----------------------------------------------------------------------------- clean-up and limits


def test_cache_clean_removes_least_recently_used_model_folders_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GARBSEG_CACHE", str(tmp_path))
    old, new = tmp_path / "a-net-0123456789abcdef", tmp_path / "b-net-fedcba9876543210"
    for folder, mtime in ((old, 1000), (new, 2000)):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"\0" * 2**20)
        os.utime(folder / "model.onnx", (mtime, mtime))
    (tmp_path / "results.sqlite").write_bytes(b"keep")
    assert cli(capsys, "cache", "--clean", "--max-size", "1.5")[0] == 0
    assert not old.exists() and new.exists() and (tmp_path / "results.sqlite").exists()
    assert cli(capsys, "cache", "--clean")[0] == 0
    assert not new.exists() and (tmp_path / "results.sqlite").exists()


def test_stale_upload_folders_are_swept_and_used_ones_discarded(tmp_path):
    from garbseg.app.uploads import discard, save_upload, sweep_stale

    path = save_upload(b"data", "../../clip.mp4")
    assert path.parent.name.startswith("garbseg-upload-") and path.name == "clip.mp4"
    stale = Path(tempfile.mkdtemp(prefix="garbseg-dataset-"))
    os.utime(stale, (0, 0))
    outside = tmp_path / "garbseg-not-temp"
    outside.mkdir()
    assert stale in sweep_stale(max_age_hours=1)
    assert not stale.exists() and path.exists()  # the fresh one stays
    discard(path, outside / "x")
    assert not path.parent.exists() and outside.exists()  # only the app's temp folders are removed
