"""One input path for every client (issue 15): the same corpus through the Python API, the
``medimg-edge diagnose`` command, the watch-folder daemon (a real process) and
``medimg-edge batch``; they must agree on every input (same status, label and scores to
1e-6; same refusals with the same codes).

Corpus: pydicom's bundled ultrasound files (RGB, YBR JPEG cine, palette, JPEG 2000, big
endian), CT / MR / NM (refused ``unsupported_modality``), Secondary Captures (``OT``: the
user's modality), phantoms of ``me.synth`` written as DX / CR / US DICOM in MONOCHROME1 and
MONOCHROME2 (the pairs must give the same answer), a multi-frame ultrasound cine, int16
arrays and colour arrays (through the API as arrays, through the other clients as ``.npy``).
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import synth, triage
from medimg_edge._clip import aggregate, sample_frame_indices
from medimg_edge._modality import decide
from medimg_edge.cli import main

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pyarrow")
from daemon_helpers import DaemonProc  # noqa: E402
from dicom_helpers import bundled  # noqa: E402

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
US = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTI = "1.2.840.10008.5.1.4.1.1.3.1"


def grey_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    modality: str,
    sop_class: str,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
) -> None:
    """Write ``pixels`` ((H, W) or (N, H, W), uint8 / uint16) as an uncompressed DICOM;
    MONOCHROME1 stores ``2**bits_stored - 1 - pixels`` (the same picture, inverted)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    bits = 8 if pixels.dtype == np.uint8 else 16
    stored = bits_stored or bits
    if photometric == "MONOCHROME1":
        pixels = ((1 << stored) - 1 - pixels.astype(np.int64)).astype(pixels.dtype)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)


@dataclass(frozen=True)
class Case:
    """One corpus input: ``folder`` is the modality the user gives for it (``none``:
    nothing), ``make`` writes the file, ``array`` is what the API gets instead of the file
    (None: the API reads the file too), ``expect`` an error code or ``ok``."""

    name: str
    folder: str
    make: Callable[[Path], None]
    expect: str = "ok"
    array: Callable[[], Any] | None = None


def _copy(name: str) -> Callable[[Path], None]:
    return lambda path: shutil.copy(bundled(name), path)


def _xray(seed: int) -> np.ndarray:
    return synth.chest_xray(seed, size=256, nodule=seed % 2 == 1).image


def _us(seed: int) -> np.ndarray:
    lesion = ("none", "cyst", "hypoechoic")[seed % 3]
    return synth.ultrasound(seed, size=256, lesion=lesion).image


def _cine() -> np.ndarray:
    return np.stack([_us(10 + k) for k in range(7)])


def _int16() -> np.ndarray:
    # DX after a modality LUT with a negative intercept: int16 with negative values.
    return (_xray(3).astype(np.int32) - 1024).astype(np.int16)


def _colour() -> np.ndarray:
    g = _us(4).astype(np.float32)
    rgb = np.dstack([g, 0.8 * g, 0.6 * g])  # a tinted RGB screen grab
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _save(arr: Callable[[], np.ndarray]) -> Callable[[Path], None]:
    return lambda path: np.save(path, arr())


