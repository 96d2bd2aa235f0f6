"""Image readers ``medimg_edge.io.read_image``: PNG / JPEG / TIFF / .npy / DICOM, colour to
grey, DICOM rescale and multi-frame, size limits checked before decoding, and error
messages that name the file only (no folder, no DICOM tag values)."""

from __future__ import annotations

import io
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import io as mio
from medimg_edge._validation import MAX_PIXELS

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

read_image = mio.read_image


def bundled(name):
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return path


@pytest.fixture(scope="module")
def camera(real_images):
    return real_images["camera"].astype(np.uint8)


def assert_clean_error(exc_info, tmp_path, name):
    msg = str(exc_info.value)
    assert msg.startswith(f"{name}:"), msg
    assert str(tmp_path) not in msg


# ---------------------------------------------------------------------------------------
# Raster formats.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_lossless_grey_roundtrip(tmp_path, camera, suffix):
    for img in (camera, camera.astype(np.uint16) * 257):
        path = tmp_path / f"frame{suffix}"
        assert cv2.imwrite(str(path), img)
        out = read_image(path)
        assert out.dtype == img.dtype and out.shape == img.shape
        np.testing.assert_array_equal(out, img)


def test_float_tiff(tmp_path, camera):
    img = camera.astype(np.float32) / 255.0
    path = tmp_path / "frame.tiff"
    assert cv2.imwrite(str(path), img)
    out = read_image(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)


def test_colour_and_alpha_become_grey(tmp_path, camera):
    bgr = np.stack([camera, camera[::-1], camera[:, ::-1]], axis=-1)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), bgr)
    np.testing.assert_array_equal(read_image(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    bgra = np.dstack([bgr, np.full(camera.shape, 200, np.uint8)])
    cv2.imwrite(str(path), bgra)
    np.testing.assert_array_equal(read_image(path), cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY))


def test_jpeg(tmp_path, camera):
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), camera, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == camera.shape
    assert np.abs(out.astype(int) - camera).mean() < 3.0
    colour = tmp_path / "colour.jpeg"
    cv2.imwrite(str(colour), np.dstack([camera] * 3))
    assert read_image(colour).shape == camera.shape


def test_format_comes_from_the_content(tmp_path, camera):
    path = tmp_path / "no_extension"
    cv2.imwrite(str(tmp_path / "x.png"), camera)
    shutil.copy(tmp_path / "x.png", path)
    np.testing.assert_array_equal(read_image(path), camera)
    wrong = tmp_path / "really_png.jpg"
    shutil.copy(tmp_path / "x.png", wrong)
    np.testing.assert_array_equal(read_image(wrong), camera)


def png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize(
    "name, data",
    [
        ("huge.png", png_header(60000, 60000)),
        ("wide.png", png_header(70000, 10)),
        (
            "huge.jpg",
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + b"\xff\xc0\x00\x11\x08\xff\xf0\xff\xf0\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01",
        ),
        (
            "huge.tif",
            b"II*\x00\x08\x00\x00\x00\x02\x00"
            + struct.pack("<HHII", 256, 4, 1, 40000)
            + struct.pack("<HHII", 257, 4, 1, 40000)
            + b"\x00\x00\x00\x00",
        ),
    ],
)
def test_size_limit_checked_before_decoding(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(me.InvalidInputError, match="beyond the limits") as exc:
        read_image(path)
    assert_clean_error(exc, tmp_path, name)


def test_big_endian_tiff_header():
    data = (
        b"MM\x00*\x00\x00\x00\x08\x00\x02"
        + struct.pack(">HHIHH", 256, 3, 1, 640, 0)
        + struct.pack(">HHII", 257, 4, 1, 480)
    )
    assert mio._tiff_size(io.BytesIO(data)) == (480, 640)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_corrupt_raster_files(tmp_path, camera, suffix):
    good = tmp_path / f"good{suffix}"
    cv2.imwrite(str(good), camera)
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 3])  # truncated
    try:
        out = read_image(bad)  # some decoders return a partial image: still a valid frame
        assert out.shape == camera.shape
    except me.InvalidInputError as err:
        assert str(err).startswith(f"bad{suffix}:")
        assert str(tmp_path) not in str(err)
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(data[:8] + bytes(200))
    with pytest.raises(me.InvalidInputError) as exc:
        read_image(junk)
    assert_clean_error(exc, tmp_path, f"junk{suffix}")


