"""The daemon's standard outputs (issue 16 item 3, correlation of item 6): every SR and SC
written by the watch daemon for a corpus of ultrasound and X-ray DICOM (positive, negative,
indeterminate, a multi-frame clip; plain and de-identified) passes dicom3tools' ``dciodvfy``
with no error and dcmtk's ``dsrdump``; highdicom reads each SR back as a TID 1500
Measurement Report and finds the finding, its code, its region (around the heatmap peak,
in the source's pixel coordinates, on the source instance and frame) and every class score
under its own label; the JSON record and the ``done`` outcome carry what correlates them.

``dciodvfy`` and ``dsrdump`` are required (Debian packages ``dicom3tools`` and ``dcmtk``,
installed by ``.ci/run``): the test fails, it does not skip, without them.
"""

from __future__ import annotations

import datetime
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import io as mio
from medimg_edge import synth

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
from daemon_helpers import DaemonProc  # noqa: E402
from dicom_helpers import bundled, dx_dataset, us_dataset  # noqa: E402
from medimg_edge.daemon import Ledger, _deid, _dicom, _sr  # noqa: E402
from medimg_edge.daemon._config import ConfigError, load_config  # noqa: E402

ACCESSION = "ACC-0042"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: apt-get install -y dcmtk dicom3tools"
    return path


def dciodvfy(path: Path | str) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of ``dciodvfy path``."""
    run = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning")]
    assert run.returncode == 0 or errors, run.stderr
    return errors, warnings


def dsrdump(path: Path | str) -> str:
    run = subprocess.run([_tool("dsrdump"), str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


# ---- the corpus ------------------------------------------------------------------------


def _write(ds: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.AccessionNumber = ACCESSION
    ds.PatientName = "SR^TEST"
    ds.PatientID = "SR-TEST-1"
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ultrasound and DX DICOM from the phantoms (their answers span positive, negative and
    indeterminate with the reference models), a blank frame (quality gate), a 5-frame
    ultrasound clip and pydicom's 30-frame YBR cine."""
    root = tmp_path_factory.mktemp("sr-corpus")
    us = synth.generate("ultrasound", 8, seed=7, size=128, lesion_prior="conspicuous")
    for i, s in enumerate(us):
        _write(us_dataset(s.image), root / "us" / f"us_{i}.dcm")
    for i, s in enumerate(synth.generate("xray", 8, seed=7, size=256, lesion_prior="conspicuous")):
        _write(dx_dataset(s.image, Laterality="L" if i == 0 else ""), root / "xr" / f"xr_{i}.dcm")
    _write(us_dataset(np.full((128, 128), 90, np.uint8)), root / "us" / "blank.dcm")
    # a 5-frame clip (frames 0, 2, 4 diagnosed) whose middle frame holds the lesion
    clip = np.stack([us[k].image for k in (0, 1, 2, 4, 7)])
    cine = us_dataset(clip, SOPClassUID=US_MULTIFRAME)
    cine.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    _write(cine, root / "us" / "clip.dcm")
    # frames under the single-frame class (as some devices write them): no frame number
    _write(us_dataset(clip[::-1]), root / "us" / "clip_single_class.dcm")
    shutil.copy(bundled("examples_ybr_color.dcm"), root / "us" / "ybr_cine.dcm")
    return root


def _run(corpus: Path, tmp: Path, *extra: str) -> dict[str, tuple[str, Path, DaemonProc]]:
    """Run the daemon over a copy of the corpus until idle: original name -> (result id,
    outbox, daemon)."""
    inbox, outbox = tmp / "inbox", tmp / "outbox"
    shutil.copytree(corpus, inbox)
    d = DaemonProc(inbox, outbox, "--sr", "--sc", "--settle", "0.2", "--exit-when-idle", *extra)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(timeout=300) == 0, d.log_text()[-3000:]
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    try:
        return {r.path: (led.result_id(r.rowid), outbox, d) for r in led.all_rows()}
    finally:
        led.close()


