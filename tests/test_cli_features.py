"""``medimg-edge features PATH... --csv OUT.csv``: end to end on a folder of PNG, NPY,
DICOM and corrupt files; CSV layout, per-file errors, masks, exit codes."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge.cli import main
from medimg_edge.io import read_image

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402


@pytest.fixture()
def folder(tmp_path, real_images):
    """A folder tree: PNG, NPY, a DICOM copy (no extension change), a corrupt PNG, a
    text file that is not picked up, and a nested folder."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    cam = real_images["camera"].astype(np.uint8)[::2, ::2].copy()
    cv2.imwrite(str(root / "camera.png"), cam)
    np.save(root / "sub" / "mr.npy", real_images["mr"])
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "sub" / "ct.dcm")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (root / "notes.txt").write_text("ignored: unknown extension")
    return root


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_folder_end_to_end(folder, tmp_path, capsys):
    out = tmp_path / "features.csv"
    code = main(["features", str(folder), "--csv", str(out), "--levels", "16"])
    assert code == 1  # the corrupt PNG failed
    header, rows = read_csv(out)
    names = me.features.feature_names(levels=16)
    assert header == ["path", "error", *names]
    paths = [r[0] for r in rows]
    # recursive, sorted by path relative to the folder, known extensions only
    assert paths == [
        str(folder / "broken.png"),
        str(folder / "camera.png"),
        str(folder / "sub" / "ct.dcm"),
        str(folder / "sub" / "mr.npy"),
    ]
    by_name = {r[0].rsplit("/", 1)[-1]: r for r in rows}
    broken = by_name["broken.png"]
    assert broken[1].startswith("read_error: broken.png:")
    assert broken[2:] == [""] * len(names)
    for name in ("camera.png", "ct.dcm", "mr.npy"):
        row = by_name[name]
        assert row[1] == ""
        values = [float(v) for v in row[2:]]
        ref = me.features.extract(
            read_image(folder / row[0].split(str(folder) + "/")[1]), levels=16
        )
        assert values == list(ref.values())  # repr round-trips exactly
        assert all(math.isfinite(v) for v in values)
    err = capsys.readouterr().err
    assert "4 file(s), 1 failed" in err
    assert "features" in err  # the tqdm progress bar is on stderr


def test_all_good_files_exit_0_and_files_as_arguments(folder, tmp_path):
    out = tmp_path / "ok.csv"
    args = [str(folder / "camera.png"), str(folder / "sub"), str(folder / "camera.png")]
    assert main(["features", *args, "--csv", str(out), "--no-progress"]) == 0
    _, rows = read_csv(out)
    assert [r[0] for r in rows] == [
        str(folder / "camera.png"),  # duplicates are analysed once
        str(folder / "sub" / "ct.dcm"),
        str(folder / "sub" / "mr.npy"),
    ]
    assert all(r[1] == "" for r in rows)


def test_a_named_file_is_read_whatever_its_extension(folder, tmp_path):
    odd = tmp_path / "scan.bin"
    shutil.copy(get_testdata_file("MR_small.dcm"), odd)
    out = tmp_path / "odd.csv"
    assert main(["features", str(odd), "--csv", str(out), "--no-progress"]) == 0
    _, rows = read_csv(out)
    assert rows[0][1] == "" and float(rows[0][2]) == pytest.approx(float(read_image(odd).mean()))


def test_mask_dir(folder, tmp_path, real_images):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    cam_mask = np.zeros((256, 256), np.uint8)
    cam_mask[64:192, 32:160] = 255
    cv2.imwrite(str(masks / "camera.png"), cam_mask)
    mr_mask = real_images["mr"] > np.median(real_images["mr"])
    np.save(masks / "sub" / "mr.npy", mr_mask)
    np.save(masks / "sub" / "ct.npy", np.zeros((5, 5), bool))  # wrong shape
    out = tmp_path / "masked.csv"
    code = main(
        ["features", str(folder), "--csv", str(out), "--mask-dir", str(masks), "--no-progress"]
    )
    assert code == 1
    _, rows = read_csv(out)
    by_name = {r[0].rsplit("/", 1)[-1]: r for r in rows}
    cam = read_image(folder / "camera.png")
    ref = me.features.extract(cam, cam_mask != 0)
    assert [float(v) for v in by_name["camera.png"][2:]] == list(ref.values())
    ref = me.features.extract(read_image(folder / "sub" / "mr.npy"), mr_mask)
    assert [float(v) for v in by_name["mr.npy"][2:]] == list(ref.values())
    assert by_name["ct.dcm"][1].startswith("mask_error:")
    assert by_name["broken.png"][1].startswith("read_error:")


def test_missing_mask_is_a_row_error(folder, tmp_path):
    masks = tmp_path / "empty_masks"
    masks.mkdir()
    out = tmp_path / "m.csv"
    assert main(["features", str(folder / "camera.png"), "--csv", str(out),
                 "--mask-dir", str(masks), "--no-progress"]) == 1  # fmt: skip
    _, rows = read_csv(out)
    assert rows[0][1] == "mask_error: no mask for camera.png in the mask folder"


@pytest.mark.parametrize(
    "argv",
    [
        ["features", "--csv", "x.csv"],  # no PATH
        ["features", "PATH"],  # no --csv
        ["features", "PATH", "--csv", "x.csv", "--levels", "1"],
        ["features", "PATH", "--csv", "x.csv", "--levels", "300"],
        ["features", "PATH", "--csv", "x.csv", "--levels", "abc"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_runtime_usage_errors_exit_2(folder, tmp_path, capsys):
    assert main(["features", str(tmp_path / "nope"), "--csv", str(tmp_path / "a.csv")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["features", str(empty), "--csv", str(tmp_path / "a.csv")]) == 2
    assert "no image files found" in capsys.readouterr().err
    bad_out = tmp_path / "no" / "such" / "dir" / "a.csv"
    assert main(["features", str(folder), "--csv", str(bad_out)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["features", str(folder), "--csv", str(tmp_path / "a.csv"),
                 "--mask-dir", str(tmp_path / "nope")]) == 2  # fmt: skip


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["features", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit status" in out and "1 some files failed" in out
    for ext in (".png", ".npy", ".dcm"):
        assert ext in out


def test_console_entry_point_process(folder, tmp_path):
    out = tmp_path / "p.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "medimg_edge", "features", str(folder), "--csv", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "4 file(s), 1 failed" in proc.stderr
    assert proc.stdout == ""
    _, rows = read_csv(out)
    assert len(rows) == 4
