"""DICOM outputs (``medimg_edge.daemon._dicom``): Comprehensive SR (a TID 1500 Measurement
Report) and Secondary Capture that reference the source study / series / instance, re-read
with pydicom and highdicom, zeroed preambles, de-identified variants and the PHI canary.
The daemon-level checks (dciodvfy, dsrdump, regions, correlation) are in ``test_sr.py``."""

from __future__ import annotations

import io
import logging

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import io as mio

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
from dicom_helpers import bundled, canary_ct_dataset  # noqa: E402
from medimg_edge._overlay import render_overlay  # noqa: E402
from medimg_edge.daemon import _deid, _dicom, _sr  # noqa: E402

SALT = b"out-salt"
CANARY = ("DOE^JOHN", "PHI-12345", "19AB0230", "DOE", "JOHN")


@pytest.fixture(scope="module")
def canary_input(tmp_path_factory):
    """read_input of CT_small.dcm carrying the canary, saved under a name with DOE."""
    ds = canary_ct_dataset()
    ds.PatientBirthDate = "19AB0230"
    ds.OtherPatientNames = "DOE^JOHNNY"
    ds.add_new((0x0011, 0x0010), "LO", "ACME 1.0")
    ds.add_new((0x0011, 0x1001), "LO", "DOE^JOHN")
    item = pydicom.Dataset()
    item.PersonName = "DOE^JOHN"
    ds.AnatomicRegionSequence = [item]
    path = tmp_path_factory.mktemp("in") / "DOE^JOHN_PHI-12345.dcm"
    ds.save_as(path)
    return mio.read_input(path, label="ledger-7"), ds


@pytest.fixture(scope="module")
def xray():
    return me.Diagnoser(modality="xray")


@pytest.fixture(scope="module")
def canary_diagnosis(canary_input, xray):
    return xray.diagnose(canary_input[0].frames[0])


def overlay_rgb(frame, diagnosis):
    return np.ascontiguousarray(cv2.cvtColor(render_overlay(frame, diagnosis), cv2.COLOR_BGR2RGB))


def read(blob):
    assert blob[:128] == bytes(128) and blob[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(blob))
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    return ds


def content(sr):
    """Concept meaning -> value of the SR's content items (recursively; TEXT, NUM, CODE
    (the value's meaning); a repeated name keeps the last) and ``"references"``: every
    IMAGE item's Referenced SOP Sequence item (image library, source images, regions)."""
    out = {"references": []}

    def walk(items):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "TEXT":
                out[name] = item.TextValue
            elif item.ValueType == "NUM":
                out[name] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE":
                out[name] = item.ConceptCodeSequence[0].CodeMeaning
            elif item.ValueType == "IMAGE":
                out["references"].append(item.ReferencedSOPSequence[0])
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return out


def scores(sr):
    """Class label -> Probability of the SR's class groups (tracking ``class: <label>``)."""
    report = hd.sr.MeasurementReport.from_sequence([hd.sr.srread(io.BytesIO(sr))])
    out = {}
    for group in report.get_image_measurement_groups():
        name = str(group.tracking_identifier)
        if name.startswith("class: "):
            (m,) = group.get_measurements()
            out[name[7:]] = float(m.value)
    return out


