"""De-identification (``medimg_edge.daemon._deid``): PS3.15 Basic Application Level
Confidentiality Profile, recursive through sequences, private tags, consistent UIDs, and a
PHI canary that must be found nowhere in the output bytes."""

from __future__ import annotations

import io
import logging
import re

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.datadict import tag_for_keyword  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402

from medimg_edge import io as mio  # noqa: E402
from medimg_edge.daemon import _deid  # noqa: E402

deidentify = _deid.deidentify
SALT = b"test-salt"
CANARY = {
    "name": "DOE^JOHN",
    "id": "PHI-12345",
    "birth": "19AB0230",  # a malformed date
    "other": "PHI-OTHER-777",
    "institution": "DOE MEMORIAL",
    "serial": "SN-DOE-99",
    "accession": "ACC-DOE-1",
    "private": "DOE PRIVATE NOTE",
    "nested": "ROE^JANE",
    "comment": "patient Johnny",
}


def bundled(name):
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return path


def canary_dataset():
    """CT_small.dcm carrying the PHI canary: names, IDs, a bad date, private tags and a
    name nested two sequences deep."""
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.PatientName = CANARY["name"]
    ds.PatientID = CANARY["id"]
    ds.PatientBirthDate = CANARY["birth"]
    ds.OtherPatientIDs = CANARY["other"]
    ds.InstitutionName = CANARY["institution"]
    ds.InstitutionAddress = "1 DOE STREET"
    ds.DeviceSerialNumber = CANARY["serial"]
    ds.AccessionNumber = CANARY["accession"]
    ds.ImageComments = CANARY["comment"]
    ds.StudyDescription = "DOE^JOHN follow-up"
    ds.ReferringPhysicianName = "DOE^DOCTOR"
    ds.add_new((0x0011, 0x0010), "LO", "ACME 1.0")
    ds.add_new((0x0011, 0x1001), "LO", CANARY["private"])
    ds.add_new((0x0011, 0x1002), "LO", "KEEP ME")
    inner = Dataset()
    inner.PersonName = CANARY["nested"]
    inner.add_new((0x0013, 0x0010), "LO", "ACME 1.0")
    inner.add_new((0x0013, 0x1001), "LO", CANARY["private"])
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.ContentCreatorName = CANARY["nested"]
    item.ReferencedStudySequence = [inner]  # X/Z: emptied
    item.add_new((0x0013, 0x0010), "LO", "ACME 1.0")
    item.add_new((0x0013, 0x1001), "LO", CANARY["private"])
    ds.ReferencedImageSequence = [item]
    other = Dataset()
    other.ObserverType = "PSN"
    other.PersonName = CANARY["nested"]
    ds.AnatomicRegionSequence = [other]  # a sequence the table does not list
    return ds


def to_bytes(ds):
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def secrets_of(ds):
    uids = [
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        ds.FrameOfReferenceUID,
    ]
    return [*CANARY.values(), "DOE", "JOHN", *uids]


def test_canary_nowhere_in_the_output():
    ds = canary_dataset()
    secrets = secrets_of(ds)
    raw = to_bytes(ds)
    assert all(s.encode() in raw for s in secrets[:4])  # the canary is really there
    out = deidentify(ds, salt=SALT)
    blob = to_bytes(out)
    for secret in secrets:
        assert secret.encode() not in blob, secret
        assert secret.encode("utf-16-le") not in blob, secret
    # the input is not modified
    assert ds.PatientName == CANARY["name"]


def test_profile_actions():
    ds = canary_dataset()
    out = deidentify(ds, salt=SALT)
    # Z: present, empty
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert keyword in out and out[keyword].is_empty, keyword
    # X: removed
    for keyword in ("OtherPatientIDs", "InstitutionAddress", "ImageComments", "StudyDescription"):
        assert keyword not in out, keyword
    # D (from X/Z/D): a dummy
    assert out.InstitutionName == "ANONYMIZED" and out.DeviceSerialNumber == "ANONYMIZED"
    # U: replaced consistently, also inside sequences
    new_sop = _deid.map_uid(ds.SOPInstanceUID, SALT)
    assert out.SOPInstanceUID == new_sop
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new_sop
    assert out.file_meta.MediaStorageSOPInstanceUID == new_sop
    # standard UIDs are kept
    assert out.SOPClassUID == ds.SOPClassUID
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == ds.SOPClassUID
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    # recursive: names in nested sequences emptied / removed
    assert out.ReferencedImageSequence[0]["ContentCreatorName"].is_empty
    assert out.AnatomicRegionSequence[0].PersonName == "ANONYMOUS"  # D in Table E.1-1
    assert out.ReferencedImageSequence[0].ReferencedStudySequence == []  # X/Z -> Z
    # no private element anywhere
    assert not any(elem.tag.is_private for elem in out.iterall())
    # the profile is declared
    assert out.PatientIdentityRemoved == "YES"
    code = out.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert "ContentSequence" not in deidentify(pydicom.dcmread(bundled("test-SR.dcm")))


