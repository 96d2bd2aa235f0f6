"""The daemon as a DICOM node (issue 16 items 1, 2): the C-STORE listener (``_scp.py``) and
forwarding of the results to a PACS (``_forward.py``), with real peers only.

SCUs: dcmtk's ``storescu`` (Debian package ``dcmtk``) and pynetdicom.  PACS: dcmtk's
``storescp`` or a pynetdicom SCP in the test process that counts every reception per SOP
Instance UID.  Inputs: pydicom's bundled ultrasound files (uncompressed, JPEG baseline
multi-frame, JPEG 2000), its Secondary Captures (RLE, JPEG lossless, JPEG-LS) and
``me.synth`` DX phantoms re-labelled CR / DX for processing.  Every file is sent under a
fresh SOP Instance UID (pydicom's test files share some).  The daemon runs as a real
process (``tests/daemon_helpers.py``) and is killed with ``SIGKILL`` mid-association and
mid-forward.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pydicom = pytest.importorskip("pydicom")
pynetdicom = pytest.importorskip("pynetdicom")

import medimg_edge as me  # noqa: E402
from daemon_helpers import FAST, DaemonProc, make_dirs, reasons, results, wait_for  # noqa: E402
from dicom_helpers import bundled, us_dataset  # noqa: E402
from medimg_edge.daemon import ConfigError, load_config  # noqa: E402
from medimg_edge.daemon._scp import _check_dataset, _Refused, received_key  # noqa: E402

US = "1.2.840.10008.5.1.4.1.1.6.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"

#: bundled pydicom files and the dcmtk ``storescu`` option that proposes their transfer
#: syntax (storescu proposes one compression family per run)
BUNDLED = {
    "examples_rgb_color.dcm": "-x=",  # US, Explicit VR Little Endian
    "examples_palette.dcm": "-x=",  # US, PALETTE COLOR
    "examples_jpeg2k.dcm": "-xv",  # US, JPEG 2000 lossless
    "examples_ybr_color.dcm": "-xy",  # US multi-frame (30), JPEG baseline
    "SC_rgb_rle.dcm": "-xr",  # SC, RLE lossless
    "SC_rgb_jpeg_gdcm.dcm": "-xs",  # SC, JPEG lossless SV1
    "SC_rgb_jls_lossy_line.dcm": "-xu",  # SC, JPEG-LS near-lossless
    "image_dfl.dcm": "-xd",  # SC, Deflated Explicit VR Little Endian
    "JPEG2000.dcm": "-xw",  # SC of an NM image, JPEG 2000 (lossy): unsupported_modality
    "JPGExtended.dcm": "-xx",  # SC of an NM image, JPEG extended 12 bit: unsupported_modality
}


# -- peers ---------------------------------------------------------------------------------
def dcmtk(tool: str) -> str:
    """Path of a dcmtk tool (pynetdicom installs scripts of the same names in the venv)."""
    for folder in ("/usr/bin", "/usr/local/bin", *os.environ.get("PATH", "").split(os.pathsep)):
        path = Path(folder) / tool
        if path.is_file() and os.access(path, os.X_OK):
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return str(path)
    raise AssertionError(f"dcmtk's {tool} is needed: apt-get install dcmtk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pacs:
    """A pynetdicom C-STORE SCP (the PACS) that counts every reception per SOP Instance
    UID; ``delay`` seconds per store (to kill the daemon mid-forward)."""

    def __init__(
        self,
        port: int,
        *,
        ae_title: str = "PACS",
        delay: float = 0.0,
        status: int = 0x0000,
        tls: Any = None,
    ) -> None:
        self.port, self.ae_title, self.delay = port, ae_title, delay
        self.status, self.tls = status, tls
        self.received: Counter[str] = Counter()
        self.classes: dict[str, str] = {}
        self.entered = 0
        self._lock = threading.Lock()
        self._server: Any = None

    def _store(self, event: Any) -> int:
        with self._lock:
            self.entered += 1
        if self.delay:
            time.sleep(self.delay)
        ds = event.dataset
        with self._lock:
            self.received[str(ds.SOPInstanceUID)] += 1
            self.classes[str(ds.SOPInstanceUID)] = str(ds.SOPClassUID)
        return self.status

    def start(self) -> Pacs:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            ComprehensiveSRStorage,
            EnhancedSRStorage,
            SecondaryCaptureImageStorage,
        )

        ae = AE(ae_title=self.ae_title)
        for cx in (
            ComprehensiveSRStorage,
            EnhancedSRStorage,
            SecondaryCaptureImageStorage,
            "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        ):
            ae.add_supported_context(cx)
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            ssl_context=self.tls,
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def fresh_copy(src: str | Path, dst: Path, **attrs: Any) -> str:
    """``src`` written to ``dst`` under a new SOP Instance UID (pixel data untouched);
    returns the UID."""
    from pydicom.uid import generate_uid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        for k, v in attrs.items():
            setattr(ds, k, v)
        if "SOPClassUID" in attrs:
            ds.file_meta.MediaStorageSOPClassUID = attrs["SOPClassUID"]
        ds.save_as(dst, enforce_file_format=True)
    return str(uid)


def synth_xray(folder: Path, n: int) -> list[Path]:
    """``n`` synthetic DX phantoms (``me.synth.write``), 256 x 256."""
    samples = me.synth.generate("xray", n, seed=16, size=256)
    me.synth.write(samples, folder, fmt="dcm")
    return sorted(folder.rglob("*.dcm"))


_STARTED: list[DaemonProc] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """Kill every daemon a test left running (a failed assertion before its stop)."""
    yield
    for d in _STARTED:
        if d.proc is not None and d.proc.poll() is None:
            d.kill9()
    _STARTED.clear()


def node(tmp_path: Path, *extra: str, name: str = "outbox") -> DaemonProc:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    outbox = tmp_path / name
    port = [] if "--dicom-port" in extra else ["--dicom-port", "0"]
    d = DaemonProc(
        inbox, outbox, *FAST, "--workers", "1", "--sr", "--health-port", "0", *port, *extra
    )
    _STARTED.append(d)
    return d


def dicom_port(d: DaemonProc) -> int:
    doc = d.wait_ready()
    assert doc["dicom"] is not None, doc
    host, port, ae = doc["dicom"]
    assert host == "127.0.0.1" and ae
    return int(port)


def storescu(port: int, files: list[Path], ts_option: str = "-x=", *extra: str) -> int:
    cmd = [dcmtk("storescu"), "-R", ts_option, "-aet", "MODALITY", "-aec", "MEDIMG", *extra]
    cmd += ["127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, timeout=120).returncode


def outcome_keys(outbox: Path) -> Counter[str]:
    """Instance key (SHA-256 of the SOP Instance UID) of every result: the JSON records
    and the originals quarantined in ``failed/``."""
    keys: Counter[str] = Counter(r["input"]["instance_key"] for r in results(outbox))
    for reason in reasons(outbox):
        original = next((outbox / "failed").glob(f"{reason['id']}.*[!n]"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keys[received_key(str(pydicom.dcmread(original).SOPInstanceUID))] += 1
    return keys


def wait_outcomes(d: DaemonProc, n: int) -> Counter[str]:
    wait_for(lambda: sum(outcome_keys(d.outbox).values()) >= n, f"{n} results")
    return outcome_keys(d.outbox)


def assoc(
    port: int,
    contexts: list[str],
    *,
    calling: str = "PYNETDICOM",
    called: str = "MEDIMG",
    tls: Any = None,
) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in contexts:
        ae.add_requested_context(cx)
    return ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls)


def phantoms(n: int, start: int = 0) -> list[Any]:
    """``n`` different 96 x 96 ultrasound datasets (fresh UIDs)."""
    import numpy as np

    return [
        us_dataset(np.random.default_rng(start + i).integers(30, 220, (96, 96), np.uint8))
        for i in range(n)
    ]


def send_all(port: int, datasets: list[Any]) -> None:
    """One pynetdicom association storing ``datasets``; each must succeed."""
    a = assoc(port, [US])
    assert a.is_established
    for ds in datasets:
        assert a.send_c_store(ds).Status == 0x0000
    a.release()


@pytest.fixture
def sent(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "send"
    folder.mkdir()
    yield folder


# -- receiving ----------------------------------------------------------------------------
def test_dcmtk_storescu_every_transfer_syntax_one_result_each(tmp_path: Path, sent: Path) -> None:
    """dcmtk storescu sends the bundled ultrasound and SC files in every served transfer
    syntax, and synth DX re-labelled CR and DX-for-processing: one result per instance."""
    d = node(tmp_path, "--allow-ae", "MODALITY", "OTHER").start()
    port = dicom_port(d)
    uids: dict[str, str] = {}
    try:
        for name, option in BUNDLED.items():
            dst = sent / name
            uids[fresh_copy(bundled(name), dst)] = name
            assert storescu(port, [dst], option) == 0, name
        xray = synth_xray(tmp_path / "synth", 3)
        dx = [sent / f"dx{i}.dcm" for i in range(3)]
        uids[fresh_copy(xray[0], dx[0])] = "DX"
        uids[fresh_copy(xray[1], dx[1], SOPClassUID=CR, Modality="CR")] = "CR"
        uids[fresh_copy(xray[2], dx[2], SOPClassUID=DX_PROCESSING)] = "DX processing"
        assert storescu(port, dx) == 0
        # JPEG-LS lossless (none is bundled): an ultrasound phantom compressed by dcmtk
        (us,) = phantoms(1, start=500)
        raw, jls = sent / "us_raw.dcm", sent / "us_jls.dcm"
        us.save_as(raw, enforce_file_format=True)
        subprocess.run([dcmtk("dcmcjpls"), str(raw), str(jls)], check=True, capture_output=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert pydicom.dcmread(jls).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
        uids[str(us.SOPInstanceUID)] = "JPEG-LS lossless"
        assert storescu(port, [jls], "-xt") == 0
        keys = wait_outcomes(d, len(uids))
        time.sleep(1.0)  # nothing more arrives
        keys = outcome_keys(d.outbox)
        assert keys == Counter({received_key(u): 1 for u in uids}), keys
        diagnosed = {r["input"]["instance_key"]: r for r in results(d.outbox)}
        by_name = {name: diagnosed.get(received_key(u)) for u, name in uids.items()}
        for name in (
            "examples_rgb_color.dcm",
            "examples_jpeg2k.dcm",
            "examples_ybr_color.dcm",
            "JPEG-LS lossless",
        ):
            got = by_name[name]
            assert got is not None and got["input"]["modality"] == "ultrasound", name
            assert (d.outbox / f"{got['id']}.sr.dcm").is_file()
        assert by_name["examples_ybr_color.dcm"]["input"]["frames_in_file"] == 30
        assert by_name["image_dfl.dcm"] is not None  # deflated SC, diagnosed
        codes = {r["code"] for r in reasons(d.outbox)}
        assert codes == {"unsupported_modality"}, codes  # the two NM images, one record each
        for name in ("DX", "CR", "DX processing"):
            got = by_name[name]
            assert got is not None and got["input"]["modality"] == "xray", name
        # file names the daemon created carry no UID and no original name
        for p in (d.outbox / "processed").iterdir():
            assert re.fullmatch(r"[0-9a-f]{8}-\d{8}\.dcm", p.name), p.name
        assert not any((d.inbox / "dicom").iterdir())
        code, body = d.http("/metrics")
        assert code == 200
        assert f"medimg_edge_dicom_received_total {float(len(uids))}" in body.decode()
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    for u in uids:  # no UID in the logs
        assert u not in d.log_text()


def test_statuses_refusals_and_duplicates(tmp_path: Path) -> None:
    """pynetdicom SCU: success, a re-sent SOP Instance UID acknowledged without a second
    result, cannot-understand for short pixel data, SOP classes not served negotiated
    away, unknown calling / called AE titles rejected."""
    import numpy as np

    d = node(tmp_path, "--allow-ae", "PYNETDICOM", "--ae-title", "EDGE1").start()
    port = dicom_port(d)
    try:
        ds = us_dataset(np.full((64, 64), 90, np.uint8), PatientName="DOE^JOHN")
        short = us_dataset(np.full((64, 64), 90, np.uint8))
        short.PixelData = short.PixelData[:100]
        a = assoc(port, [US, CT], called="EDGE1")
        assert a.is_established
        accepted = {str(cx.abstract_syntax) for cx in a.accepted_contexts}
        assert accepted == {US}  # CT Image Storage is not served: negotiated away
        assert a.send_c_store(ds).Status == 0x0000
        assert a.send_c_store(ds).Status == 0x0000  # the same instance again
        rsp = a.send_c_store(short)
        assert 0xC000 <= rsp.Status <= 0xC0FF
        with pytest.raises(ValueError):  # no presentation context for CT
            a.send_c_store(pydicom.dcmread(bundled("CT_small.dcm")))
        a.release()
        assert not assoc(port, [CT], called="EDGE1").is_established  # nothing served
        assert assoc(port, [US], calling="INTRUDER", called="EDGE1").is_rejected
        assert assoc(port, [US], called="MEDIMG").is_rejected  # not our AE title
        keys = wait_outcomes(d, 1)
        time.sleep(1.0)
        assert outcome_keys(d.outbox) == Counter({received_key(str(ds.SOPInstanceUID)): 1})
        assert len(results(d.outbox)) == 1
        _, body = d.http("/metrics")
        assert 'medimg_edge_dicom_refused_total{status="0xC003"} 1.0' in body.decode()
        assert keys
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    assert "DOE^JOHN" not in d.log_text()


def test_paused_intake_answers_out_of_resources(tmp_path: Path) -> None:
    """min_free_mb above the free space: intake is paused and every C-STORE is answered
    0xA700 (out of resources); nothing is written to the inbox."""
    import numpy as np

    d = node(tmp_path, "--min-free-mb", str(float(1 << 39))).start()
    port = dicom_port(d)
    try:
        wait_for(lambda: (d.status() or {}).get("paused") is True, "paused")
        a = assoc(port, [US])
        assert a.is_established
        assert a.send_c_store(us_dataset(np.zeros((64, 64), np.uint8))).Status == 0xA700
        a.release()
        assert [p for p in (d.inbox / "dicom").iterdir()] == []
    finally:
        assert d.stop() == 0


def test_check_dataset_refusals() -> None:
    """The parse checks behind the cannot-understand / does-not-match statuses."""
    import io

    import numpy as np

    ds = us_dataset(np.zeros((32, 32), np.uint8))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert _check_dataset(data, US) == str(ds.SOPInstanceUID)
    with pytest.raises(_Refused) as e:
        _check_dataset(data, SC)
    assert e.value.status == 0xA900
    with pytest.raises(_Refused) as e:
        _check_dataset(b"\0" * 128 + b"DICM" + b"\xff" * 64, US)
    assert 0xC000 <= e.value.status <= 0xC0FF
    raw = Path(bundled("SC_rgb_rle.dcm")).read_bytes()
    broken = raw[:-200]  # encapsulated pixel data cut short
    with pytest.raises(_Refused) as e:
        _check_dataset(broken, SC)
    assert 0xC000 <= e.value.status <= 0xC0FF


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (openssl) and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    cmd += ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    subprocess.run([*cmd, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_listener(tmp_path: Path) -> None:
    """--tls-cert / --tls-key: a pynetdicom SCU over TLS stores; a plain one cannot."""
    import ssl

    import numpy as np

    cert, key = self_signed(tmp_path)
    d = node(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)).start()
    port = dicom_port(d)
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ds = us_dataset(np.full((64, 64), 120, np.uint8))
        a = assoc(port, [US], tls=(ctx, "localhost"))
        assert a.is_established
        assert a.send_c_store(ds).Status == 0x0000
        a.release()
        plain = assoc(port, [US])
        assert not plain.is_established
        wait_outcomes(d, 1)
    finally:
        assert d.stop() == 0


def test_kill9_mid_association_exactly_one_result(tmp_path: Path, sent: Path) -> None:
    """The daemon is killed with SIGKILL while a pynetdicom association is open (after
    some instances were acknowledged) and again while dcmtk storescu is sending; the
    modality then re-sends everything: every instance gets exactly one result."""
    datasets = phantoms(24)
    files = []
    for i, ds in enumerate(datasets):
        files.append(sent / f"u{i}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    uids = {str(ds.SOPInstanceUID) for ds in datasets}
    d = node(tmp_path).start()
    port = dicom_port(d)
    a = assoc(port, [US])
    assert a.is_established
    for ds in datasets[:4]:
        assert a.send_c_store(ds).Status == 0x0000
    d.kill9()  # mid-association
    try:
        rsp = a.send_c_store(datasets[4])
    except RuntimeError:  # the association is gone
        rsp = pydicom.Dataset()
    assert "Status" not in rsp  # no response: the modality will send it again
    a.abort()
    # restart; storescu sends everything again and is killed part-way
    d.start()
    folder = d.inbox / "dicom"

    def arrived() -> int:
        return len(list(folder.glob("*.dcm"))) + len(list((d.outbox / "processed").iterdir()))

    port = dicom_port(d)
    before = arrived()
    proc = subprocess.Popen(
        [
            dcmtk("storescu"),
            "-aet",
            "MODALITY",
            "-aec",
            "MEDIMG",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < end:  # kill after a few new instances
        if arrived() >= before + 3:
            break
        time.sleep(0.001)
    d.kill9()
    assert proc.wait(timeout=60) != 0  # storescu was cut off mid-association
    d.start()
    port = dicom_port(d)
    assert storescu(port, files) == 0  # the modality's retry of the whole study
    try:
        keys = wait_outcomes(d, len(uids))
        time.sleep(1.0)
        assert outcome_keys(d.outbox) == Counter({received_key(u): 1 for u in uids})
        assert keys
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]


# -- forwarding ---------------------------------------------------------------------------
def _sr_uids(outbox: Path) -> dict[str, str]:
    out = {}
    for p in outbox.glob("*.sr.dcm"):
        out[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p.name
    return out


def _forward_status(d: DaemonProc, prefix: str | None = None) -> dict[str, Any]:
    """The /healthz entry of the destination whose name starts with ``prefix`` (None: the
    only destination)."""
    code, body = d.http("/healthz")
    assert code == 200
    fwd = json.loads(body)["forward"]
    if prefix is None:
        assert len(fwd) == 1
        return dict(fwd[0])
    return dict(next(f for f in fwd if f["destination"].startswith(prefix)))


def _config(tmp_path: Path, pacs_port: int, extra: str = "") -> Path:
    cfg = tmp_path / "watch.toml"
    cfg.write_text(
        "forward_retry_seconds = 0.1\nforward_backoff_max_seconds = 0.5\n"
        + extra
        + f'[[forward]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = {pacs_port}\n'
    )
    return cfg


def test_forward_pacs_down_then_up_each_sr_once(tmp_path: Path, sent: Path) -> None:
    """The PACS is down when results are made: they wait in the queue (/healthz and
    /metrics show the depth and the failures); when it comes up each SR arrives once;
    down and up again with new results: the same."""

    pacs_port = free_port()
    d = node(tmp_path, "--config", str(_config(tmp_path, pacs_port)), "--dicom-port", "0").start()
    port = dicom_port(d)
    pacs = Pacs(pacs_port)
    try:
        send_all(port, phantoms(4))
        wait_for(lambda: len(_sr_uids(d.outbox)) == 4, "4 SRs")
        wait_for(lambda: _forward_status(d)["pending"] == 4, "4 queued")
        wait_for(lambda: _forward_status(d)["consecutive_failures"] >= 2, "failed attempts")
        _, body = d.http("/metrics")
        text = body.decode()
        dest = f"PACS@127.0.0.1:{pacs_port}"
        assert f'medimg_edge_forward_queue_depth{{destination="{dest}"}} 4.0' in text
        assert "medimg_edge_forward_failures_total" in text
        pacs.start()
        wait_for(lambda: sum(pacs.received.values()) >= 4, "PACS received 4")
        wait_for(lambda: _forward_status(d)["pending"] == 0, "queue empty")
        pacs.stop()
        send_all(port, phantoms(3, start=10))
        wait_for(lambda: _forward_status(d)["pending"] == 3, "3 queued")
        time.sleep(1.0)  # several attempts against the dead port
        pacs.start()
        wait_for(lambda: _forward_status(d)["pending"] == 0, "queue empty again")
        time.sleep(0.5)
        srs = _sr_uids(d.outbox)
        assert len(srs) == 7
        assert pacs.received == Counter(dict.fromkeys(srs, 1)), pacs.received
        st = _forward_status(d)
        assert st["sent"] == 7 and st["failed"] == 0 and st["consecutive_failures"] == 0
    finally:
        pacs.stop()
        assert d.stop() == 0, d.log_text()[-3000:]


def test_forward_kill9_mid_forward_dcmtk_storescp(tmp_path: Path, sent: Path) -> None:
    """The PACS takes 0.4 s per object; the daemon is killed with SIGKILL mid-forward and
    restarted: every SR reaches the PACS; only the object in flight at the kill can come
    twice (same SOP Instance UID, which the PACS keeps once).  Then dcmtk's storescp as
    the PACS of a second daemon: each SR stored once."""

    pacs_port = free_port()
    pacs = Pacs(pacs_port, delay=0.4).start()
    d = node(tmp_path, "--config", str(_config(tmp_path, pacs_port)), "--dicom-port", "0").start()
    port = dicom_port(d)
    try:
        datasets = phantoms(6)
        send_all(port, datasets)
        wait_for(lambda: pacs.entered >= 2, "forwarding under way")
        d.kill9()
        d.start()
        wait_for(lambda: len(pacs.received) >= 6, "every SR at the PACS")
        wait_for(lambda: _forward_status(d)["pending"] == 0, "queue empty")
        time.sleep(0.5)
        srs = _sr_uids(d.outbox)
        assert len(srs) == 6 and set(pacs.received) == set(srs)
        assert sum(pacs.received.values()) <= 7, pacs.received  # at most the one in flight
        assert outcome_keys(d.outbox) == Counter(
            {received_key(str(ds.SOPInstanceUID)): 1 for ds in datasets}
        )
    finally:
        pacs.stop()
        assert d.stop() == 0, d.log_text()[-3000:]
    # dcmtk storescp as the PACS
    store = tmp_path / "storescp"
    store.mkdir()
    scp_port = free_port()
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "-od", str(store), "-uf", "+xa", str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        d2 = node(
            tmp_path, "--forward", f"PACS@127.0.0.1:{scp_port}", "--dicom-port", "0", name="outbox2"
        ).start()
        port = dicom_port(d2)
        try:
            send_all(port, phantoms(1, start=100))
            wait_for(lambda: len(list(store.iterdir())) >= 1, "storescp received")
            wait_for(lambda: _forward_status(d2)["pending"] == 0, "sent")
            (sr,) = _sr_uids(d2.outbox)
            (got,) = list(store.iterdir())
            assert str(pydicom.dcmread(got).SOPInstanceUID) == sr
        finally:
            assert d2.stop() == 0
    finally:
        scp.terminate()
        scp.wait(timeout=30)


# -- configuration ------------------------------------------------------------------------
def test_config_keys(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    cfg = tmp_path / "w.toml"
    cfg.write_text(
        'dicom_port = 11112\nae_title = "EDGE"\nallow_ae = ["US1", "US2"]\n'
        'dicom_host = "0.0.0.0"\n'
        '[[forward]]\nae_title = "PACS"\nhost = "pacs.local"\nport = 104\nsc = false\n'
        '[[forward]]\nae_title = "ARCH"\nhost = "10.0.0.9"\nport = 11112\ncalling_ae = "EDGE2"\n'
    )
    c = load_config(cfg, {"inbox": inbox, "outbox": outbox})
    assert (c.dicom_port, c.ae_title, c.allow_ae, c.dicom_host) == (
        11112,
        "EDGE",
        ("US1", "US2"),
        "0.0.0.0",
    )
    assert [f.name for f in c.forward] == ["PACS@pacs.local:104", "ARCH@10.0.0.9:11112"]
    assert c.forward[0].sc is False and c.forward[1].calling_ae == "EDGE2"
    c = load_config(None, {"inbox": inbox, "outbox": outbox, "forward": ["P@127.0.0.1:4242"]})
    assert c.forward[0].port == 4242
    stow = {"url": "https://user:secret@pacs.local:8443/dicom-web/", "sc": False}
    c = load_config(None, {"inbox": inbox, "outbox": outbox, "forward": [stow]})
    assert c.forward[0].url == "https://user:secret@pacs.local:8443/dicom-web"
    assert c.forward[0].name == "stow:https://pacs.local:8443/dicom-web"  # no credentials
    for bad, key in [
        ({"ae_title": "A" * 17}, "ae_title"),
        ({"ae_title": "A\\B"}, "ae_title"),
        ({"allow_ae": [""]}, "allow_ae"),
        ({"dicom_port": 70000}, "dicom_port"),
        ({"dicom_host": "example.com"}, "dicom_host"),
        ({"forward": ["PACS@host"]}, "forward"),
        ({"forward": [{"ae_title": "P", "host": "h", "port": 1, "colour": 1}]}, "forward"),
        ({"dicom_folder": "../x"}, "dicom_folder"),
        ({"forward": [{"url": "ftp://pacs/dicom-web"}]}, "forward"),
        ({"forward": [{"url": "https://pacs/dicom-web", "ae_title": "X"}]}, "forward"),
        ({"tls_key": str(cfg)}, "tls_key"),
        ({"tls_cert": str(tmp_path / "missing.pem")}, "tls_cert"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(None, {"inbox": inbox, "outbox": outbox, **bad})


def test_port_in_use_is_a_startup_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = node(tmp_path, "--dicom-port", str(port)).start(wait=False)
        assert d.proc is not None
        assert d.proc.wait(timeout=120) == 2
    assert "startup_failed" in d.log_text()


def test_forward_tls_and_refused_objects(tmp_path: Path) -> None:
    """Two destinations: a PACS over TLS (``tls = true``, its CA) gets each SR once; a
    PACS that refuses every object (0xC000) is tried forward_max_attempts times, then the
    object is given up (``failed`` in /healthz, counted in /metrics), nothing is lost for
    the other destination."""
    import ssl

    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    good, bad = free_port(), free_port()
    cfg = tmp_path / "watch.toml"
    cfg.write_text(
        "forward_retry_seconds = 0.05\nforward_backoff_max_seconds = 0.2\n"
        "forward_max_attempts = 2\n"
        f'[[forward]]\nae_title = "SECURE"\nhost = "127.0.0.1"\nport = {good}\n'
        f'tls = true\ntls_ca = "{cert}"\n'
        f'[[forward]]\nae_title = "PICKY"\nhost = "127.0.0.1"\nport = {bad}\n'
    )
    secure = Pacs(good, ae_title="SECURE", tls=ctx).start()
    picky = Pacs(bad, ae_title="PICKY", status=0xC000).start()
    d = node(tmp_path, "--config", str(cfg)).start()
    port = dicom_port(d)

    try:
        send_all(port, phantoms(2, start=200))
        wait_for(lambda: _forward_status(d, "SECURE")["sent"] == 2, "sent over TLS")
        wait_for(lambda: _forward_status(d, "PICKY")["failed"] == 2, "refused objects given up")
        srs = _sr_uids(d.outbox)
        assert secure.received == Counter(dict.fromkeys(srs, 1))
        assert picky.received == Counter(dict.fromkeys(srs, 2))  # forward_max_attempts
        assert (
            _forward_status(d, "PICKY")["pending"] == 0
            and _forward_status(d, "SECURE")["failed"] == 0
        )
        _, body = d.http("/metrics")
        assert (
            f'medimg_edge_forward_failures_total{{destination="PICKY@127.0.0.1:{bad}",'
            'reason="0xC000"} 4.0' in body.decode()  # 2 objects x 2 attempts
        )
        assert "forward_failed" in d.log_text()
    finally:
        secure.stop()
        picky.stop()
        assert d.stop() == 0, d.log_text()[-3000:]


class Orthanc:
    """Orthanc (Debian packages ``orthanc``, ``orthanc-dicomweb``) as a PACS with a DICOM
    port and a DICOMweb (STOW-RS) root, in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
        assert Path(binary).is_file() and plugin.is_file(), (
            "Orthanc is needed: apt-get install orthanc orthanc-dicomweb"
        )
        self.http, self.dicom = free_port(), free_port()
        folder.mkdir()
        cfg = {
            "Name": "TEST",
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(cfg))
        self.cmd = [binary, str(folder / "orthanc.json")]
        self.log = folder / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Orthanc:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=fh)
        wait_for(lambda: self._get("/system") is not None, "Orthanc up")
        return self

    def _get(self, path: str) -> Any:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def sop_uids(self) -> list[str]:
        found = self._get("/instances?expand") or []
        return sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in found)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None