# ---------------------------------------------------------------------------------------
# .npy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arr, dtype",
    [
        (np.arange(12, dtype=np.float64).reshape(3, 4), np.float64),
        (np.arange(12, dtype=np.uint16).reshape(3, 4), np.uint16),
        (np.arange(12, dtype=">f4").reshape(3, 4), np.float32),
        (np.arange(12, dtype=np.int16).reshape(3, 4) - 6, np.float32),
        (np.arange(12, dtype=np.int32).reshape(3, 4), np.float64),
        (np.arange(12, dtype=np.uint8).reshape(3, 4, 1), np.uint8),
        (np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)), np.float32),
        (np.ones((3, 4), bool), np.uint8),
    ],
)
def test_npy(tmp_path, arr, dtype):
    path = tmp_path / "a.npy"
    np.save(path, arr)
    out = read_image(path)
    assert out.dtype == dtype and out.shape == (3, 4) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr.reshape(3, 4).astype(dtype))


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.array([{"a": 1}], dtype=object), "dtype"),
        (np.zeros((3, 4, 3), np.uint8), "shape"),
        (np.zeros(5), "shape"),
        (np.zeros((3, 4), np.complex64), "dtype"),
    ],
)
def test_npy_rejected(tmp_path, arr, match):
    path = tmp_path / "bad.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(me.InvalidInputError, match=match) as exc:
        read_image(path)
    assert_clean_error(exc, tmp_path, "bad.npy")


def test_npy_header_checked_before_allocation(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (60000, 60000)}
        )
    with pytest.raises(me.InvalidInputError, match="beyond the limits"):
        read_image(path)
    assert 60000 * 60000 > MAX_PIXELS


def test_npy_truncated_data(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros((100, 100)))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(me.InvalidInputError) as exc:
        read_image(path)
    assert_clean_error(exc, tmp_path, "short.npy")


# ---------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------


def test_ct_rescale_to_hounsfield():
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    out = read_image(path)
    assert out.dtype == np.float64 and out.shape == (128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(out, expected)
    assert out.min() < 0  # Hounsfield units


def test_mr_without_rescale_keeps_values(tmp_path):
    path = bundled("MR_small.dcm")
    out = read_image(path)
    ref = pydicom.dcmread(path).pixel_array
    assert out.dtype == np.float32  # int16 converted exactly
    np.testing.assert_array_equal(out, ref)
    # DICM signature without the .dcm suffix
    copy = tmp_path / "IMG0001"
    shutil.copy(path, copy)
    np.testing.assert_array_equal(read_image(copy), ref)
    # RLE-compressed copy of the same image (pydicom decodes RLE natively)
    np.testing.assert_array_equal(read_image(bundled("MR_small_RLE.dcm")), ref)


def test_multiframe_rgb_gives_first_frame_in_grey():
    path = bundled("SC_rgb_rle_2frame.dcm")
    frames = pydicom.dcmread(path).pixel_array
    out = read_image(path)
    assert out.shape == frames.shape[1:3]
    np.testing.assert_array_equal(out, cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY))


def test_multiframe_grey_gives_first_frame():
    path = bundled("rtdose.dcm")
    ds = pydicom.dcmread(path)
    out = read_image(path)
    first = ds.pixel_array[0]
    assert out.shape == first.shape
    np.testing.assert_array_equal(out, first.astype(out.dtype))


def test_corrupt_dicom_never_leaks_tags(tmp_path):
    src = bundled("CT_small.dcm")
    ds = pydicom.dcmread(src)
    secrets = [str(ds.PatientName), str(ds.get("PatientID", "")), str(ds.StudyDate)]
    secrets = [s for s in secrets if s]
    data = open(src, "rb").read()
    cases = {
        "truncated.dcm": data[: len(data) - 20000],  # pixel data cut short
        "header_only.dcm": data[:1200],
        "garbage.dcm": b"\x00" * 128 + b"DICM" + bytes(range(256)) * 3,
        "random.dcm": np.random.default_rng(0).bytes(3000),
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(me.InvalidInputError) as exc:
            read_image(path)
        assert_clean_error(exc, tmp_path, name)
        for secret in secrets:
            assert secret not in str(exc.value), (name, secret)


# ---------------------------------------------------------------------------------------
# Other errors.
# ---------------------------------------------------------------------------------------


def test_missing_folder_and_unknown_files(tmp_path):
    with pytest.raises(me.InvalidInputError, match="no such file") as exc:
        read_image(tmp_path / "sub" / "missing.png")
    assert_clean_error(exc, tmp_path, "missing.png")
    with pytest.raises(me.InvalidInputError, match="no such file"):
        read_image(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(me.InvalidInputError, match="unknown image format") as exc:
        read_image(text)
    assert_clean_error(exc, tmp_path, "notes.txt")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(me.InvalidInputError):
        read_image(empty)


def test_result_feeds_every_function(tmp_path, camera):
    for name in ("CT_small.dcm", "MR_small.dcm"):
        img = read_image(bundled(name))
        assert me.features.extract(img)["firstorder_mean"] == pytest.approx(float(img.mean()))
        assert isinstance(me.quality.assess(img).ok, bool)
