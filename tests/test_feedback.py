"""Reviewer feedback (issue 18 item 2): labels recorded in the daemon's ledger, corrected,
imported from CSV, exported as a training folder, through a real daemon run.

One daemon run (module fixture) diagnoses a few phantoms (PNG, a DICOM with patient data in
its header, a multi-frame cine); every test works on its own copy of that outbox.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pytest.importorskip("pydicom")

from daemon_helpers import FAST, DaemonProc, dicom_bytes, make_dirs, png_bytes, results, wait_for
from dicom_helpers import dx_dataset
from medimg_edge import InvalidInputError
from medimg_edge.daemon import _feedback as feedback

US_LABELS = ("normal", "cyst", "hypoechoic", "hyperechoic")
XRAY_LABELS = ("normal", "nodule")
PATIENT = "SECRETSURNAME^GIVENNAME"
PATIENT_ID = "PID98765432"
#: What must never appear in the export, its file names or the feedback tables.
PHI = (b"SECRETSURNAME", b"GIVENNAME", PATIENT_ID.encode())


def _png_with_text(index: int) -> bytes:
    """A phantom PNG with a tEXt chunk naming the patient (metadata an export must drop)."""
    data = png_bytes(index, 96)
    body = b"Comment\0Patient SECRETSURNAME GIVENNAME " + PATIENT_ID.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


def _dx_rescaled() -> bytes:
    """A 16-bit DX with RescaleSlope 0.5 / Intercept -100 (the frame read is float64,
    half-integers) and the patient's name and id in its header."""
    import pydicom

    rng = np.random.default_rng(11)
    ds = dx_dataset(
        rng.integers(200, 3000, (128, 128), dtype=np.uint16),
        PatientName=PATIENT,
        PatientID=PATIENT_ID,
        RescaleSlope="0.5",
        RescaleIntercept="-100",
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _run_daemon(inbox: Path, outbox: Path, *extra: str) -> None:
    d = DaemonProc(inbox, outbox, *FAST, "--exit-when-idle", *extra).start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=300) == 0, d.log_text()


@pytest.fixture(scope="module")
def daemon_outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An outbox after one real daemon run over 4 PNGs, a DICOM with a patient's name and
    id in its header and a 5-frame cine DICOM."""
    inbox, outbox = make_dirs(tmp_path_factory.mktemp("daemon"))
    for i in range(3):
        (inbox / f"SECRETSURNAME_{i}.png").write_bytes(png_bytes(i, 96))
    (inbox / "SECRETSURNAME_text.png").write_bytes(_png_with_text(7))
    us = dicom_bytes(name=PATIENT, patient_id=PATIENT_ID, seed=1)
    (inbox / f"{PATIENT}.dcm").write_bytes(_burned_in(us))
    (inbox / "cine.dcm").write_bytes(
        dicom_bytes(name=PATIENT, patient_id=PATIENT_ID, frames=5, seed=3)
    )
    (inbox / "dx.dcm").write_bytes(_dx_rescaled())
    _run_daemon(inbox, outbox)
    assert len(results(outbox)) == 7
    return outbox


def _burned_in(data: bytes) -> bytes:
    """The DICOM ``data`` with BurnedInAnnotation YES."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture()
def outbox(daemon_outbox: Path, tmp_path: Path) -> Path:
    """This test's own copy of the daemon's outbox (ledger included)."""
    dst = tmp_path / "outbox"
    shutil.copytree(daemon_outbox, dst)
    return dst


def _ids(outbox: Path) -> dict[str, dict[str, Any]]:
    """Result id -> record."""
    return {r["id"]: r for r in results(outbox)}


def _by_kind(outbox: Path, kind: str) -> list[str]:
    return sorted(i for i, r in _ids(outbox).items() if r["input"]["kind"] == kind)


