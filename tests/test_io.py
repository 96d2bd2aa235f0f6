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
from dicom_helpers import bundled  # noqa: E402

read_image = mio.read_image


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
    assert mio._raster.tiff_size(io.BytesIO(data)) == (480, 640)


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
        (np.arange(12, dtype=np.int32).reshape(3, 4), np.uint16),  # fits: as unsigned
        (np.arange(12, dtype=np.int32).reshape(3, 4) - 6, np.float64),
        (np.arange(12, dtype=np.uint32).reshape(3, 4) + 70000, np.float64),
        (np.arange(12, dtype=np.int8).reshape(3, 4) - 6, np.float32),
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
        (np.zeros((3, 4, 3), np.float32), "uint8"),  # colour must be uint8
        (np.zeros((2, 3, 4, 5)), "shape"),
        (np.zeros((2, 2, 3, 4, 3), np.uint8), "shape"),
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
    # int16 without negative values: exactly as the unsigned frame of the same values
    assert ref.dtype == np.int16 and ref.min() >= 0 and out.dtype == np.uint16
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


# ---------------------------------------------------------------------------------------
# read_input: frames, cine sampling, modality, header, flags, instance key
# ---------------------------------------------------------------------------------------

import hashlib  # noqa: E402
import tracemalloc  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid  # noqa: E402

read_input = mio.read_input


def make_dicom(
    path,
    frames,
    *,
    modality="US",
    photometric="MONOCHROME2",
    compress=False,
    **attrs,
):
    """Write ``frames`` ((N, H, W) or (H, W) uint8/uint16) as a DICOM file with pydicom."""
    frames = np.asarray(frames)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "T-1"
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.set_pixel_data(frames, photometric, int(frames.dtype.itemsize * 8))
    if compress:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_read_input_still_image_and_header():
    path = bundled("CT_small.dcm")
    ref = pydicom.dcmread(path)
    got = read_input(path)
    assert got.kind == "dicom" and got.modality is None  # CT is not an edge modality
    assert got.frame_indices == (0,) and got.n_frames == 1 and len(got.frames) == 1
    np.testing.assert_array_equal(got.frames[0], read_image(path))
    assert got.instance_key == hashlib.sha256(ref.SOPInstanceUID.encode()).hexdigest()
    assert ref.SOPInstanceUID not in got.instance_key
    ds = got.dataset
    assert isinstance(ds, pydicom.Dataset) and not isinstance(ds, pydicom.FileDataset)
    assert "PixelData" not in ds and getattr(ds, "filename", None) is None
    assert ds.StudyInstanceUID == ref.StudyInstanceUID and ds.PatientName == ref.PatientName
    assert ds.file_meta.TransferSyntaxUID == ref.file_meta.TransferSyntaxUID
    assert got.flags == ()


@pytest.mark.parametrize("compress", [False, True])
def test_ultrasound_cine_sampling(tmp_path, compress):
    n, h, w = 10, 48, 64
    frames = np.stack([np.full((h, w), 10 * i, np.uint8) for i in range(n)])
    frames[:, 0, 0] = 255
    path = tmp_path / "cine.dcm"
    make_dicom(path, frames, compress=compress)
    got = read_input(path, cine_frames=3)
    assert got.modality == "ultrasound" and got.n_frames == n
    assert got.frame_indices == (0, 5, 9) == mio.sample_frame_indices(n, 3)
    for idx, frame in zip(got.frame_indices, got.frames, strict=True):
        assert frame.dtype == np.uint8 and frame.shape == (h, w)
        np.testing.assert_array_equal(frame, frames[idx])
    # BurnedInAnnotation absent on ultrasound: flagged (unknown means maybe)
    assert "burned_in_annotation" in got.flags and "cine_sampled" in got.flags
    every = read_input(path, cine_frames=50)
    assert every.frame_indices == tuple(range(n)) and "cine_sampled" not in every.flags
    assert read_input(path, cine_frames=1).frame_indices == (0,)
    # read_image keeps its contract: the first frame
    np.testing.assert_array_equal(read_image(path), frames[0])


def test_burned_in_flag_follows_the_tag(tmp_path):
    img = np.zeros((40, 40), np.uint8)
    make_dicom(tmp_path / "no.dcm", img, BurnedInAnnotation="NO")
    make_dicom(tmp_path / "yes.dcm", img, modality="DX", BurnedInAnnotation="YES")
    make_dicom(tmp_path / "dx.dcm", img, modality="DX")
    assert "burned_in_annotation" not in read_input(tmp_path / "no.dcm").flags
    yes = read_input(tmp_path / "yes.dcm")
    assert yes.modality == "xray" and "burned_in_annotation" in yes.flags
    assert read_input(tmp_path / "dx.dcm").flags == ()