CASES: list[Case] = [
    # pydicom's ultrasound files: the header decides (no --modality needed)
    Case("us_rgb.dcm", "none", _copy("examples_rgb_color.dcm")),
    Case("us_ybr_cine.dcm", "none", _copy("examples_ybr_color.dcm")),  # 30 frames YBR JPEG
    Case("us_palette.dcm", "none", _copy("examples_palette.dcm")),
    Case("us_j2k.dcm", "none", _copy("examples_jpeg2k.dcm")),
    Case("us_bigendian.dcm", "none", _copy("ExplVR_BigEnd.dcm")),
    # ... even when the user says otherwise: the header wins
    Case("us_rgb_told_xray.dcm", "xray", _copy("examples_rgb_color.dcm")),
    # modalities no model serves, whatever the user says
    Case("ct.dcm", "ultrasound", _copy("CT_small.dcm"), "unsupported_modality"),
    Case("mr.dcm", "xray", _copy("MR_small.dcm"), "unsupported_modality"),
    Case("nm_j2k.dcm", "none", _copy("JPEG2000.dcm"), "unsupported_modality"),
    # Secondary Capture, Modality OT: the user's modality; without one, unknown
    Case("sc_rgb_jpeg.dcm", "ultrasound", _copy("SC_rgb_jpeg.dcm")),
    Case("sc_ybr422.dcm", "ultrasound", _copy("SC_ybr_full_422_uncompressed.dcm")),
    Case("sc_untold.dcm", "none", _copy("SC_rgb_jpeg.dcm"), "unknown_modality"),
    # synth phantoms as DX / CR / US, MONOCHROME2 and MONOCHROME1 (pairs)
    *(
        Case(
            f"{kind}_{seed}_{pi[-1]}.dcm",
            "none",
            lambda p, kind=kind, seed=seed, pi=pi: grey_dicom(
                p,
                _xray(seed) if kind != "us" else _us(seed),
                modality=kind.upper(),
                sop_class={"dx": DX, "cr": CR, "us": US}[kind],
                photometric=pi,
                bits_stored=12 if kind != "us" else None,
            ),
        )
        for kind, seeds in (("dx", (0, 1)), ("cr", (2,)), ("us", (0, 1)))
        for seed in seeds
        for pi in ("MONOCHROME2", "MONOCHROME1")
    ),
    Case(
        "us_cine7.dcm",
        "none",
        lambda p: grey_dicom(p, _cine(), modality="US", sop_class=US_MULTI),
    ),
    # arrays as integrators pass them (the other clients read them as .npy)
    Case("int16.npy", "xray", _save(_int16), array=_int16),
    Case("colour.npy", "ultrasound", _save(_colour), array=_colour),
    Case("cine.npy", "ultrasound", _save(_cine), array=_cine),
    Case("uint16.npy", "xray", _save(lambda: _xray(5)), array=lambda: _xray(5)),
    Case("untold.npy", "none", _save(lambda: _us(6)), "unknown_modality"),
]


Outcome = tuple[str, Any, Any]  # ("ok", (status, label), scores) or ("error", code, None)


def _ok(status: str, label: str | None, scores: dict[str, float]) -> Outcome:
    return ("ok", (status, label), dict(scores))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for case in CASES:
        folder = root / case.folder
        folder.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.make(folder / case.name)
    return root


def _requested(case: Case) -> str | None:
    return None if case.folder == "none" else case.folder


def _api(corpus: Path) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for case in CASES:
        m = _requested(case)
        try:
            if case.array is not None:
                arr = case.array()
                if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
                    r = triage.diagnose_clip(arr, modality=m).result
                else:
                    r = me.diagnose(arr, modality=m)
            else:  # me.diagnose on a path: the API's adapter over the triage layer
                r = me.diagnose(corpus / case.folder / case.name, modality=m)
        except me.InvalidInputError as exc:
            out[case.name] = ("error", exc.code, None)
            continue
        out[case.name] = _ok(r.status, r.label, r.scores)
    return out


def _cli(
    corpus: Path, capsys: pytest.CaptureFixture[str], folders: list[str] | None = None
) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for folder in folders or sorted({c.folder for c in CASES}):
        argv = ["diagnose", str(corpus / folder), "--json", "--delegate", "cpu"]
        if folder != "none":
            argv += ["--modality", folder]
        main(argv)
        for line in capsys.readouterr().out.splitlines():
            row = json.loads(line)
            name = Path(row["path"]).name
            if "error" in row:
                out[name] = ("error", row["code"], None)
            else:
                out[name] = _ok(row["status"], row["label"], row["scores"])
    return out


def _daemon(corpus: Path, tmp_path: Path, *, cines: int = 2) -> dict[str, Outcome]:
    from medimg_edge.daemon import Ledger

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    shutil.copytree(corpus, inbox)
    config = tmp_path / "watch.toml"
    config.write_text('[folders]\n"ultrasound" = "ultrasound"\n"xray" = "xray"\n')
    d = DaemonProc(
        inbox, outbox, "--config", str(config), "--settle", "0.2", "--sr", "--exit-when-idle"
    )
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(timeout=300) == 0, d.log_text()[-3000:]
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    try:
        ids = {Path(r.path).name: led.result_id(r.rowid) for r in led.all_rows()}
    finally:
        led.close()
    out: dict[str, Outcome] = {}
    seen_cines = 0
    for name, rid in ids.items():
        doc = outbox / f"{rid}.json"
        if doc.exists():
            r = json.loads(doc.read_text())
            out[name] = _ok(r["status"], r["label"], r["scores"])
            if r["input"]["frames_in_file"] > 1 and r["input"]["kind"] == "dicom":
                # the result and the SR name the frame the answer rests on
                sr = pydicom.dcmread(outbox / f"{rid}.sr.dcm")
                assert _frame_numbers(sr) == {r["frame_index"] + 1}, name
                assert r["input"]["frame_index"] == r["frame_index"]
                assert r["frame_index"] in r["clip"]["frames_diagnosed"]
                seen_cines += 1
        else:
            reason = json.loads((outbox / "failed" / f"{rid}.reason.json").read_text())
            out[name] = ("error", reason["code"], None)
    assert seen_cines == cines  # the corpus: the YBR cine and the synth cine
    return out