def test_record_correct_and_history(outbox: Path) -> None:
    rid = _by_kind(outbox, "png")[0]
    assert feedback.labels(outbox) == {}
    feedback.record(outbox, rid, "cyst")
    assert feedback.labels(outbox) == {rid: "cyst"}
    feedback.record(outbox, rid, "normal")  # a correction
    feedback.record(outbox, rid, "normal")  # the same label again: nothing changes
    assert feedback.labels(outbox) == {rid: "normal"}
    hist = feedback.history(outbox, rid)
    assert [(h[2], h[3]) for h in hist] == [("cyst", None), ("normal", "cyst")]
    (row,) = feedback.rows(outbox)
    model = _ids(outbox)[rid]["model"]
    assert (row.model, row.model_sha256, row.source) == (
        f"{model['name']}@{model['version']}",
        model["sha256"],
        "cli",
    )
    # the state folder works as the first argument too
    assert feedback.labels(outbox / ".medimg-edge") == {rid: "normal"}


def test_labels_come_from_the_model_that_produced_the_result(outbox: Path) -> None:
    """Every result, with scores or without (quality-rejected: the labels come from the
    sidecar), accepts exactly its model's labels: the X-ray model's for the DX input."""
    records = _ids(outbox)
    assert any(not r["scores"] for r in records.values())  # the sidecar path is exercised
    assert any(r["scores"] for r in records.values())
    for rid, r in records.items():
        own, other = (
            (XRAY_LABELS, "cyst")
            if r["model"]["name"] == "xray_chest_nodule"
            else (US_LABELS, "nodule")
        )
        for lab in own:
            feedback.record(outbox, rid, lab)
        with pytest.raises(InvalidInputError) as err:
            feedback.record(outbox, rid, other)
        assert err.value.code == "invalid_label"
        assert ", ".join(own) in str(err.value)
    assert {r["model"]["name"] for r in records.values()} == {"us_lesion", "xray_chest_nodule"}
    assert set(feedback.labels(outbox).values()) == {"hyperechoic", "nodule"}