@pytest.mark.parametrize(
    "tag, modality",
    [("CR", "xray"), ("DX", "xray"), ("MG", "xray"), ("US", "ultrasound"), ("MR", None)],
)
def test_modality_map(tmp_path, tag, modality):
    make_dicom(tmp_path / "m.dcm", np.zeros((40, 40), np.uint8), modality=tag)
    assert read_input(tmp_path / "m.dcm").modality == modality
    assert mio.MODALITY_MAP.get(tag) == modality


def test_cine_decodes_only_the_sampled_frames(tmp_path):
    n, h, w = 64, 256, 256  # 4 MiB of pixel data
    frames = np.random.default_rng(0).integers(0, 255, (n, h, w), dtype=np.uint8)
    for compress in (False, True):
        path = tmp_path / f"big{compress}.dcm"
        make_dicom(path, frames, compress=compress)
        tracemalloc.start()
        got = read_input(path, cine_frames=3)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert got.frame_indices == (0, 32, 63)
        np.testing.assert_array_equal(got.frames[1], frames[32])
        assert peak < frames.nbytes / 4, (compress, peak)


def test_monochrome1_is_inverted(tmp_path):
    img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096
    path = tmp_path / "m1.dcm"
    make_dicom(path, img, modality="CR", photometric="MONOCHROME1")
    got = read_input(path)
    assert "monochrome1_inverted" in got.flags
    np.testing.assert_array_equal(got.frames[0], 65535 - img)
    np.testing.assert_array_equal(read_image(path), 65535 - img)  # one photometric path


def test_bundled_ultrasound_cine_in_colour():
    path = bundled("examples_ybr_color.dcm")  # 30 frames of YBR_FULL_422 JPEG ultrasound
    ref = pydicom.dcmread(path).pixel_array
    got = read_input(path)
    assert got.modality == "ultrasound" and got.n_frames == ref.shape[0] == 30
    assert got.frame_indices == (0, 15, 29)
    for idx, frame in zip(got.frame_indices, got.frames, strict=True):
        np.testing.assert_array_equal(frame, cv2.cvtColor(ref[idx], cv2.COLOR_RGB2GRAY))
    assert {"burned_in_annotation", "cine_sampled", "lossy_compressed"} <= set(got.flags)


def test_palette_and_deflated_files():
    pal = read_input(bundled("examples_palette.dcm"))
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(bundled("examples_palette.dcm"))
    rgb = apply_color_lut(ds.pixel_array, ds)
    rgb8 = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb
    np.testing.assert_array_equal(pal.frames[0], cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY))
    dfl = bundled("image_dfl.dcm")  # Deflated Explicit VR Little Endian
    np.testing.assert_array_equal(read_input(dfl).frames[0], pydicom.dcmread(dfl).pixel_array)


def test_read_input_raster_and_npy(tmp_path, camera):
    png = tmp_path / "DOE^JOHN.png"
    cv2.imwrite(str(png), camera)
    got = read_input(png)
    assert got.kind == "png" and got.modality is None and got.dataset is None
    assert got.instance_key == hashlib.sha256(png.read_bytes()).hexdigest()
    np.testing.assert_array_equal(got.frames[0], camera)
    npy = tmp_path / "a.npy"
    np.save(npy, camera.astype(np.float32))
    got = read_input(npy)
    assert got.kind == "npy" and got.frames[0].dtype == np.float32
    for suffix, kind in ((".jpg", "jpeg"), (".tif", "tiff")):
        path = tmp_path / f"x{suffix}"
        cv2.imwrite(str(path), camera)
        assert read_input(path).kind == kind