def test_forward_stow_rs_and_c_store_to_orthanc(tmp_path: Path) -> None:
    """Orthanc as the PACS of two destinations: --forward-stow (DICOMweb STOW-RS) while it
    is down, then up; and --forward by C-STORE to its DICOM port. Both deliver the same
    SRs, and Orthanc, which keeps an instance it already holds, stores each SR once."""
    orthanc = Orthanc(tmp_path / "orthanc")
    stow = f"http://127.0.0.1:{orthanc.http}/dicom-web"
    cfg = tmp_path / "watch.toml"
    cfg.write_text("forward_retry_seconds = 0.1\nforward_backoff_max_seconds = 0.5\n")
    d = node(
        tmp_path,
        "--config",
        str(cfg),
        "--forward-stow",
        stow,
        "--forward",
        f"ORTHANC@127.0.0.1:{orthanc.dicom}",
    ).start()
    port = dicom_port(d)

    try:
        send_all(port, phantoms(3, start=300))
        wait_for(lambda: len(_sr_uids(d.outbox)) == 3, "3 SRs")
        wait_for(
            lambda: _forward_status(d, "stow:")["consecutive_failures"] >= 2, "STOW-RS failing"
        )
        wait_for(lambda: _forward_status(d, "stow:")["pending"] == 3, "3 queued")
        orthanc.start()
        wait_for(lambda: _forward_status(d, "stow:")["sent"] == 3, "sent by STOW-RS")
        wait_for(lambda: _forward_status(d, "ORTHANC@")["sent"] == 3, "sent by C-STORE")
        assert orthanc.sop_uids() == sorted(_sr_uids(d.outbox))
        assert _forward_status(d, "stow:")["destination"] == f"stow:{stow}"
    finally:
        orthanc.stop()
        assert d.stop() == 0, d.log_text()[-3000:]