def _frame_numbers(ds: Any) -> set[int]:
    """Every Referenced Frame Number anywhere in a dataset (SR content tree included)."""
    found: set[int] = set()
    for elem in ds.iterall():
        if elem.keyword == "ReferencedFrameNumber":
            vals = elem.value if elem.VM > 1 else [elem.value]
            found.update(int(v) for v in vals)
    return found


def _batch(
    corpus: Path, tmp_path: Path, rows: list[tuple[str, str]] | None = None
) -> dict[str, Outcome]:
    """``rows``: (path under ``corpus``, modality or "") of the manifest; default CASES."""
    from medimg_edge import batch

    if rows is None:
        rows = [(f"{c.folder}/{c.name}", _requested(c) or "") for c in CASES]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality"])
        for rel, modality in rows:
            w.writerow([str(corpus / rel), modality])
    table = batch.run([str(manifest)], what="diagnosis", scheduler="serial", keep_ids=True)
    out: dict[str, Outcome] = {}
    for row in table.to_pylist():
        name = Path(row["path"]).name
        if row["error_code"] is not None:
            out[name] = ("error", row["error_code"], None)
        else:
            scores = dict(row["diag_scores"])
            out[name] = _ok(row["diag_status"], row["diag_label"], scores)
    return out


def _same(a: Outcome, b: Outcome) -> bool:
    if a[0] != b[0] or a[1] != b[1]:
        return False
    if a[0] == "error":
        return True
    sa, sb = a[2], b[2]
    return set(sa) == set(sb) and all(abs(sa[k] - sb[k]) <= 1e-6 for k in sa)