def test_sr_references_the_source(canary_input, canary_diagnosis):
    img, src = canary_input
    d = canary_diagnosis
    blob = _dicom.encode_sr(d, img.dataset, deidentify=False)
    sr = read(blob)
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage and sr.Modality == "SR"
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.SeriesInstanceUID != src.SeriesInstanceUID
    assert sr.SOPInstanceUID != src.SOPInstanceUID
    assert sr.PatientID == "PHI-12345"  # not de-identified: the source patient
    assert sr.PatientBirthDate == ""  # the malformed date is not propagated
    assert "OtherPatientNames" not in sr and (0x0011, 0x1001) not in sr  # only the basics
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == src.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == src.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    items = content(sr)
    assert items["references"]
    for ref in items["references"]:
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == src.SOPClassUID
    assert items["Algorithm Name"] == d.model["name"]
    assert items["Algorithm Version"] == d.model["version"]
    assert items["Algorithm Parameters"] == f"sha256={d.model['sha256']}"
    assert items["Device Observer Model Name"] == f"{d.model['name']} {d.model['version']}"
    assert sr.SoftwareVersions == d.package_version
    want = {"positive": "Abnormal", "negative": "Normal"}.get(d.status, "Normality Undetermined")
    assert items["Normality"] == want
    assert "not for clinical use" in sr.SeriesDescription
    if d.label is not None:
        assert items["Finding"] in {m for _, _, m in _sr.CLASS_CODES.values()}
    assert scores(blob) == pytest.approx(d.scores, abs=1e-9)
    assert list(scores(blob)) == list(d.scores)  # the model's label order
    # highdicom reads it back as a Comprehensive SR
    parsed = hd.sr.srread(io.BytesIO(blob))
    assert isinstance(parsed, hd.sr.ComprehensiveSR)
    assert parsed.StudyInstanceUID == src.StudyInstanceUID


def test_secondary_capture(canary_input, canary_diagnosis):
    img, src = canary_input
    rgb = overlay_rgb(img.frames[0], canary_diagnosis)
    blob = _dicom.encode_secondary_capture(rgb, canary_diagnosis, img.dataset, deidentify=False)
    sc = read(blob)
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == src.StudyInstanceUID
    assert sc.SeriesInstanceUID not in (src.SeriesInstanceUID,)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.PhotometricInterpretation == "RGB" and sc.SamplesPerPixel == 3
    np.testing.assert_array_equal(sc.pixel_array, rgb)
    assert sc.BurnedInAnnotation == "NO"  # CT source without the attribute
    assert "Not for clinical use" in sc.ImageComments
    with pytest.raises(me.InvalidInputError):
        _dicom.encode_secondary_capture(rgb[..., 0], canary_diagnosis, None, deidentify=False)


def test_deidentified_outputs_share_the_study_and_carry_no_phi(canary_input, canary_diagnosis):
    img, src = canary_input
    rgb = overlay_rgb(img.frames[0], canary_diagnosis)
    sr_blob = _dicom.encode_sr(canary_diagnosis, img.dataset, deidentify=True, salt=SALT)
    sc_blob = _dicom.encode_secondary_capture(
        rgb, canary_diagnosis, img.dataset, deidentify=True, salt=SALT
    )
    secrets = [*CANARY, src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID]
    for blob in (sr_blob, sc_blob):
        for secret in secrets:
            assert secret.encode() not in blob, secret
    sr, sc = read(sr_blob), read(sc_blob)
    new_study = _deid.map_uid(src.StudyInstanceUID, SALT)
    new_source = _deid.map_uid(src.SOPInstanceUID, SALT)
    assert sr.StudyInstanceUID == sc.StudyInstanceUID == new_study
    assert {r.ReferencedSOPInstanceUID for r in content(sr)["references"]} == {new_source}
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == new_source
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == new_study
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == _deid.map_uid(
        src.SeriesInstanceUID, SALT
    )
    for ds in (sr, sc):
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds["PatientName"].is_empty and ds["PatientID"].is_empty
        assert not any(e.tag.is_private for e in ds.iterall())
    # the finding survives de-identification (Clean Structured Content Option)
    assert "Normality" in content(sr)
    assert scores(sr_blob) == pytest.approx(canary_diagnosis.scores, abs=1e-9)
    assert hd.sr.srread(io.BytesIO(sr_blob)).StudyInstanceUID == new_study