@pytest.fixture(scope="module")
def plain(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    extra = ("--record-source-name", "--sr-series-number", "4242")
    return _run(corpus, tmp_path_factory.mktemp("plain"), *extra)


@pytest.fixture(scope="module")
def deid(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(corpus, tmp_path_factory.mktemp("deid"), "--deidentify")


def _outputs(run: dict[str, Any]) -> list[tuple[str, dict[str, Any], Path, Path]]:
    """(name, record, SR path, SC path) of every input."""
    out = []
    for name, (rid, outbox, _) in sorted(run.items()):
        record = json.loads((outbox / f"{rid}.json").read_text())
        out.append((name, record, outbox / f"{rid}.sr.dcm", outbox / f"{rid}.sc.dcm"))
    return out


# ---- reading an SR back ----------------------------------------------------------------


def _report(path: Path) -> tuple[Any, Any]:
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    return sr, hd.sr.MeasurementReport.from_sequence([sr])


def _evaluations(group: Any) -> dict[str, Any]:
    return {q.name.meaning: q.value for q in group.get_qualitative_evaluations()}


def _items(group: Any) -> list[Any]:
    """The content items of a measurement group (the template holds its container)."""
    (container,) = group
    return list(container.ContentSequence)


def _check_sr(path: Path, record: dict[str, Any], source: Any) -> dict[str, Any]:
    """Everything the SR must say about ``record``'s result; returns what was found."""
    sr, report = _report(path)
    result = [g for g in report.get_image_measurement_groups()]
    result += list(report.get_planar_roi_measurement_groups())
    by_tracking = {str(g.tracking_identifier): g for g in result}
    main = by_tracking[_sr.RESULT_TRACKING_ID]
    status, label = record["status"], record["label"]
    normality = _evaluations(main)["Normality"]
    expected = {
        "positive": "Abnormal",
        "negative": "Normal",
        "indeterminate": "Normality Undetermined",
    }
    assert normality.meaning == expected[status] and normality.scheme_designator == "SCT"
    if label is None:
        assert main.finding_type is None
    else:
        code = _sr.class_code(label)
        assert (main.finding_type.value, main.finding_type.scheme_designator) == (
            code.value,
            code.scheme_designator,
        )
        assert code.scheme_designator == "SCT"  # the reference models' classes are standard
    # every class score under its own label, in the model's order
    classes = [g for g in result if str(g.tracking_identifier).startswith("class: ")]
    assert [str(g.tracking_identifier)[7:] for g in classes] == list(record["scores"])
    for g in classes:
        name = str(g.tracking_identifier)[7:]
        (m,) = g.get_measurements()
        assert m.name.meaning == "Probability" and m.name.scheme_designator == "DCM"
        assert float(m.value) == pytest.approx(record["scores"][name], abs=1e-9)
        assert g.finding_type.value == _sr.class_code(name).value
    # the reason of an indeterminate result, coded
    reasons = [q for q in main.get_qualitative_evaluations() if q.name.value == "INDETREASON"]
    assert bool(reasons) == (status == "indeterminate")
    for r in record["reasons"] if status == "indeterminate" else []:
        values = {q.value.meaning for q in reasons}
        want = {
            "abstain_band": "Equivocal",
            "out_of_distribution": "Out of the model's training distribution",
        }.get(r, "Insufficient quality for interpretation")
        assert want in values, (r, values)
    # the algorithm
    algo = {it.ConceptNameCodeSequence[0].CodeMeaning: it.get("TextValue") for it in _items(main)}
    assert algo["Algorithm Name"] == record["model"]["name"]
    assert algo["Algorithm Version"] == record["model"]["version"]
    assert algo["Algorithm Parameters"] == f"sha256={record['model']['sha256']}"
    # the source instance and frame, everywhere it is referenced
    multi = int(source.get("NumberOfFrames", 1) or 1) > 1
    multi = multi and source.SOPClassUID not in _dicom.SINGLE_FRAME_SOP_CLASSES
    frames = {record["frame_index"] + 1 if multi else None}
    region = None
    if main in report.get_planar_roi_measurement_groups():
        region = main.roi
        refs = [region.ContentSequence[0].ReferencedSOPSequence[0]]
    else:
        refs = [it.ReferencedSOPSequence[0] for it in _items(main) if it.ValueType == "IMAGE"]
    assert refs
    for g in classes:  # the result group's image and algorithm: not repeated
        assert not [it for it in _items(g) if it.ValueType == "IMAGE"]
    for ref in refs:
        assert ref.ReferencedSOPClassUID == source.SOPClassUID
        assert ref.ReferencedSOPInstanceUID == sr_uid(source.SOPInstanceUID, sr)
        got = ref.get("ReferencedFrameNumber")
        assert (None if got is None else int(got)) in frames
    assert (region is not None) == (status == "positive"), status
    # header: real content date / time (UTC), the coding scheme declared
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    schemes = [it.CodingSchemeDesignator for it in sr.CodingSchemeIdentificationSequence]
    assert schemes == [_sr.PRIVATE_SCHEME]
    return {"sr": sr, "region": region, "main": main}


def sr_uid(uid: str, sr: Any) -> str:
    """``uid`` as the SR should reference it (de-identified SRs: a different UID)."""
    if getattr(sr, "PatientIdentityRemoved", "NO") == "YES":
        return (
            sr.CurrentRequestedProcedureEvidenceSequence[0]
            .ReferencedSeriesSequence[0]
            .ReferencedSOPSequence[0]
            .ReferencedSOPInstanceUID
        )
    return uid


# ---- the tests -------------------------------------------------------------------------


def test_every_sr_and_sc_passes_dciodvfy_and_reads_back(plain, corpus) -> None:
    outputs = _outputs(plain)
    statuses = set()
    accessions = set()
    warnings: set[str] = set()
    for name, record, sr_path, sc_path in outputs:
        source = pydicom.dcmread(corpus / name, stop_before_pixels=True)
        for path in (sr_path, sc_path):
            errors, warns = dciodvfy(path)
            assert errors == [], (name, path.name, errors)
            warnings.update(warns)
        text = dsrdump(sr_path)
        assert "Imaging Measurement Report" in text and "Normality" in text
        found = _check_sr(sr_path, record, source)
        sr = found["sr"]
        statuses.add(record["status"])
        # not de-identified: the source study, patient and accession number
        assert sr.StudyInstanceUID == source.StudyInstanceUID
        assert sr.AccessionNumber == source.get("AccessionNumber", "")
        assert sr.PatientID == source.PatientID
        accessions.add(sr.AccessionNumber)
        assert sr.SeriesNumber == 4242  # --sr-series-number reaches the worker's SR
        when = datetime.datetime.strptime(sr.ContentDate + sr.ContentTime[:6], "%Y%m%d%H%M%S")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert abs((now - when).total_seconds()) < 3600  # today, not 1900
        assert sr.TimezoneOffsetFromUTC == "+0000"
        sc = pydicom.dcmread(sc_path)
        assert sc.Laterality == ("L" if name == "xr/xr_0.dcm" else "")
        # correlation: the record names the source instance and the original
        assert record["source"] == {
            "deidentified": False,
            "sop_instance_uid": source.SOPInstanceUID,
            "sop_class_uid": source.SOPClassUID,
            "series_instance_uid": source.SeriesInstanceUID,
            "study_instance_uid": source.StudyInstanceUID,
            "accession_number": source.get("AccessionNumber") or None,
        }
        assert record["source_name"] == name
    assert statuses == {"positive", "negative", "indeterminate"}
    assert ACCESSION in accessions
    # the done log line of every input carries its status and label (and no file name)
    (daemon,) = {id(d): d for _, _, d in plain.values()}.values()
    done = {e["id"]: e for e in daemon.log_events() if e.get("event") == "done"}
    for name, (rid, outbox, _) in plain.items():
        record = json.loads((outbox / f"{rid}.json").read_text())
        assert (done[rid]["status"], done[rid]["label"]) == (record["status"], record["label"])
        assert name not in json.dumps(done[rid])
    print("dciodvfy warnings:", *sorted(warnings), sep="\n  ")


def test_region_surrounds_the_heatmap_peak_on_the_right_frame(plain, corpus) -> None:
    """The SR's region, read back by highdicom, holds the peak of the heatmap the daemon's
    triage computes for the same file, on the frame the record names."""
    triage = me.triage.Triage(delegate="cpu")
    positives = 0
    clips = 0
    for name, record, sr_path, _ in _outputs(plain):
        if record["status"] != "positive":
            continue
        positives += 1
        got = triage.diagnose_file(corpus / name)
        assert got.clip.frame_index == record["frame_index"]
        heat = got.result.heatmap
        source = pydicom.dcmread(corpus / name, stop_before_pixels=True)
        assert heat.shape == (source.Rows, source.Columns)
        region = _check_sr(sr_path, record, source)["region"]
        assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        pts = np.asarray(region.value, dtype=np.float32)
        assert len(pts) >= 4 and np.array_equal(pts[0], pts[-1])  # closed
        assert (pts >= 0).all() and (pts[:, 0] <= source.Columns).all()
        assert (pts[:, 1] <= source.Rows).all()
        r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
        inside = cv2.pointPolygonTest(pts.reshape(-1, 1, 2), (c + 0.5, r + 0.5), True)
        assert inside >= -1.0, (name, inside)  # on or inside the outline
        if int(source.get("NumberOfFrames", 1) or 1) > 1:
            ref = region.ContentSequence[0].ReferencedSOPSequence[0]
            if source.SOPClassUID == US_MULTIFRAME:
                assert int(ref.ReferencedFrameNumber) == record["frame_index"] + 1
                clips += 1
            else:
                assert "ReferencedFrameNumber" not in ref
    assert positives >= 2 and clips >= 1


def test_deidentified_outputs(deid, corpus) -> None:
    """With --deidentify: no patient data, the Study Instance UID remapped (SR and SC of
    one input in the same new study, the source study not named), dciodvfy clean, the
    finding intact, and the record carries no source UID or accession number."""
    warnings: set[str] = set()
    for name, record, sr_path, sc_path in _outputs(deid):
        source = pydicom.dcmread(corpus / name, stop_before_pixels=True)
        for path in (sr_path, sc_path):
            errors, warns = dciodvfy(path)
            assert errors == [], (name, path.name, errors)
            warnings.update(warns)
            blob = path.read_bytes()
            for secret in (b"SR^TEST", b"SR-TEST-1", ACCESSION.encode()):
                assert secret not in blob
            for uid in (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID):
                assert uid.encode() not in blob
        dsrdump(sr_path)
        sr = _check_sr(sr_path, record, source)["sr"]
        sc = pydicom.dcmread(sc_path)
        assert sr.StudyInstanceUID == sc.StudyInstanceUID != source.StudyInstanceUID
        assert sr.PatientIdentityRemoved == "YES"
        assert record["source"] == {"deidentified": True}
        assert "source_name" not in record
    print("dciodvfy warnings:", *sorted(warnings), sep="\n  ")


def test_done_outcome_carries_status_and_label_and_the_source_name(tmp_path: Path) -> None:
    """The finisher's ``done`` outcome (what the ``done`` log line is made from) carries
    the status and label of the worker's reply; with ``record_source_name`` the record
    gets the original's path in the inbox (once, also when a batch is retried one by one)."""
    import queue

    from medimg_edge.daemon._finish import Finisher, Job, Waker
    from medimg_edge.daemon._ledger import Row
    from medimg_edge.daemon._worker import WorkerReply

    inbox = tmp_path / "in"
    (inbox / "ward 3").mkdir(parents=True)
    (inbox / "ward 3" / "scan.dcm").write_bytes(b"x")
    st = (inbox / "ward 3" / "scan.dcm").stat()
    over = {"inbox": inbox, "outbox": tmp_path / "out", "record_source_name": True}
    config = load_config(None, over)
    for d in (config.outbox, config.processed_dir):
        d.mkdir(parents=True, exist_ok=True)
    fin = Finisher(lambda: config, queue.Queue(), Waker())
    sig = (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)  # as taken: unchanged
    row = Row(1, "ward 3/scan.dcm", *sig, "processing", 0, 0.0, None, None, None, 0)
    record = json.dumps({"id": "r1", "status": "positive"}).encode()
    header = {"ok": True, "sha256": "ab", "kind": "dicom", "status": "positive", "label": "cyst"}
    (out,) = fin.done([(Job(row, "r1", ".dcm", {}), WorkerReply(header, {"json": record}))])
    assert (out.result, out.status, out.label) == ("done", "positive", "cyst")
    doc = json.loads((config.outbox / "r1.json").read_text())
    assert doc == {"id": "r1", "status": "positive", "source_name": "ward 3/scan.dcm"}
    assert (config.processed_dir / "r1.dcm").exists()


def test_worker_writes_the_configured_series_number(corpus: Path) -> None:
    """A job's ``sr_series_number`` is the SR's Series Number (the worker, as the daemon
    runs it, on a file of the corpus)."""
    from medimg_edge.daemon._worker import _Work

    settings = {
        "inbox": str(corpus),
        "models": {},
        "cpu_only": True,
        "quality_gate": True,
        "cine_frames": 3,
        "max_file_mb": 64,
        "override_dicom_modality": False,
    }
    job = {"id": "t-1", "path": "us/us_2.dcm", "modality": None, "overlay": False}
    job.update(sr=True, sc=False, deidentify=False, sr_series_number=4242)
    header, blobs = _Work(settings).run(job)
    assert header["ok"] and header["status"] in ("positive", "negative", "indeterminate")
    sr = pydicom.dcmread(io.BytesIO(blobs["sr.dcm"]))
    assert sr.SeriesNumber == 4242
    record = json.loads(blobs["json"])
    assert header["label"] == record["label"] and header["status"] == record["status"]
    del job["sr_series_number"]
    _, blobs = _Work(settings).run(job)
    assert pydicom.dcmread(io.BytesIO(blobs["sr.dcm"])).SeriesNumber == _dicom.SR_SERIES_NUMBER


def test_cli_options(tmp_path: Path) -> None:
    import argparse

    from medimg_edge.cli import watch

    p = argparse.ArgumentParser()
    watch._add_arguments(p)
    inbox = tmp_path / "in"
    inbox.mkdir()
    argv = [str(inbox), "--out", str(tmp_path / "out"), "--sr-series-number", "17"]
    config = load_config(None, watch._overrides(p.parse_args([*argv, "--record-source-name"])))
    assert config.sr_series_number == 17 and config.record_source_name
    config = load_config(None, watch._overrides(p.parse_args(argv[:3])))
    assert config.sr_series_number == _dicom.SR_SERIES_NUMBER and not config.record_source_name


def test_record_source_name_conflicts_with_deidentify(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    over = {"inbox": inbox, "outbox": tmp_path / "out"}
    assert load_config(None, {**over, "record_source_name": True}).record_source_name
    with pytest.raises(ConfigError, match="record_source_name"):
        load_config(None, {**over, "record_source_name": True, "deidentify": True})
    assert load_config(None, over).sr_series_number == _dicom.SR_SERIES_NUMBER
    assert load_config(None, {**over, "sr_series_number": 17}).sr_series_number == 17
    for bad in (-1, 2**31, "9", True):
        with pytest.raises(ConfigError, match="sr_series_number"):
            load_config(None, {**over, "sr_series_number": bad})


# ---- the encoder alone -----------------------------------------------------------------


@pytest.fixture(scope="module")
def xray() -> me.Diagnoser:
    return me.Diagnoser(modality="xray", delegate="cpu")


def test_codes_are_standard_where_the_standard_has_them() -> None:
    """Every DCM / SCT code the SR writes is in DICOM PS3.16 with that meaning (pydicom's
    concept dictionary is generated from PS3.16)."""
    from pydicom.sr._concepts_dict import concepts

    def known(value: str, scheme: str, meaning: str) -> bool:
        return any(
            value in codes and codes[value][0] == meaning for codes in concepts[scheme].values()
        )

    used = [*_sr.CLASS_CODES.values(), *_sr._ECHO.values(), *_sr._NORMALITY.values()]
    used += [_sr._ECHO_PATTERN, _sr._NORMALITY_NAME, _sr._PROBABILITY, _sr._POOR_QUALITY]
    used += [_sr._EQUIVOCAL, _sr._IMAGING_PROCEDURE, *_sr._PROCEDURES.values()]
    for value, scheme, meaning in used:
        assert scheme in ("DCM", "SCT")
        assert known(value, scheme, meaning), (value, scheme, meaning)
    # private codes: only the documented ones, each with its meaning in the docstring
    for value, meaning in _sr.PRIVATE_CODES.items():
        assert f"``{value}``" in _sr.__doc__ and meaning in _sr.__doc__


def test_reason_codes() -> None:
    pairs = _sr.reason_codes(["quality:blurred", "quality:new_issue", "out_of_distribution"])
    got = [(n.value, v.scheme_designator, v.value, v.meaning) for n, v in pairs]
    assert ("INDETREASON", "99MEDIMG", "OOD", "Out of the model's training distribution") in got
    assert ("INDETREASON", "DCM", "110531", "Insufficient quality for interpretation") in got
    assert ("QISSUE", "99MEDIMG", "Q-BLURRED", "Blurred image") in got
    assert ("QISSUE", "99MEDIMG", "Q-NEW_ISSUE", "Image quality: new_issue") in got
    assert [v.meaning for _, v in _sr.reason_codes(["abstain_band"])] == ["Equivocal"]


def test_class_codes_of_user_labels() -> None:
    assert _sr.class_code("Nodule").value == "27925004"
    plain = _sr.class_code("pneumothorax")
    assert (plain.value, plain.scheme_designator, plain.meaning) == (
        "C-pneumothorax",
        "99MEDIMG",
        "pneumothorax",
    )
    long = _sr.class_code("ground glass opacity")
    assert long.value.startswith("C") and len(long.value) == 16
    assert long.meaning == "ground glass opacity"
    # a class named like a private code of the SR gets a code of its own
    assert _sr.class_code("OOD").value == "C-OOD" and "C-OOD" not in _sr.PRIVATE_CODES


def test_heatmap_region_geometry() -> None:
    heat = np.zeros((40, 60), np.float32)
    heat[10:20, 30:50] = 1.0  # rows 10..19, columns 30..49
    heat[30:35, 5:8] = 0.8  # a second, weaker blob: not outlined
    pts = _sr.heatmap_region(heat)
    assert pts is not None and np.array_equal(pts[0], pts[-1])
    assert pts[:, 0].min() == 30.5 and pts[:, 0].max() == 49.5  # pixel centres
    assert pts[:, 1].min() == 10.5 and pts[:, 1].max() == 19.5
    # scaled to a source of another size
    big = _sr.heatmap_region(heat, rows=80, columns=120)
    np.testing.assert_allclose(big, pts * 2)
    # a one-pixel peak: its box
    one = np.zeros((8, 8), np.float32)
    one[3, 4] = 0.9
    box = _sr.heatmap_region(one)
    np.testing.assert_array_equal(box, [[4, 3], [5, 3], [5, 4], [4, 4], [4, 3]])
    assert _sr.heatmap_region(np.zeros((8, 8), np.float32)) is None
    assert _sr.heatmap_region(None) is None
    assert _sr.heatmap_region(np.full((4, 4), np.nan, np.float32)) is None


def test_encoder_options(xray, tmp_path: Path) -> None:
    img = mio.read_input(bundled("examples_ybr_color.dcm"))  # a 30-frame cine
    d = xray.diagnose(cv2.resize(img.frames[1], (256, 256)))
    when = datetime.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.timezone.utc)
    blob = _dicom.encode_sr(
        d, img.dataset, deidentify=False, frame_index=4, series_number=12, now=when
    )
    sr = pydicom.dcmread(io.BytesIO(blob))
    assert sr.SeriesNumber == 12
    assert (sr.ContentDate, sr.ContentTime) == ("20260304", "050607.890000")
    path = tmp_path / "sr.dcm"
    path.write_bytes(blob)
    assert dciodvfy(path)[0] == []
    for elem in sr.iterall():
        if elem.keyword == "ReferencedFrameNumber":
            assert int(elem.value) == 5
    for bad in (-1, 2**31, 1.5, True):
        with pytest.raises(me.InvalidInputError, match="series_number"):
            _dicom.encode_sr(d, img.dataset, deidentify=False, series_number=bad)


def test_non_dicom_and_indeterminate_encodings_validate(xray, tmp_path: Path) -> None:
    """An SR and an SC without a source instance (placeholder study) of a quality refusal
    pass dciodvfy, plain and de-identified; the SR reads back."""
    flat = np.full((128, 128), 100, np.uint8)
    d = xray.diagnose(flat)
    assert d.status == "indeterminate" and d.reasons[0].startswith("quality:")
    for deidentify in (False, True):
        path = tmp_path / f"sr{deidentify}.dcm"
        path.write_bytes(_dicom.encode_sr(d, None, deidentify=deidentify))
        assert dciodvfy(path)[0] == []
        _, report = _report(path)
        (main,) = report.get_image_measurement_groups()
        ev = _evaluations(main)
        assert ev["Normality"].meaning == "Normality Undetermined"
        assert ev["Image quality issue"].value.startswith("Q-")
        assert ev["Reason for indeterminate result"].meaning == (
            "Insufficient quality for interpretation"
        )
        rgb = np.ascontiguousarray(np.dstack([flat] * 3))
        sc = tmp_path / f"sc{deidentify}.dcm"
        sc.write_bytes(_dicom.encode_secondary_capture(rgb, d, None, deidentify=deidentify))
        assert dciodvfy(sc)[0] == []


def test_deidentified_study_linkage_is_per_salt(xray) -> None:
    """Documented in daemon/README.md: with --deidentify the Study Instance UID is replaced
    by HMAC(salt, uid); the same salt keeps inputs of one study together, the source study
    is not recoverable."""
    src = us_dataset(np.zeros((32, 32), np.uint8))
    other = us_dataset(np.zeros((32, 32), np.uint8), StudyInstanceUID=src.StudyInstanceUID)
    d = xray.diagnose(np.full((64, 64), 100, np.uint8))
    salt = b"site-secret"
    a = pydicom.dcmread(io.BytesIO(_dicom.encode_sr(d, src, deidentify=True, salt=salt)))
    b = pydicom.dcmread(io.BytesIO(_dicom.encode_sr(d, other, deidentify=True, salt=salt)))
    c = pydicom.dcmread(io.BytesIO(_dicom.encode_sr(d, src, deidentify=True, salt=b"x")))
    assert a.StudyInstanceUID == b.StudyInstanceUID == _deid.map_uid(src.StudyInstanceUID, salt)
    assert c.StudyInstanceUID != a.StudyInstanceUID != src.StudyInstanceUID