def test_four_clients_agree_on_the_corpus(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = {
        "api": _api(corpus),
        "cli": _cli(corpus, capsys),
        "daemon": _daemon(corpus, tmp_path),
        "batch": _batch(corpus, tmp_path),
    }
    names = [c.name for c in CASES]
    for client, res in got.items():
        assert sorted(res) == sorted(names), client
    for case in CASES:
        api = got["api"][case.name]
        expected = "ok" if case.expect == "ok" else ("error", case.expect)
        assert (api[0] == "ok") if expected == "ok" else (api[:2] == expected), (case, api)
        for client in ("cli", "daemon", "batch"):
            assert _same(api, got[client][case.name]), (case.name, client, api, got[client])
    # 0 reversed verdicts: MONOCHROME1 and MONOCHROME2 renderings give the same answer.
    api = got["api"]
    pairs = [n for n in names if n.endswith("_2.dcm")]
    assert len(pairs) == 5
    for n2 in pairs:
        assert _same(api[n2], api[n2.replace("_2.dcm", "_1.dcm")]), n2
    # The header wins over the user's modality, and a lying --modality changes nothing.
    assert _same(api["us_rgb.dcm"], api["us_rgb_told_xray.dcm"])


def test_modality_rule() -> None:
    from pydicom.dataset import Dataset

    def header(modality: str | None = None, sop: str | None = None) -> Dataset:
        ds = Dataset()
        if modality is not None:
            ds.Modality = modality
        if sop is not None:
            ds.SOPClassUID = sop
        return ds

    assert decide(header("US"), "xray") == ("ultrasound", "dicom")
    assert decide(header("DX"), None) == ("xray", "dicom")
    assert decide(header("OT", US), None) == ("ultrasound", "dicom")  # SOP class hint
    assert decide(header("OT"), "xray", source="manifest") == ("xray", "manifest")
    assert decide(header(None, CR), None) == ("xray", "dicom")
    assert decide(None, "ultrasound") == ("ultrasound", "option")
    for tag in ("CT", "MR", "NM", "PT", "SEG"):
        with pytest.raises(me.InvalidInputError) as exc:
            decide(header(tag), "xray")
        assert exc.value.code == "unsupported_modality" and tag in str(exc.value)
    # a Modality value that is not a defined term (could be anything) is never quoted
    with pytest.raises(me.InvalidInputError) as exc:
        decide(header("DOE^JOHN"), "xray")
    assert exc.value.code == "unsupported_modality" and "DOE" not in str(exc.value)
    assert decide(header("CT"), "xray", override=True) == ("xray", "override")
    with pytest.raises(me.InvalidInputError) as exc:
        decide(header("OT"), None)
    assert exc.value.code == "unknown_modality"


def test_clip_rule_and_api() -> None:
    assert sample_frame_indices(30) == (0, 15, 29)
    assert sample_frame_indices(2) == (0, 1)
    assert sample_frame_indices(7, 1) == (0,)
    cine = _cine()
    d = triage.pooled_diagnoser(None, "ultrasound")
    clip = d.diagnose_clip(cine)
    assert clip.frame_indices == (0, 3, 6) and clip.n_frames == 7
    singles = [d.diagnose(cine[i]) for i in clip.frame_indices]
    k = aggregate(singles)
    assert clip.frame_index == clip.frame_indices[k]
    assert clip.result.scores == singles[k].scores
    decisive = [r for r in singles if r.status != "indeterminate"]
    if decisive:  # the answer is the decisive frame with the highest positive score
        assert clip.result.positive_score == max(r.positive_score or 0 for r in decisive)
    doc = clip.to_dict()
    assert doc["frame_index"] == clip.frame_index and len(doc["frame_results"]) == 3
    # colour clips, lists, already-sampled frames
    rgb = np.repeat(cine[..., None], 3, axis=3)
    assert d.diagnose_clip(rgb).result.scores == clip.result.scores
    again = d.diagnose_clip([cine[0], cine[3], cine[6]], frame_indices=[0, 3, 6], n_frames=7)
    assert again.frame_index == clip.frame_index
    with pytest.raises(me.InvalidInputError, match="frame_indices"):
        d.diagnose_clip([cine[0]], frame_indices=[9], n_frames=7)
    # diagnose() routes a clip to diagnose_clip with a clear message
    with pytest.raises(me.InvalidInputError, match="diagnose_clip") as exc:
        me.diagnose(cine, modality="ultrasound")
    assert exc.value.code == "clip_input"


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint32, np.int64])
def test_integer_arrays_are_exact(dtype: type[np.integer[Any]]) -> None:
    """Every integer dtype is accepted and means its values: an int frame whose values
    fit uint16 gives the uint16 frame's answer; with negative values, the float frame's."""
    base = _xray(7).astype(np.int64) >> 4 if dtype == np.int8 else _xray(7).astype(np.int64)
    if dtype == np.int8:
        base = np.clip(base, 0, 127)
    ref = me.diagnose(base.astype(np.uint16), modality="xray")
    got = me.diagnose(base.astype(dtype), modality="xray")
    assert got.scores == ref.scores and got.status == ref.status
    if np.iinfo(dtype).min < 0:
        shifted = base.astype(np.float64) - 100
        ref_f = me.diagnose(shifted.astype(np.float32), modality="xray")
        got_f = me.diagnose(shifted.astype(dtype), modality="xray")
        assert got_f.scores == pytest.approx(ref_f.scores, abs=1e-6)


def test_color_order_on_diagnose() -> None:
    g = _us(4)
    rgb = np.dstack([g, (0.5 * g).astype(np.uint8), np.zeros_like(g)])
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    a = me.diagnose(rgb, modality="ultrasound")  # default rgb
    b = me.diagnose(bgr, modality="ultrasound", color_order="bgr")
    assert a.scores == b.scores
    assert me.Diagnoser(modality="ultrasound").color_order == "rgb"
    with pytest.raises(me.InvalidInputError, match="bgr"):
        me.diagnose(rgb, modality="ultrasound", color_order="BGR")