def test_model_outside_the_search_path(outbox: Path, tmp_path: Path) -> None:
    """A result without scores from a model the search path does not hold: refused with
    a message saying what to pass; accepted given its sidecar (matched by sha256)."""
    import medimg_edge

    shipped = Path(
        next(m["sidecar"] for m in medimg_edge.list_models() if m["name"] == "us_lesion")
    )
    side = json.loads(shipped.read_text())
    side["name"] = "site_us"
    (tmp_path / "site_us.json").write_text(json.dumps(side))
    for f in shipped.parent.glob("us_lesion.*"):
        if f.suffix != ".json":
            shutil.copy(f, tmp_path / f.name)
    rid = next(
        i for i, r in _ids(outbox).items() if not r["scores"] and r["model"]["name"] == "us_lesion"
    )
    doc = json.loads((outbox / f"{rid}.json").read_text())
    doc["model"]["name"] = "site_us"
    (outbox / f"{rid}.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInputError, match="--model SIDECAR") as err:
        feedback.record(outbox, rid, "cyst")
    assert err.value.code == "unknown_model"
    feedback.record(outbox, rid, "cyst", models=[tmp_path / "site_us.json"])
    assert feedback.labels(outbox) == {rid: "cyst"}
    assert feedback.rows(outbox)[0].model == f"site_us@{doc['model']['version']}"


@pytest.mark.parametrize(
    ("rid", "code"),
    [
        ("../../etc/passwd", "bad_result_id"),
        (PATIENT, "bad_result_id"),
        ("", "bad_result_id"),
        ("00000000-00000001", "unknown_result"),  # well-formed, no such result
    ],
)
def test_bad_result_ids(outbox: Path, rid: str, code: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        feedback.record(outbox, rid, "normal")
    assert err.value.code == code
    assert PATIENT not in str(err.value)
    assert feedback.labels(outbox) == {}


def test_id_of_the_ledger_that_is_not_done_is_refused(outbox: Path) -> None:
    """A record whose ledger row is not done (processing again) is not labelled."""
    rid = _by_kind(outbox, "png")[0]
    db = sqlite3.connect(outbox / ".medimg-edge" / "ledger.sqlite")
    db.execute("UPDATE files SET state = 'seen' WHERE rowid = ?", (int(rid.split("-")[1]),))
    db.commit()
    db.close()
    with pytest.raises(InvalidInputError, match="not a finished result") as err:
        feedback.record(outbox, rid, "normal")
    assert err.value.code == "unknown_result"


def test_no_ledger_and_bad_source(tmp_path: Path, outbox: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        feedback.labels(tmp_path / "nothing")
    assert err.value.code == "no_ledger"
    assert not (tmp_path / "nothing").exists()  # nothing created
    rid = _by_kind(outbox, "png")[0]
    with pytest.raises(InvalidInputError, match="source"):
        feedback.record(outbox, rid, "normal", source="/home/doe/labels.csv")


def test_damaged_ledger_is_a_clear_error(outbox: Path, capsys: Any) -> None:
    from medimg_edge.cli import main

    rid = _by_kind(outbox, "png")[0]
    ledger = outbox / ".medimg-edge" / "ledger.sqlite"
    for side in ("-wal", "-shm"):
        Path(f"{ledger}{side}").unlink(missing_ok=True)
    ledger.write_bytes(b"not a database at all" * 300)
    with pytest.raises(feedback.FeedbackStoreError, match="is damaged"):
        feedback.labels(outbox)
    assert main(["feedback", str(outbox), rid, "normal"]) == 1
    assert "damaged" in capsys.readouterr().err


# -- CSV import -----------------------------------------------------------------------
def _write_csv(path: Path, rows: list[tuple[str, str]], header: str = "result_id,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_import_csv_all_or_nothing(outbox: Path, tmp_path: Path) -> None:
    """One bad row (unknown id, invalid label, conflicting duplicate) and nothing is
    recorded; the report names each bad line without quoting a malformed cell."""
    a, b, c = _by_kind(outbox, "png")[:3]
    rows = [
        (a, "cyst"),
        (b, "normal"),
        ("00000000-00000009", "normal"),  # line 4: no such result
        (PATIENT.replace("^", " "), "normal"),  # line 5: not an id (never echoed)
        (c, "nodule"),  # line 6: not a label of us_lesion
        (a, "normal"),  # line 7: a again, another label
        (b, "normal"),  # the same again: fine
    ]
    rep = feedback.import_csv(outbox, _write_csv(tmp_path / "x.csv", rows))
    assert not rep.applied and not rep.ok
    assert (rep.rows, rep.unknown_id, rep.invalid_label, rep.malformed) == (7, [4, 5], [6], [7])
    assert sorted(rep.accepted) == sorted([a, b])
    assert feedback.labels(outbox) == {}
    assert not any("SECRETSURNAME" in m for m in rep.messages)
    assert any(m.startswith("line 6:") and "normal, cyst" in m for m in rep.messages)
    # the same rows with partial=True: the valid ones are recorded
    rep = feedback.import_csv(outbox, tmp_path / "x.csv", partial=True)
    assert rep.applied and sorted(rep.changed) == sorted([a, b])
    assert feedback.labels(outbox) == {a: "cyst", b: "normal"}
    assert {r.source for r in feedback.rows(outbox)} == {"csv"}


def test_import_csv_formats_and_list_round_trip(outbox: Path, tmp_path: Path, capsys: Any) -> None:
    """A BOM, semicolons, extra columns, blank lines and header case are accepted; the
    ``--list`` output imports into a fresh copy of the outbox and gives the same labels
    (the way to carry labels over a ledger moved aside after damage)."""
    from medimg_edge.cli import main

    ids = sorted(_ids(outbox))
    text = "\ufeffLabel;Result_ID;note\n\n" + "".join(
        f"{'normal' if i % 2 else 'cyst'};{rid};x\n" for i, rid in enumerate(ids[:-1])
    )
    (tmp_path / "semi.csv").write_text(text, encoding="utf-8")
    dx = next(i for i, r in _ids(outbox).items() if r["model"]["name"] == "xray_chest_nodule")
    if dx in ids[:-1]:  # the X-ray result takes X-ray labels
        text = text.replace(f"cyst;{dx};", f"nodule;{dx};")
        (tmp_path / "semi.csv").write_text(text, encoding="utf-8")
    rep = feedback.import_csv(outbox, tmp_path / "semi.csv")
    assert rep.ok and rep.applied and len(rep.changed) == len(ids) - 1, rep.messages
    before = feedback.labels(outbox)
    assert main(["feedback", str(outbox), "--list"]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0] == "result_id,label,model,recorded,source"
    (tmp_path / "list.csv").write_text(listing)
    # a fresh ledger over the same results (as after `mv ledger.sqlite ledger.sqlite.damaged`:
    # the old ids are kept by their records in the outbox)
    ledger = outbox / ".medimg-edge" / "ledger.sqlite"
    ledger.rename(tmp_path / "old.sqlite")
    for side in ("-wal", "-shm"):
        Path(f"{ledger}{side}").unlink(missing_ok=True)
    from medimg_edge.daemon import Ledger

    Ledger(ledger).close()
    assert feedback.labels(outbox) == {}
    rep = feedback.import_csv(outbox, tmp_path / "list.csv")
    assert rep.applied and feedback.labels(outbox) == before
    # importing it again changes nothing
    assert feedback.import_csv(outbox, tmp_path / "list.csv").changed == []


def test_import_csv_bad_files(outbox: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        feedback.import_csv(outbox, _write_csv(tmp_path / "h.csv", [], header="id,class"))
    assert err.value.code == "bad_header"
    with pytest.raises(InvalidInputError) as err:
        feedback.import_csv(outbox, tmp_path / "missing.csv")
    assert err.value.code == "no_such_file"
    (tmp_path / "bin.csv").write_bytes(b"result_id,label\n\xff\xfe\x00")
    with pytest.raises(InvalidInputError) as err:
        feedback.import_csv(outbox, tmp_path / "bin.csv")
    assert err.value.code == "unsupported_format"
    rep = feedback.import_csv(outbox, _write_csv(tmp_path / "e.csv", [("", "normal")]))
    assert rep.malformed == [2] and not rep.applied


# -- export ---------------------------------------------------------------------------
def _label_all(outbox: Path) -> dict[str, str]:
    """Every result labelled (X-ray: nodule; ultrasound: alternately cyst and normal)."""
    out = {}
    for k, (rid, r) in enumerate(sorted(_ids(outbox).items())):
        lab = "nodule" if r["model"]["name"] == "xray_chest_nodule" else US_LABELS[k % 2]
        feedback.record(outbox, rid, lab)
        out[rid] = lab
    return out


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + n
    return kinds


def test_export_round_trip_into_folder_dataset(outbox: Path, tmp_path: Path) -> None:
    """The export holds, per labelled result, the frame the result rests on exactly as the
    daemon read it (the cine's ``frame_index``; the rescaled DX mapped linearly), and
    ``training.folder_dataset`` reads it with the right classes; no TensorFlow needed."""
    from medimg_edge.io import read_image, read_input

    want = _label_all(outbox)
    dest = tmp_path / "train"
    rep = feedback.export(outbox, dest)
    assert rep.written == want and not rep.missing and not rep.skipped
    assert rep.counts == {lab: list(want.values()).count(lab) for lab in set(want.values())}
    records = _ids(outbox)
    for rid, lab in want.items():
        png = dest / lab / f"{rid}.png"
        (orig,) = (outbox / "processed").glob(f"{rid}.*")
        r = records[rid]
        got = read_input(orig, cine_frames=len(r["clip"]["frames_diagnosed"]))
        frame = got.frames[got.frame_indices.index(r["frame_index"])]
        exported = read_image(png)
        if frame.dtype in (np.uint8, np.uint16):
            np.testing.assert_array_equal(exported, frame)
        else:  # the DX: float64 half-integers, linearly onto 0..65535
            lo, hi = float(frame.min()), float(frame.max())
            np.testing.assert_allclose(exported, (frame - lo) * 65535 / (hi - lo), atol=0.5001)
        if r["input"]["frames_in_file"] > 1:
            assert r["frame_index"] != 0  # the multi-frame case is not the first frame
            other = got.frames[got.frame_indices.index(0)]
            assert not np.array_equal(exported, other)
    manifest = json.loads((dest / feedback.EXPORT_MANIFEST).read_text())
    assert {f["id"]: f["label"] for f in manifest["frames"]} == want
    code = (
        "import json, sys; from medimg_edge.training import folder_dataset; "
        f"ds = folder_dataset({str(dest)!r}); "
        "print(json.dumps([list(ds.labels), ds.y.tolist(), 'tensorflow' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    classes, y, tf_loaded = json.loads(out.stdout)
    assert classes == sorted(set(want.values()))
    assert sorted(classes[k] for k in y) == sorted(want.values())
    assert tf_loaded is False


def test_export_has_no_patient_data(outbox: Path, tmp_path: Path) -> None:
    """The inputs carry the patient's name and id in file names, DICOM headers and a PNG
    text chunk: the exported folder (names and bytes), the manifest and the feedback
    tables hold none of it; PNGs have only IHDR/IDAT/IEND; the burned-in flag is reported."""
    want = _label_all(outbox)
    dest = tmp_path / "train"
    rep = feedback.export(outbox, dest)
    assert len(rep.written) == len(want)
    files = [p for p in dest.rglob("*")]
    # private like the daemon's outputs: folders 0700, files 0600
    assert {stat.S_IMODE(p.stat().st_mode) for p in [dest, *files]} == {0o700, 0o600}
    assert len([p for p in files if p.suffix == ".png"]) == len(want)
    for p in files:
        rel = str(p.relative_to(tmp_path)).upper().encode()
        assert not any(s in rel for s in PHI), p
        if p.is_file():
            data = p.read_bytes()
            assert not any(s in data.upper() for s in PHI), p
            if p.suffix == ".png":
                assert set(_png_chunks(data)) == {b"IHDR", b"IDAT", b"IEND"}
    # the inputs really did carry it
    processed = b"".join(p.read_bytes() for p in (outbox / "processed").iterdir())
    assert all(s in processed for s in PHI)
    burned = [i for i, r in _ids(outbox).items() if "burned_in_annotation" in r["input"]["flags"]]
    assert burned and sorted(rep.burned_in) == sorted(burned)
    db = sqlite3.connect(outbox / ".medimg-edge" / "ledger.sqlite")
    dump = "\n".join(db.iterdump()).upper()
    db.close()
    fb = [ln for ln in dump.splitlines() if "FEEDBACK" in ln]
    assert fb and not any(s.decode() in ln for ln in fb for s in PHI)


def test_export_missing_original_changed_file_and_re_export(outbox: Path, tmp_path: Path) -> None:
    """An original gone from processed/ is reported, not fatal; a changed one is skipped;
    a correction re-exported moves the frame (the earlier export is replaced whole); a
    folder that is not an export is refused."""
    want = _label_all(outbox)
    pngs = _by_kind(outbox, "png")
    gone, changed = pngs[0], pngs[1]
    next((outbox / "processed").glob(f"{gone}.*")).unlink()
    next((outbox / "processed").glob(f"{changed}.*")).write_bytes(png_bytes(99, 96))
    dest = tmp_path / "train"
    rep = feedback.export(outbox, dest)
    assert rep.missing == [gone] and rep.skipped == {changed: "changed"}
    assert set(rep.written) == set(want) - {gone, changed}
    moved = pngs[2]
    new_label = "hypoechoic"
    assert want[moved] != new_label
    feedback.record(outbox, moved, new_label)
    rep = feedback.export(outbox, dest)
    assert (dest / new_label / f"{moved}.png").is_file()
    assert not (dest / want[moved] / f"{moved}.png").exists()
    assert not list(tmp_path.glob(".medimg-tmp-*"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="not an earlier feedback export"):
        feedback.export(outbox, other)
    assert (other / "keep.txt").read_text() == "x"
    only = feedback.export(outbox, tmp_path / "xray", model="xray_chest_nodule")
    assert set(only.counts) == {"nodule"} and only.warnings  # one class: train needs two


def test_export_custom_folders(outbox: Path, tmp_path: Path) -> None:
    """A daemon configured with another processed_dir / state_dir: the keywords find them."""
    want = _label_all(outbox)
    (outbox / "processed").rename(tmp_path / "elsewhere")
    (outbox / ".medimg-edge").rename(tmp_path / "state")
    with pytest.raises(InvalidInputError):
        feedback.labels(outbox)
    assert feedback.labels(outbox, state_dir=tmp_path / "state") == want
    rep = feedback.export(
        outbox, tmp_path / "t", processed_dir=tmp_path / "elsewhere", state_dir=tmp_path / "state"
    )
    assert rep.written == want


def test_export_without_labels(outbox: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        feedback.export(outbox, tmp_path / "train")
    assert err.value.code == "no_feedback"
    assert not (tmp_path / "train").exists()


# -- command line ---------------------------------------------------------------------
def test_cli(outbox: Path, tmp_path: Path, capsys: Any) -> None:
    from medimg_edge.cli import main

    rid = _by_kind(outbox, "png")[0]
    assert main(["feedback", str(outbox), rid, "cyst"]) == 0
    assert main(["feedback", str(outbox), rid, "normal"]) == 0
    assert main(["feedback", str(outbox), rid, "nodule"]) == 2
    assert main(["feedback", str(outbox), "nonsense", "normal"]) == 2
    assert main(["feedback", str(tmp_path), rid, "normal"]) == 2  # no ledger there
    assert main(["feedback", str(outbox)]) == 2
    assert main(["feedback", str(outbox), rid, "normal", "--list"]) == 2
    err = capsys.readouterr().err
    assert "normal, cyst, hypoechoic, hyperechoic" in err and "no medimg-edge ledger" in err
    assert main(["feedback", str(outbox), "--history", rid]) == 0
    hist = capsys.readouterr().out.splitlines()
    assert [ln.split(",")[2:4] for ln in hist[1:]] == [["cyst", ""], ["normal", "cyst"]]
    bad = _write_csv(tmp_path / "b.csv", [(rid, "bogus")])
    assert main(["feedback", str(outbox), "--import", str(bad)]) == 2
    assert main(["feedback", str(outbox), "--import", str(bad), "--partial"]) == 1
    good = _write_csv(tmp_path / "g.csv", [(i, "normal") for i in _by_kind(outbox, "png")])
    assert main(["feedback", str(outbox), "--import", str(good)]) == 0
    capsys.readouterr()
    assert main(["feedback", str(outbox), "--export", str(tmp_path / "t")]) == 0
    assert "wrote 4 frames" in capsys.readouterr().out
    next((outbox / "processed").glob(f"{rid}.*")).unlink()
    assert main(["feedback", str(outbox), "--export", str(tmp_path / "t")]) == 1
    out = capsys.readouterr().out
    assert "wrote 3 frames" in out and rid in out


def test_cli_help(capsys: Any) -> None:
    from medimg_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["feedback", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--import FILE.csv", "--export DIR", "--list", "--history", "NOT"):
        assert needle in text
    assert "``" not in text and ":func:" not in text and "default: [" not in text


# -- beside a running daemon ----------------------------------------------------------
def test_concurrent_with_a_running_daemon(outbox: Path, tmp_path: Path) -> None:
    """Labels recorded and imported (from a second process too) while the daemon keeps
    processing new files into the same ledger: every label lands, every file gets its one
    result, the daemon logs no ledger error and stops cleanly."""
    inbox = tmp_path / "inbox2"
    inbox.mkdir()
    d = DaemonProc(inbox, outbox, *FAST).start()
    try:
        old = sorted(_ids(outbox))
        n_new = 40
        writer = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("daemon_helpers.py")), "write",
             "direct", str(inbox), "100", str(n_new)]
        )  # fmt: skip
        csv_path = _write_csv(tmp_path / "c.csv", [(i, "normal") for i in _by_kind(outbox, "png")])
        code = (
            "import sys; from pathlib import Path; from medimg_edge.daemon import _feedback as f\n"
            f"for k in range(30):\n"
            f"    f.import_csv(Path({str(outbox)!r}), Path({str(csv_path)!r}), source='csv')\n"
        )
        other = subprocess.Popen([sys.executable, "-c", code])
        pngs = _by_kind(outbox, "png")
        for k in range(60):
            feedback.record(outbox, pngs[k % len(pngs)], US_LABELS[k % 4], source="api")
        assert writer.wait(timeout=120) == 0
        assert other.wait(timeout=300) == 0
        wait_for(lambda: len(results(outbox)) == len(old) + n_new, "new results")
        # results of the running daemon can be labelled right away
        new = sorted(set(_ids(outbox)) - set(old))
        for rid in new:
            feedback.record(outbox, rid, "cyst")
    finally:
        assert d.stop() == 0
    labels = feedback.labels(outbox)
    assert all(labels[rid] == "cyst" for rid in new)
    assert set(pngs) <= set(labels)
    events = d.log_events()
    assert not [e for e in events if e.get("level") in ("ERROR", "CRITICAL")], events
    assert sum(e.get("event") == "done" for e in events) == n_new