def test_sha256_is_the_file_content_hash(tmp_path, camera):
    """``InputImage.sha256`` is the hash of the bytes as stored, for every format: rasters,
    ``.npy`` (native and byte-swapped, with trailing bytes) and DICOM with and without a
    SOP Instance UID (then it is also the instance key)."""

    def content(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    paths = []
    for suffix in (".png", ".jpg", ".tif"):
        paths.append(tmp_path / f"r{suffix}")
        cv2.imwrite(str(paths[-1]), camera)
    for dtype in ("<u2", ">u2", ">f8", "bool"):
        paths.append(tmp_path / f"a{dtype.strip('<>')}{len(paths)}.npy")
        np.save(paths[-1], (camera > 100).astype(dtype))
    with open(paths[-1], "ab") as fh:
        fh.write(b"trailing bytes the reader ignores")
    for path in paths:
        got = read_input(path)
        assert got.sha256 == got.instance_key == content(path), path
    uid = make_dicom(tmp_path / "uid.dcm", camera[:64, :64]).SOPInstanceUID
    got = read_input(tmp_path / "uid.dcm")
    assert got.sha256 == content(tmp_path / "uid.dcm")
    assert got.instance_key == hashlib.sha256(uid.encode()).hexdigest()
    ds = make_dicom(tmp_path / "nouid.dcm", camera[:64, :64])
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(tmp_path / "nouid.dcm", enforce_file_format=False)
    got = read_input(tmp_path / "nouid.dcm")
    assert got.sha256 == got.instance_key == content(tmp_path / "nouid.dcm")


def test_label_replaces_the_file_name(tmp_path):
    path = tmp_path / "DOE^JOHN_PHI-12345.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 50)
    with pytest.raises(me.InvalidInputError) as exc:
        read_input(path, label="ledger-42")
    msg = str(exc.value)
    assert msg.startswith("ledger-42: ") and "DOE" not in msg and "PHI" not in msg
    assert exc.value.code in mio.ERROR_CODES
    with pytest.raises(me.InvalidInputError, match="cine_frames"):
        read_input(path, cine_frames=0)


@given(n=st.integers(1, 5000), k=st.integers(1, 40))
def test_sample_frame_indices(n, k):
    idx = mio.sample_frame_indices(n, k)
    assert len(idx) == min(n, k) and list(idx) == sorted(set(idx))
    assert idx[0] == 0 and (idx[-1] == n - 1 or k == 1)
    assert all(0 <= i < n for i in idx)


def test_content_hash_can_be_skipped_for_dicom_with_a_uid(tmp_path) -> None:
    """``content_hash=False`` leaves ``sha256`` out only where it would cost a second
    pass: DICOM with a SOP Instance UID; everything else still carries the hash."""
    from dicom_helpers import us_dataset

    path = tmp_path / "us.dcm"
    us_dataset(np.full((40, 50), 7, np.uint8)).save_as(path, enforce_file_format=True)
    full = read_input(path)
    lean = read_input(path, content_hash=False)
    assert full.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lean.sha256 is None and lean.instance_key == full.instance_key
    assert np.array_equal(lean.frames[0], full.frames[0])
    png = tmp_path / "f.png"
    cv2.imwrite(str(png), np.full((40, 50), 9, np.uint8))
    assert (
        read_input(png, content_hash=False).sha256 == hashlib.sha256(png.read_bytes()).hexdigest()
    )


def test_find_images_skips_a_synth_masks_folder_and_hidden_files(tmp_path):
    """A data set written by ``medimg-edge synth`` (class folders, masks/, manifest.csv):
    its masks are not frames to diagnose; hidden files are skipped; a DICOM without a
    suffix is found by its signature; the order is by relative path."""
    from medimg_edge import synth
    from medimg_edge.io import find_images

    samples = synth.generate("ultrasound", 4, seed=1, size=64, progress=False)
    synth.write(samples, tmp_path / "set", fmt="png")
    found = find_images(tmp_path / "set")
    assert len(found) == 4 and not any("masks" in f.parts for f in found)
    rel = [f.relative_to(tmp_path / "set").as_posix() for f in found]
    assert rel == sorted(rel)
    # a masks/ folder that is not beside a manifest is an ordinary folder
    other = tmp_path / "other" / "masks"
    other.mkdir(parents=True)
    cv2.imwrite(str(other / "a.png"), np.zeros((8, 8), np.uint8))
    (other / ".hidden.png").write_bytes(b"x")
    assert [f.name for f in find_images(tmp_path / "other")] == ["a.png"]


def _dx_dataset(pixels: np.ndarray, **attrs):
    from dicom_helpers import us_dataset

    ds = us_dataset(np.zeros(pixels.shape, np.uint8))
    ds.Modality = "DX"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = pixels.astype("<u2").tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def test_bits_stored_masks_unused_high_bits(tmp_path):
    img = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    path = tmp_path / "bits.dcm"
    _dx_dataset(img | 0xF000).save_as(path, enforce_file_format=True)  # garbage above bit 11
    np.testing.assert_array_equal(read_input(path).frames[0], img)


def test_voi_lut_sequence_then_monochrome1(tmp_path):
    """The VOI LUT Sequence maps the (rescaled) values; MONOCHROME1 is then inverted over
    the LUT's output range, so both renderings give the same frame."""
    from pydicom.dataset import Dataset

    img = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 12 bits in, 8 bits out
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = lut.astype("<u2").tobytes()
    m2 = tmp_path / "voi2.dcm"
    _dx_dataset(img, VOILUTSequence=[item]).save_as(m2, enforce_file_format=True)
    np.testing.assert_array_equal(read_input(m2).frames[0], lut[img])
    m1 = tmp_path / "voi1.dcm"
    inverted = _dx_dataset(
        4095 - img, VOILUTSequence=[item], PhotometricInterpretation="MONOCHROME1"
    )
    inverted.save_as(m1, enforce_file_format=True)
    np.testing.assert_array_equal(read_input(m1).frames[0], 255 - lut[4095 - img])