def test_pool_is_keyed_by_model_bytes() -> None:
    from medimg_edge.runtime import read_package
    from medimg_edge.runtime._package import find_sidecar

    by_name = triage.pooled_diagnoser("us_lesion", "ultrasound", delegate="cpu")
    path = str(find_sidecar("us_lesion"))
    assert read_package(path).name == "us_lesion"
    by_path = triage.pooled_diagnoser(path, "ultrasound", delegate="cpu")
    assert by_path is by_name  # same sha256, same settings: one Diagnoser
    other = triage.pooled_diagnoser("us_lesion", "ultrasound", delegate="cpu", quality_gate=False)
    assert other is not by_name
    with pytest.raises(me.InvalidInputError) as exc:
        triage.pooled_diagnoser("us_lesion", "ultrasound", delegate="cpu", expected_sha256="0")
    assert exc.value.code == "model_mismatch"


def _bundled_by_modality() -> dict[str, list[str]]:
    """pydicom's bundled test files (those in the wheel) by their Modality tag."""
    import os

    from pydicom.data import get_testdata_file

    folder = os.path.dirname(str(get_testdata_file("CT_small.dcm")))
    out: dict[str, list[str]] = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".dcm"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        except Exception:
            continue
        out.setdefault(str(ds.get("Modality", "") or ""), []).append(name)
    return out


def test_every_bundled_ct_mr_nm_is_refused_and_every_us_diagnosed(tmp_path: Path) -> None:
    """Targets: every CT / MR / NM DICOM of pydicom's wheel is refused
    ``unsupported_modality`` (even when the user says xray), and every ultrasound file is
    diagnosed without a modality from the user."""
    found = _bundled_by_modality()
    refused = [n for m in ("CT", "MR", "NM") for n in found.get(m, [])]
    assert len(refused) >= 10
    told = triage.Triage(modality="xray")
    for name in refused:
        with pytest.raises(me.InvalidInputError) as exc:
            told.diagnose_file(bundled(name))
        assert exc.value.code == "unsupported_modality", name
    us = found.get("US", [])
    assert len(us) >= 5
    untold = triage.Triage()
    for name in us:
        got = untold.diagnose_file(bundled(name))
        assert got.modality == "ultrasound" and got.modality_source == "dicom", name


def test_cli_diagnoses_every_bundled_us_file_without_modality(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Target: ``medimg-edge diagnose`` on every ultrasound file of pydicom's wheel, no
    ``--modality``: each one is diagnosed (a result, not an error) as ultrasound from the
    DICOM header."""
    us = _bundled_by_modality().get("US", [])
    assert len(us) >= 5
    folder = tmp_path / "us"
    folder.mkdir()
    for name in us:
        shutil.copy(bundled(name), folder / name)
    capsys.readouterr()
    assert main(["diagnose", str(folder), "--json", "--delegate", "cpu"]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert sorted(rows) == sorted(us)
    for name, row in rows.items():
        assert "error" not in row, (name, row)
        assert row["status"] in ("positive", "negative", "indeterminate"), name
        assert row["input"]["modality"] == "ultrasound", name
        assert row["input"]["modality_source"] == "dicom", name


def test_every_bundled_ct_mr_nm_is_refused_by_all_four_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Target: every CT / MR / NM DICOM of pydicom's wheel, given as X-ray by the user
    (folder rule, ``--modality``, manifest column, ``modality=``), is refused with
    ``unsupported_modality`` by the API, the CLI, the daemon and batch alike."""
    found = _bundled_by_modality()
    refused = sorted(n for m in ("CT", "MR", "NM") for n in found.get(m, []))
    assert len(refused) >= 10
    corpus = tmp_path / "corpus"
    (corpus / "xray").mkdir(parents=True)
    for name in refused:
        shutil.copy(bundled(name), corpus / "xray" / name)
    api: dict[str, Outcome] = {}
    for name in refused:
        with pytest.raises(me.InvalidInputError) as exc:
            me.diagnose(corpus / "xray" / name, modality="xray")
        api[name] = ("error", exc.value.code, None)
    got = {
        "api": api,
        "cli": _cli(corpus, capsys, ["xray"]),
        "daemon": _daemon(corpus, tmp_path, cines=0),
        "batch": _batch(corpus, tmp_path, [(f"xray/{n}", "xray") for n in refused]),
    }
    want = {name: ("error", "unsupported_modality", None) for name in refused}
    for client, res in got.items():
        assert res == want, client