def test_no_phi_in_logs_while_encoding(canary_input, canary_diagnosis, caplog, recwarn):
    img, _ = canary_input
    caplog.set_level(logging.DEBUG)
    recwarn.clear()
    rgb = overlay_rgb(img.frames[0], canary_diagnosis)
    for deid in (False, True):
        _dicom.encode_sr(canary_diagnosis, img.dataset, deidentify=deid)
        _dicom.encode_secondary_capture(rgb, canary_diagnosis, img.dataset, deidentify=deid)
    text = caplog.text + " ".join(str(w.message) for w in recwarn)
    for secret in CANARY:
        assert secret not in text


def test_ultrasound_burned_in_is_flagged(tmp_path):
    path = bundled("examples_rgb_color.dcm")  # US, no BurnedInAnnotation attribute
    img = mio.read_input(path)
    assert "burned_in_annotation" in img.flags
    frame = cv2.resize(img.frames[0], (256, 192))
    d = me.Diagnoser(modality="ultrasound").diagnose(frame)
    rgb = overlay_rgb(frame, d)
    sc = read(_dicom.encode_secondary_capture(rgb, d, img.dataset, deidentify=True))
    assert sc.BurnedInAnnotation == "YES"
    assert sc.PatientIdentityRemoved == "NO"  # pixels are not cleaned: not claimed
    sc2 = read(
        _dicom.encode_secondary_capture(rgb, d, img.dataset, deidentify=True, burned_in=False)
    )
    assert sc2.BurnedInAnnotation == "NO" and sc2.PatientIdentityRemoved == "YES"


def test_multiframe_reference_names_the_frame(tmp_path, xray):
    path = bundled("examples_ybr_color.dcm")  # 30-frame US cine
    img = mio.read_input(path)
    d = xray.diagnose(cv2.resize(img.frames[1], (256, 256)))
    sr = read(_dicom.encode_sr(d, img.dataset, deidentify=False, frame_index=img.frame_indices[1]))
    refs = content(sr)["references"]
    assert refs
    for ref in refs:
        assert ref.ReferencedSOPInstanceUID == img.dataset.SOPInstanceUID
        assert list(np.atleast_1d(ref.ReferencedFrameNumber)) == [img.frame_indices[1] + 1]


def test_non_dicom_input_gets_a_placeholder_study(tmp_path, real_images, xray):
    camera = real_images["camera"].astype(np.uint8)
    d = xray.diagnose(camera)
    sr = read(_dicom.encode_sr(d, None, deidentify=False))
    assert str(sr.PatientName) == "ANONYMOUS" and sr.PatientID == "UNKNOWN"
    assert "CurrentRequestedProcedureEvidenceSequence" not in sr
    assert content(sr)["references"] == []
    # one placeholder for both outputs of an input: one study, stable across runs
    key = "ab" * 32
    src = _dicom.placeholder_source(key)
    assert src.StudyInstanceUID == _dicom.placeholder_source(key).StudyInstanceUID
    assert src.StudyInstanceUID != _dicom.placeholder_source("cd" * 32).StudyInstanceUID
    rgb = overlay_rgb(camera, d)
    a = read(_dicom.encode_sr(d, src, deidentify=False))
    b = read(_dicom.encode_secondary_capture(rgb, d, src, deidentify=False))
    assert a.StudyInstanceUID == b.StudyInstanceUID == src.StudyInstanceUID
    assert "SourceImageSequence" not in b
    c = read(_dicom.encode_secondary_capture(rgb, d, None, deidentify=True))
    assert c.PatientIdentityRemoved == "YES"


def test_indeterminate_diagnosis_encodes(xray):
    flat = np.full((128, 128), 100, np.uint8)  # fails the quality gate
    d = xray.diagnose(flat)
    assert d.status == "indeterminate" and d.label is None
    sr = read(_dicom.encode_sr(d, None, deidentify=True))
    items = content(sr)
    assert items["Normality"] == "Normality Undetermined" and "Finding" not in items
    assert items["Reason for indeterminate result"] == "Insufficient quality for interpretation"
    assert items["Image quality issue"].startswith(("Blank", "Low contrast", "Image quality"))
