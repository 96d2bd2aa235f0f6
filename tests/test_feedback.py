"""Reviewer feedback (issue 18 item 2): labels recorded in the daemon's ledger, corrected,
imported from CSV, exported as a training folder, through a real daemon run.

One daemon run (module fixture) diagnoses a few phantoms (PNG, a DICOM with patient data in
its header, a multi-frame cine); every test works on its own copy of that outbox.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pytest.importorskip("pydicom")

from daemon_helpers import FAST, DaemonProc, dicom_bytes, make_dirs, png_bytes, results
from medimg_edge import InvalidInputError
from medimg_edge.daemon import _feedback as feedback

US_LABELS = ("normal", "cyst", "hypoechoic", "hyperechoic")
PATIENT = "SECRETSURNAME^GIVENNAME"
PATIENT_ID = "PID98765432"


def _run_daemon(inbox: Path, outbox: Path, *extra: str) -> None:
    d = DaemonProc(inbox, outbox, *FAST, "--exit-when-idle", *extra).start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=300) == 0, d.log_text()


@pytest.fixture(scope="module")
def daemon_outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An outbox after one real daemon run over 4 PNGs, a DICOM with a patient's name and
    id in its header and a 5-frame cine DICOM."""
    inbox, outbox = make_dirs(tmp_path_factory.mktemp("daemon"))
    for i in range(4):
        (inbox / f"{PATIENT.split('^')[0]}_{i}.png").write_bytes(png_bytes(i, 96))
    (inbox / f"{PATIENT}.dcm").write_bytes(dicom_bytes(name=PATIENT, patient_id=PATIENT_ID))
    (inbox / "cine.dcm").write_bytes(
        dicom_bytes(name=PATIENT, patient_id=PATIENT_ID, frames=5, seed=3)
    )
    _run_daemon(inbox, outbox)
    assert len(results(outbox)) == 6
    return outbox


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
    """Every result (scores or not) accepts exactly its model's labels."""
    for rid in _ids(outbox):
        for lab in US_LABELS:
            feedback.record(outbox, rid, lab)
        with pytest.raises(InvalidInputError) as err:
            feedback.record(outbox, rid, "nodule")  # the X-ray model's, not this one's
        assert err.value.code == "invalid_label"
        assert "normal, cyst, hypoechoic, hyperechoic" in str(err.value)
    assert set(feedback.labels(outbox).values()) == {"hyperechoic"}


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