def test_keep_private_allow_list():
    out = deidentify(canary_dataset(), keep_private=[(0x0011, 0x1002)], salt=SALT)
    assert out[0x0011, 0x1002].value == "KEEP ME"
    assert out[0x0011, 0x0010].value == "ACME 1.0"  # its private creator stays with it
    assert (0x0011, 0x1001) not in out
    assert (0x0013, 0x1001) not in out.ReferencedImageSequence[0]  # nested: removed
    assert CANARY["private"].encode() not in to_bytes(out)


def test_uid_mapping():
    uid = "1.2.3.4.5.6.7.8.9"
    a = _deid.map_uid(uid, SALT)
    assert a == _deid.map_uid(uid, SALT) != _deid.map_uid(uid, b"other salt")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", a) and len(a) <= 64
    assert _deid.map_uid(uid + ".1", SALT) != a
    assert pydicom.uid.UID(a).is_valid
    # without a salt: the per-process salt, consistent within the process
    assert _deid.map_uid(uid) == _deid.map_uid(uid) != a
    ds = canary_dataset()
    one, two = deidentify(ds, salt=SALT), deidentify(ds, salt=SALT)
    assert one.StudyInstanceUID == two.StudyInstanceUID != ds.StudyInstanceUID
    kept = deidentify(ds, salt=SALT, replace_uids=False)
    assert kept.StudyInstanceUID == ds.StudyInstanceUID and kept["PatientName"].is_empty


def test_burned_in_annotation_is_not_called_removed():
    ds = canary_dataset()
    ds.BurnedInAnnotation = "YES"
    assert deidentify(ds).PatientIdentityRemoved == "NO"


def test_clean_structured_content_keeps_the_tree():
    sr = pydicom.dcmread(bundled("test-SR.dcm"))
    out = deidentify(sr, clean_structured_content=True, salt=SALT)
    assert "ContentSequence" in out
    values = [e.value for e in out.iterall() if e.VR == "PN"]
    assert all(v in ("", None, "ANONYMOUS") for v in values)
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113104"]


def test_table_is_well_formed():
    allowed = {"X", "Z", "D", "U", "K", "C", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    for keyword, action in _deid.BASIC_PROFILE.items():
        assert tag_for_keyword(keyword) is not None, keyword
        assert action in allowed, (keyword, action)
    # the common PHI is covered
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientAddress",
        "InstitutionName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "AccessionNumber",
        "StudyDate",
        "StudyInstanceUID",
        "SOPInstanceUID",
        "ImageComments",
        "DeviceSerialNumber",
        "StationName",
    ):
        assert keyword in _deid.BASIC_PROFILE, keyword


BUNDLED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "test-SR.dcm",
    "nested_priv_SQ.dcm",
    "priv_SQ.dcm",
    "examples_overlay.dcm",
    "examples_ybr_color.dcm",
    "waveform_ecg.dcm",
    "reportsi.dcm",
]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files(name):
    ds = pydicom.dcmread(bundled(name), force=True)
    out = deidentify(ds, salt=SALT)
    blob = to_bytes(out)
    back = pydicom.dcmread(io.BytesIO(blob), force=True)
    assert back.PatientIdentityRemoved in ("YES", "NO")
    for elem in back.iterall():
        assert not elem.tag.is_private, elem.tag
        if elem.VR == "PN":
            assert str(elem.value) in ("", "ANONYMOUS"), elem
        if elem.VR in ("DA", "DT") and elem.value:
            assert str(elem.value).startswith("1900"), elem
        assert not (0x6000 <= elem.tag.group <= 0x60FF and elem.tag.element == 0x3000)
    for keyword in ("PatientName", "PatientID"):
        value = str(ds.get(keyword, "") or "")
        if len(value) > 3:
            assert value.encode() not in blob, keyword
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword in ds:
            assert str(ds[keyword].value).encode() not in blob


def test_no_phi_in_logs_or_warnings(tmp_path, caplog, recwarn):
    ds = canary_dataset()
    ds.StudyInstanceUID = "1.2.DOE.JOHN"  # invalid UI: pydicom warns on reading, quoting it
    path = tmp_path / "x.dcm"
    ds.save_as(path)  # building the canary itself makes pydicom warn: start afresh
    caplog.clear()
    recwarn.clear()
    caplog.set_level(logging.DEBUG)
    got = mio.read_input(path)
    assert got.dataset.StudyInstanceUID == "1.2.DOE.JOHN"  # it was read
    out = deidentify(got.dataset)
    to_bytes(out)
    text = caplog.text + " ".join(str(w.message) for w in recwarn)
    for secret in (*CANARY.values(), "DOE"):
        assert secret not in text


def test_rejects_non_datasets():
    with pytest.raises(TypeError):
        deidentify({"PatientName": "x"})
