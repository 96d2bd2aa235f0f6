"""Malformed-input corpus for the readers (``medimg_edge.io.read_input`` / ``read_image``).

Built at test time from real files (pydicom's bundled test files, scikit-image samples):
DICOM truncated at many offsets, bit-flipped, zero bytes, deeply nested sequences, huge
declared lengths, executable preambles, decompression-bomb PNGs, pickled ``.npy``,
unreadable paths (FIFO, directory, no permission), absurd declared sizes.  Every case must
end in an ``InvalidInputError`` with a known ``code`` (or, for a harmless bit flip, a valid
frame), without a large allocation (checked with ``tracemalloc``) and with a message that
carries the caller's label only: no folder, no file name, no DICOM tag value.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medimg_edge as me
from medimg_edge import io as mio

pydicom = pytest.importorskip("pydicom")
from dicom_helpers import bundled, canary_ct_dataset  # noqa: E402

LABEL = "ledger-0001"
#: Peak Python allocation allowed while rejecting a hostile file.
SMALL = 8 << 20
CANARIES = ("DOE", "JOHN", "PHI-12345", "CompressedSamples", "CT1")


@pytest.fixture(scope="module")
def ct_bytes():
    return open(bundled("CT_small.dcm"), "rb").read()


@pytest.fixture(scope="module")
def canary_ct(tmp_path_factory):
    """CT_small.dcm with the PHI canary in its header, as bytes."""
    ds = canary_ct_dataset()
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def reject(path, *codes, max_peak=SMALL):
    """Read ``path`` expecting an InvalidInputError; return it after the common checks."""
    tracemalloc.start()
    try:
        with pytest.raises(me.InvalidInputError) as exc:
            mio.read_input(path, label=LABEL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = exc.value
    assert err.code in mio.ERROR_CODES, err.code
    if codes:
        assert err.code in codes, (err.code, str(err))
    check_message(str(err), path)
    assert peak < max_peak, (err.code, peak)
    return err


def check_message(msg, path):
    assert msg.startswith(f"{LABEL}: "), msg
    assert str(os.path.dirname(os.fspath(path))) not in msg
    assert os.path.basename(os.fspath(path)) not in msg
    for canary in CANARIES:
        assert canary not in msg, msg


def read_or_reject(path):
    """A mangled file may still decode (a flip in a pixel); anything else is an error."""
    tracemalloc.start()
    try:
        got = mio.read_input(path, label=LABEL)
    except me.InvalidInputError as err:
        assert err.code in mio.ERROR_CODES
        check_message(str(err), path)
        got = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 32 << 20, peak
    if got is not None:
        for frame in got.frames:
            assert frame.ndim == 2 and frame.dtype in (np.uint8, np.uint16, np.float32, np.float64)
    return got


# ---- DICOM ----------------------------------------------------------------------------


def test_zero_byte_and_tiny_files(tmp_path):
    empty = tmp_path / "DOE^JOHN.dcm"
    empty.write_bytes(b"")
    reject(empty, "empty")
    short = tmp_path / "short.dcm"
    short.write_bytes(b"\x00" * 100)
    reject(short, "bad_dicom", "truncated")


def test_truncated_at_many_offsets(tmp_path, canary_ct):
    pos = canary_ct.rindex(b"\xe0\x7f\x10\x00OW")
    (length,) = struct.unpack("<I", canary_ct[pos + 8 : pos + 12])
    end = pos + 12 + length  # CT_small.dcm has 138 bytes of other elements after the pixels
    offsets = sorted({*range(1, 1400, 7), *range(1400, end, 613), end - 1})
    path = tmp_path / "DOE_trunc.dcm"
    codes = set()
    for cut in offsets:
        path.write_bytes(canary_ct[:cut])
        codes.add(reject(path).code)
    # (cut inside the preamble, CT_small's TIFF-like preamble sniffs as a broken TIFF)
    assert codes <= {"truncated", "bad_dicom", "bad_header", "unsupported_format", "empty"}
    assert "truncated" in codes


@settings(max_examples=60)
@given(data=st.data())
def test_bit_flips(tmp_path_factory, canary_ct, data):
    blob = bytearray(canary_ct)
    # Flips in the header (the first ~1.4 kB) are the interesting ones.
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        pos = data.draw(st.integers(0, min(len(blob), 1500) - 1))
        blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path_factory.mktemp("flip") / "DOE_flip.dcm"
    path.write_bytes(bytes(blob))
    read_or_reject(path)


def test_bit_flips_every_header_byte(tmp_path, canary_ct):
    """Deterministic sweep: the high bit of header bytes, one at a time (every 3rd byte of
    the file meta group, every 17th after it)."""
    path = tmp_path / "sweep.dcm"
    ok = 0
    for pos in [*range(128, 400, 3), *range(400, 1400, 17)]:
        blob = bytearray(canary_ct)
        blob[pos] ^= 0x80
        path.write_bytes(bytes(blob))
        ok += read_or_reject(path) is not None
    assert ok > 0  # flips in values (not lengths/tags) still read


def _element(tag, vr, value):
    group, elem = tag
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return (
            struct.pack("<HH", group, elem)
            + vr
            + b"\x00\x00"
            + struct.pack("<I", len(value))
            + value
        )
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def _file_meta():
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    pydicom.filewriter.write_file_meta_info(buf, meta)
    return b"\x00" * 128 + b"DICM" + buf.getvalue()


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_sequence_nesting(tmp_path, depth):
    sq_open = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    item_open = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sq_close = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    body = (sq_open + item_open) * depth + (item_close + sq_close) * depth
    path = tmp_path / "nested.dcm"
    path.write_bytes(_file_meta() + body)
    reject(path, "bad_dicom")
    # the same in a worker thread (smaller C stack than the main thread): still an error
    box = {}

    def run():
        try:
            mio.read_input(path, label=LABEL)
        except me.InvalidInputError as err:
            box["code"] = err.code

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert box.get("code") == "bad_dicom"


def test_huge_declared_lengths(tmp_path, canary_ct):
    # 1. the pixel data element claims 4 GB
    ds = pydicom.dcmread(io.BytesIO(canary_ct))
    pos = canary_ct.rindex(b"\xe0\x7f\x10\x00OW")
    blob = bytearray(canary_ct)
    blob[pos + 8 : pos + 12] = struct.pack("<I", 0xFFFFFFF0)
    path = tmp_path / "huge_pixels.dcm"
    path.write_bytes(bytes(blob))
    reject(path, "truncated")
    # 2. a header element (before the pixels) claims 4 GB
    ds.add_new((0x0009, 0x0010), "LO", "ACME")
    ds.add_new((0x0009, 0x1001), "OB", b"\x00" * (2 << 20))
    buf = io.BytesIO()
    ds.save_as(buf)
    data = bytearray(buf.getvalue())
    pos = data.index(b"\x09\x00\x01\x10OB")
    data[pos + 8 : pos + 12] = struct.pack("<I", 0xFFFFFFF0)
    path = tmp_path / "huge_header.dcm"
    path.write_bytes(bytes(data))
    reject(path, "truncated")
    # 3. a large but genuine header value is dropped from the header, the image still reads
    path = tmp_path / "big_private.dcm"
    path.write_bytes(buf.getvalue())
    got = mio.read_input(path)
    assert (0x0009, 0x1001) not in got.dataset and got.frames[0].shape == (128, 128)
    # 4. an element in the middle of the header claims 4 GB, in a file without a preamble
    raw = _element((0x0008, 0x0060), b"CS", b"US") + (
        struct.pack("<HH", 0x0010, 0x0010) + b"UN\x00\x00" + struct.pack("<I", 0xFFFFFFF0)
    )
    path = tmp_path / "huge_un.dcm"
    path.write_bytes(_file_meta() + raw + b"DOE^JOHN")
    reject(path, "truncated", "bad_dicom")


@pytest.mark.parametrize(
    "magic",
    [b"MZ\x90\x00\x03\x00", b"\x7fELF\x02\x01\x01", b"\xcf\xfa\xed\xfe", b"#!/bin/sh\n"],
)
def test_executable_preamble(tmp_path, ct_bytes, magic):
    blob = magic + ct_bytes[len(magic) :]
    path = tmp_path / "DOE_polyglot.dcm"
    path.write_bytes(blob)
    err = reject(path, "executable_preamble")
    assert "executable" in str(err)
    # a TIFF header in the preamble is legal (dual-personality files) and reads
    tiff = tmp_path / "tiff_preamble.dcm"
    tiff.write_bytes(b"II*\x00" + ct_bytes[4:])
    assert mio.read_input(tiff).frames[0].shape == (128, 128)


def test_absurd_declared_sizes(tmp_path):
    def with_attrs(name, **attrs):
        ds = pydicom.dcmread(bundled("CT_small.dcm"))
        for key, value in attrs.items():
            setattr(ds, key, value)
        path = tmp_path / name
        ds.save_as(path)
        return path

    reject(with_attrs("rows.dcm", Rows=65535, Columns=65535), "too_large", "truncated")
    reject(with_attrs("frames.dcm", NumberOfFrames=1_000_000_000), "too_large")
    reject(with_attrs("frames2.dcm", NumberOfFrames=5000), "truncated")
    reject(with_attrs("bits.dcm", BitsAllocated=48), "bad_dicom")
    reject(with_attrs("spp.dcm", SamplesPerPixel=7), "bad_dicom")
    reject(with_attrs("zero.dcm", Rows=0), "bad_dicom")
    reject(with_attrs("slope.dcm", RescaleSlope="inf"), "bad_dicom")


def test_not_an_image_dicom_and_unknown_format(tmp_path):
    reject(bundled("rtplan.dcm"), "bad_dicom")
    path = tmp_path / "notes.bin"
    path.write_bytes(b"DOE^JOHN PHI-12345 " * 20)
    reject(path, "unsupported_format")


# ---- raster bombs ---------------------------------------------------------------------


def _png(width, height, idat, depth=8, colour=0):
    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_png_header_only(tmp_path):
    # 16000 x 16000 RGBA 16 bit is within the pixel limit (2^28) but 2 GB decoded
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(16000, 16000, zlib.compress(b"\x00" * 1000), depth=16, colour=6))
    assert 16000 * 16000 <= me._validation.MAX_PIXELS
    reject(path, "decompression_bomb")


def test_decompression_bomb_png_real_stream(tmp_path):
    """A genuine deflate stream of zeros: 12000 x 12000 grey (144 MB) from ~140 kB."""
    side = 12000
    row = b"\x00" * (side + 1)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 500) for _ in range(side // 500)]
    parts.append(comp.flush())
    path = tmp_path / "bomb_real.png"
    path.write_bytes(_png(side, side, b"".join(parts)))
    assert path.stat().st_size < 1 << 20
    reject(path, "decompression_bomb")


def test_large_but_honest_png_reads(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (600, 800), dtype=np.uint8)
    path = tmp_path / "noise.png"
    cv2.imwrite(str(path), img)
    np.testing.assert_array_equal(mio.read_input(path).frames[0], img)


def test_jpeg_and_tiff_bombs(tmp_path):
    sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 16000, 16000) + b"\x03\x01\x22\x00"
    sof += b"\x02\x11\x01\x03\x11\x01"
    path = tmp_path / "bomb.jpg"
    path.write_bytes(b"\xff\xd8" + sof + b"\xff\xd9")
    reject(path, "decompression_bomb")
    tiff = (
        b"II*\x00\x08\x00\x00\x00\x03\x00"
        + struct.pack("<HHII", 256, 4, 1, 16000)
        + struct.pack("<HHII", 257, 4, 1, 16000)
        + struct.pack("<HHII", 277, 3, 1, 4)
        + b"\x00\x00\x00\x00"
    )
    path = tmp_path / "bomb.tif"
    path.write_bytes(tiff)
    reject(path, "decompression_bomb")


# ---- .npy -----------------------------------------------------------------------------


def test_pickled_npy(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"DOE": "JOHN"}, None], dtype=object), allow_pickle=True)
    reject(path, "pickled_npy")
    structured = tmp_path / "rec.npy"
    np.save(structured, np.zeros((4, 4), dtype=[("a", "<f4"), ("b", "O")]), allow_pickle=True)
    reject(structured, "pickled_npy")


def test_npy_absurd_and_lying_headers(tmp_path):
    def header(shape, descr="<f8"):
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        return buf.getvalue()

    path = tmp_path / "huge.npy"
    path.write_bytes(header((60000, 60000)))
    reject(path, "too_large")
    path.write_bytes(header((10000, 10000)) + b"\x00" * 4096)  # 800 MB declared, 4 kB given
    reject(path, "truncated")
    path.write_bytes(b"\x93NUMPY\x01\x00\xff\xff{'descr': 1}")
    reject(path, "bad_header")


# ---- unreadable paths -----------------------------------------------------------------


def test_fifo_is_rejected_without_blocking(tmp_path):
    fifo = tmp_path / "DOE^JOHN.dcm"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    reject(fifo, "unreadable")  # would block forever if it were opened for a blocking read


def test_directory_and_missing(tmp_path):
    folder = tmp_path / "DOE_dir.dcm"
    folder.mkdir()
    reject(folder, "unreadable")
    reject(tmp_path / "missing.png", "no_such_file")


def test_no_permission(tmp_path, ct_bytes):
    path = tmp_path / "locked.dcm"
    path.write_bytes(ct_bytes)
    path.chmod(0)
    try:
        if os.geteuid() == 0:
            # root reads anyway: the file is an ordinary, valid input then
            assert mio.read_input(path).frames[0].shape == (128, 128)
        else:
            reject(path, "unreadable")
    finally:
        path.chmod(0o600)
    # /proc/self/mem cannot be read from offset 0 even by root: an OSError on read
    if os.path.exists("/proc/self/mem"):
        with pytest.raises(me.InvalidInputError) as exc:
            mio.read_input("/proc/self/mem", label=LABEL)
        assert exc.value.code in ("unreadable", "empty")


def test_read_image_shares_the_hardening(tmp_path, ct_bytes):
    path = tmp_path / "mz.dcm"
    path.write_bytes(b"MZ" + ct_bytes[2:])
    with pytest.raises(me.InvalidInputError) as exc:
        mio.read_image(path)
    assert exc.value.code == "executable_preamble" and str(exc.value).startswith("mz.dcm: ")


def _encapsulated(path, codestream, ts, rows=16, cols=16, frames=1):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([codestream] * frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def test_compressed_frame_bigger_than_declared(tmp_path):
    """A 16x16 DICOM whose JPEG / JPEG 2000 codestream claims 16000x16000: refused from the
    codestream header, before the decoder allocates 256 MB."""
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16), 77, np.uint8))
    assert ok
    jpg = bytearray(jpg.tobytes())
    _encapsulated(tmp_path / "fine.dcm", bytes(jpg), pydicom.uid.JPEGBaseline8Bit, frames=4)
    got = mio.read_input(tmp_path / "fine.dcm")
    assert got.frame_indices == (0, 2, 3)
    assert abs(float(got.frames[0].mean()) - 77) < 2
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", 16000, 16000)
    _encapsulated(tmp_path / "jbomb.dcm", bytes(jpg), pydicom.uid.JPEGBaseline8Bit, frames=3)
    reject(tmp_path / "jbomb.dcm", "decompression_bomb")
    # JPEG 2000: SOC + SIZ with 16000 x 16000
    siz = b"\xff\x4f\xff\x51" + struct.pack(
        ">HHIIIIIIIIH", 41, 0, 16000, 16000, 0, 0, 16000, 16000, 0, 0, 1
    )
    siz += b"\x07\x01\x01" + b"\xff\xd9"
    _encapsulated(tmp_path / "j2kbomb.dcm", siz, pydicom.uid.JPEG2000Lossless)
    reject(tmp_path / "j2kbomb.dcm", "decompression_bomb")
    # a fragment that claims 4 GB
    _encapsulated(tmp_path / "frag.dcm", bytes(jpg), pydicom.uid.JPEGBaseline8Bit)
    data = bytearray((tmp_path / "frag.dcm").read_bytes())
    first_item = data.index(b"\xfe\xff\x00\xe0", data.index(b"\xfe\xff\x00\xe0") + 8)
    data[first_item + 4 : first_item + 8] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "frag.dcm").write_bytes(bytes(data))
    reject(tmp_path / "frag.dcm")


@pytest.mark.parametrize(
    "name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_2frame.dcm"]
)
def test_bit_flips_in_compressed_files(tmp_path_factory, name):
    """Flips anywhere, codestreams included: the decoders (OpenJPEG, CharLS via
    pylibjpeg, pydicom's RLE) get corrupt data and must end in a frame or a typed error."""
    data = open(bundled(name), "rb").read()
    folder = tmp_path_factory.mktemp("cflip")

    @settings(max_examples=25)
    @given(flips=st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), max_size=12))
    def run(flips):
        blob = bytearray(data)
        for pos, bit in flips:
            blob[pos] ^= 1 << bit
        path = folder / "DOE_c.dcm"
        path.write_bytes(bytes(blob))
        read_or_reject(path)

    run()