def test_resent_after_its_file_was_deleted_is_taken_again(tmp_path: Path) -> None:
    """A received file deleted from the inbox before it was processed (the ledger says
    gone): the modality's re-send is written again and diagnosed, one result."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    d = DaemonProc(
        inbox,
        tmp_path / "outbox",
        "--modality",
        "ultrasound",
        "--settle",
        "30",
        "--rescan",
        "0.2",
        "--workers",
        "1",
        "--dicom-port",
        "0",
    )
    _STARTED.append(d)
    d.start()
    port = dicom_port(d)
    try:
        (ds,) = phantoms(1, start=400)
        send_all(port, [ds])
        (received,) = list((inbox / "dicom").glob("*.dcm"))
        time.sleep(0.5)  # seen by a scan, still settling
        received.unlink()
        time.sleep(1.0)  # the next scans record it gone
        assert results(d.outbox) == []
        send_all(port, [ds])
        assert received.exists()
        assert d.stop() == 0
        d = DaemonProc(inbox, tmp_path / "outbox", *FAST, "--workers", "1")
        _STARTED.append(d)
        d.start()
        assert wait_outcomes(d, 1) == Counter({received_key(str(ds.SOPInstanceUID)): 1})
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]


def test_forward_sends_the_secondary_capture_when_written(tmp_path: Path) -> None:
    """With --sc the Secondary Capture goes to the PACS too (once, beside the SR)."""
    pacs_port = free_port()
    pacs = Pacs(pacs_port).start()
    d = node(tmp_path, "--sc", "--forward", f"PACS@127.0.0.1:{pacs_port}").start()
    try:
        send_all(dicom_port(d), phantoms(1, start=600))
        wait_for(lambda: len(pacs.received) >= 2, "SR and SC at the PACS")
        wait_for(lambda: _forward_status(d)["pending"] == 0, "queue empty")
        (sc,) = list(d.outbox.glob("*.sc.dcm"))
        sc_uid = str(pydicom.dcmread(sc, stop_before_pixels=True).SOPInstanceUID)
        assert pacs.received == Counter({sc_uid: 1, **dict.fromkeys(_sr_uids(d.outbox), 1)})
        assert pacs.classes[sc_uid] == SC
    finally:
        pacs.stop()
        assert d.stop() == 0, d.log_text()[-3000:]
