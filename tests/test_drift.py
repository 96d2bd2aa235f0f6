"""Drift monitoring: statistics, reference fitting, the monitor on phantom streams, the
sidecar without a reference, the CLI report and plot, the daemon's /healthz section and
the batch summary."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import monitor
from medimg_edge.monitor import (
    DriftConfig,
    DriftMonitor,
    chi2_homogeneity,
    chi2_sf,
    fit_reference,
    ks_binned,
    ks_pvalue,
    psi,
    reference_of,
    signals_of_result,
)
from medimg_edge.training._drift import generated_frames

scipy_stats = pytest.importorskip("scipy.stats")

MODELS = Path(__file__).resolve().parent.parent / "models"


# ---- statistics --------------------------------------------------------------------------
def test_psi_matches_definition_and_is_zero_for_equal_mix() -> None:
    a, b = np.array([10, 20, 30, 40]), np.array([40, 30, 20, 10])
    p = (a + 0.5) / (a + 0.5).sum()
    q = (b + 0.5) / (b + 0.5).sum()
    assert psi(a, b) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert psi(a, 2 * a) == pytest.approx(0.0, abs=1e-3)
    assert psi(a, b) > 0.5
    with pytest.raises(me.InvalidInputError):
        psi([1, 2], [1, 2, 3])


@pytest.mark.parametrize(("d", "n", "m"), [(0.05, 800, 150), (0.17, 800, 150), (0.3, 1000, 100)])
def test_ks_pvalue_matches_scipy_asymptotic(d: float, n: int, m: int) -> None:
    ref = scipy_stats.kstwobign.sf(
        (np.sqrt(n * m / (n + m)) + 0.12 + 0.11 / np.sqrt(n * m / (n + m))) * d
    )
    assert ks_pvalue(d, n, m) == pytest.approx(float(ref), rel=1e-6, abs=1e-12)


def test_binned_ks_is_the_statistic_of_the_binned_cdfs_and_conservative() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=1000), rng.normal(0.4, 1.0, size=150)
    edges = np.quantile(a, np.arange(1, 20) / 20)
    ca = np.bincount(np.searchsorted(edges, a), minlength=20)
    cb = np.bincount(np.searchsorted(edges, b), minlength=20)
    d, p = ks_binned(ca, cb)
    exact = scipy_stats.ks_2samp(a, b).statistic
    assert 0 < d <= exact + 1e-12  # binning can only lower D
    assert p == pytest.approx(ks_pvalue(d, 1000, 150))
    assert ks_binned([0, 0], [1, 2]) == (0.0, 1.0)


def test_monitor_hot_path_equals_psi_and_binned_ks() -> None:
    from medimg_edge.monitor._drift import _psi_ks

    ref = reference_of({"drift": _gauss_reference()})
    assert ref is not None
    rng = np.random.default_rng(8)
    for name, (_, counts) in ref.signals.items():
        window = rng.integers(0, 15, counts.size).tolist()
        got = _psi_ks(ref.profile[name], window)
        want = (psi(counts, window), *ks_binned(counts, window))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("x", "k"), [(0.5, 4), (7.3, 3), (40.0, 5), (120.0, 2), (3.0, 1)])
def test_chi2_sf_matches_scipy(x: float, k: int) -> None:
    assert chi2_sf(x, k) == pytest.approx(float(scipy_stats.chi2.sf(x, k)), rel=1e-9, abs=1e-300)


def test_chi2_homogeneity_matches_scipy() -> None:
    a, b = np.array([500, 120, 130, 0]), np.array([60, 40, 30, 20])
    stat, p = chi2_homogeneity(a, b)
    table = np.stack([a, b])[:, [0, 1, 2, 3]]
    res = scipy_stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(res.statistic) and p == pytest.approx(res.pvalue, rel=1e-6)


# ---- reference and monitor on synthetic signals ------------------------------------------------
def _gauss_reference(n: int = 1000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    values = {
        "quality.mean": rng.normal(0.4, 0.05, n).tolist(),
        "positive_score": rng.uniform(0, 1, n).tolist(),
        "quality.fraction_saturated": np.where(rng.random(n) < 0.9, 0.0, rng.random(n)).tolist(),
    }
    outcomes = rng.choice(
        ["negative:normal", "positive:cyst", "indeterminate"], n, p=[0.6, 0.3, 0.1]
    )
    return fit_reference(values, outcomes.tolist(), source="test")


def _feed(
    mon: DriftMonitor, key: str, n: int, seed: int, shift: float = 0.0
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n):
        values = {
            "quality.mean": float(rng.normal(0.4 + shift, 0.05)),
            "positive_score": float(rng.uniform(0, 1)),
            "quality.fraction_saturated": 0.0 if rng.random() < 0.9 else float(rng.random()),
        }
        outcome = str(
            rng.choice(["negative:normal", "positive:cyst", "indeterminate"], p=[0.6, 0.3, 0.1])
        )
        events += mon.observe(key, values, outcome)
    return events


def test_reference_round_trip_and_validation() -> None:
    obj = _gauss_reference()
    ref = reference_of({"drift": json.loads(json.dumps(obj))})
    assert ref is not None and ref.n == 1000
    edges, counts = ref.signals["quality.mean"]
    assert np.all(np.diff(edges) > 0) and counts.sum() == 1000 and counts.size == edges.size + 1
    assert np.all(np.abs(counts - 50) <= 2)  # equal-mass bins
    # ties are merged: the saturated fraction is 0 for 90 % of the frames
    assert ref.signals["quality.fraction_saturated"][1][0] >= 880
    assert reference_of({}) is None
    for bad in (
        {**obj, "method": "other"},
        {**obj, "signals": {"quality.mean": {"edges": [2.0, 1.0], "counts": [1, 1, 1]}}},
        {**obj, "signals": {"quality.mean": {"edges": [1.0], "counts": [1]}}},
        {**obj, "outcome": {"labels": ["a"], "counts": [1, 2]}},
    ):
        with pytest.raises(me.InvalidInputError):
            reference_of({"drift": bad})
    with pytest.raises(me.InvalidInputError):
        fit_reference({"no_such_signal": [1.0] * 100}, [])


def test_monitor_no_alarm_in_distribution_alarm_after_shift(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ref = reference_of({"drift": _gauss_reference()})
    mon = DriftMonitor()
    mon.add_model("m@1", ref)
    assert _feed(mon, "m@1", 3000, seed=1) == []
    assert mon.status()["models"]["m@1"]["status"] == "ok"
    with caplog.at_level(logging.WARNING, logger="medimg_edge.monitor"):
        events = _feed(mon, "m@1", 200, seed=2, shift=0.05)  # one reference SD
    alarms = [e for e in events if e["event"] == "drift_alarm"]
    assert [e["signal"] for e in alarms] == ["quality.mean"]
    st = mon.status()["models"]["m@1"]
    assert st["status"] == "drift" and st["alarms"] == ["quality.mean"]
    record = next(r for r in caplog.records if getattr(r, "event", "") == "drift_alarm")
    assert vars(record)["signal"] == "quality.mean" and vars(record)["model"] == "m@1"
    # back to the reference distribution: the alarm clears
    events = _feed(mon, "m@1", 400, seed=3)
    assert [e["event"] for e in events] == ["drift_cleared"]


def test_monitor_label_mix_shift_alarms() -> None:
    ref = reference_of({"drift": _gauss_reference()})
    mon = DriftMonitor()
    mon.add_model("m@1", ref)
    rng = np.random.default_rng(5)
    events = []
    for _ in range(300):
        values = {"quality.mean": float(rng.normal(0.4, 0.05))}
        events += mon.observe(
            "m@1", values, "positive:cyst" if rng.random() < 0.8 else "indeterminate"
        )
    assert "outcome" in {e["signal"] for e in events}


def test_state_round_trip_continues_the_window() -> None:
    ref = reference_of({"drift": _gauss_reference()})
    a = DriftMonitor()
    a.add_model("m@1", ref)
    _feed(a, "m@1", 155, seed=4, shift=0.05)
    doc = json.loads(json.dumps(a.state()))
    b = DriftMonitor()
    b.add_model("m@1", ref)
    assert b.restore(doc, "m@1")
    assert b.status() == a.status()
    # both go on identically
    assert _feed(a, "m@1", 50, seed=6, shift=0.05) == _feed(b, "m@1", 50, seed=6, shift=0.05)
    # another reference (fingerprint) or window size: not restored
    c = DriftMonitor()
    c.add_model("m@1", reference_of({"drift": _gauss_reference(seed=9)}))
    assert not c.restore(doc, "m@1")
    d = DriftMonitor(DriftConfig(window=100))
    d.add_model("m@1", ref)
    assert not d.restore(doc, "m@1")
    assert d.status()["models"]["m@1"]["frames"] == 0


def test_config_is_validated() -> None:
    for bad in ({"window": 5}, {"check_every": 0}, {"alpha": 0.0}, {"persistence": 0}):
        with pytest.raises(me.InvalidInputError):
            DriftConfig(**bad)


def test_signals_of_result_reads_a_diagnosis() -> None:
    frame = next(generated_frames("ultrasound", 1, seed=4242, frame_size=192))
    doc = me.diagnose(frame, modality="ultrasound").to_dict()
    values, outcome = signals_of_result(doc)
    assert values["image_side"] == 192.0
    assert {"quality.mean", "quality.noise_sigma", "ood_distance"} <= set(values)
    assert outcome is not None and outcome.split(":")[0] == doc["status"]
    assert monitor.key_of_result(doc) == f"us_lesion@{doc['model']['version']}"


# ---- the shipped packages ---------------------------------------------------------------------
def _gamma(img: np.ndarray, g: float) -> np.ndarray:
    full = 255.0 if img.dtype == np.uint8 else 4095.0
    return np.rint(full * (img.astype(np.float64) / full) ** g).astype(img.dtype)


@pytest.mark.parametrize("name", ["us_lesion", "xray_chest_nodule"])
def test_shipped_package_has_a_reference(name: str) -> None:
    pkg = me.load_model(name, delegate="cpu").package
    ref = reference_of(pkg.meta)
    assert ref is not None and ref.n >= 500
    assert {"quality.mean", "ood_distance", "appearance_distance", "positive_score"} <= set(
        ref.signals
    )


N_ID, N_SHIFT = 200, 120


@pytest.fixture(scope="module")
def stream_docs() -> list[dict[str, Any]]:
    """The results of N_ID in-distribution phantoms (seeds no training set uses), then of
    N_SHIFT phantoms of the same generator through gamma 0.6."""
    diag = me.Diagnoser("us_lesion", modality="ultrasound", delegate="cpu", num_threads=1)
    frames = list(generated_frames("ultrasound", N_ID, seed=99_001))
    frames += [_gamma(f, 0.6) for f in generated_frames("ultrasound", N_SHIFT, seed=99_002)]
    return [diag.diagnose(f).to_dict() for f in frames]


def test_phantom_stream_no_alarm_then_gamma_shift_alarms(stream_docs: list[dict[str, Any]]) -> None:
    """A modest in-distribution stream raises nothing; after the switch to gamma 0.6 an
    alarm comes within the shifted frames (<= 200)."""
    ref = reference_of(me.load_model("us_lesion", delegate="cpu").package.meta)
    mon = DriftMonitor()
    mon.add_model("us", ref)
    events = []
    for doc in stream_docs[:N_ID]:
        events += mon.observe("us", *signals_of_result(doc))
    assert events == []
    assert mon.status()["models"]["us"]["checks"] >= 5
    first = None
    for i, doc in enumerate(stream_docs[N_ID:]):
        if mon.observe("us", *signals_of_result(doc)) and first is None:
            first = i + 1
    assert first is not None and first <= N_SHIFT


def test_sidecar_without_drift_key_loads_and_is_unavailable(tmp_path: Path) -> None:
    for ext in ("tflite", "md"):
        shutil.copy(MODELS / f"us_lesion.{ext}", tmp_path / f"us_lesion.{ext}")
    meta = json.loads((MODELS / "us_lesion.json").read_text())
    meta.pop("drift")
    (tmp_path / "us_lesion.json").write_text(json.dumps(meta))
    model = me.load_model(tmp_path / "us_lesion.json", delegate="cpu")
    assert reference_of(model.package.meta) is None
    doc = (
        me.Diagnoser(model, modality="ultrasound")
        .diagnose(next(generated_frames("ultrasound", 1, seed=5)))
        .to_dict()
    )
    ref, why = monitor.find_reference(doc["model"], [tmp_path])
    assert ref is None and "no drift reference" in why
    mon = DriftMonitor()
    mon.add_model("us@x", ref)
    assert mon.observe("us@x", *signals_of_result(doc)) == []
    assert mon.status()["models"]["us@x"]["status"] == "unavailable"


# ---- CLI ------------------------------------------------------------------------------------
def _write_outbox(outbox: Path, docs: list[dict[str, Any]]) -> None:
    outbox.mkdir()
    t0 = 1_780_000_000.0
    for i, doc in enumerate(docs):
        p = outbox / f"r-{i:05d}.json"
        p.write_text(json.dumps(doc))
        os.utime(p, (t0 + i, t0 + i))
    (outbox / "x.reason.json").write_text('{"code": "truncated"}')


def test_cli_drift_report_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stream_docs: list[dict[str, Any]]
) -> None:
    import cv2

    from medimg_edge.cli import main

    outbox = tmp_path / "outbox"
    _write_outbox(outbox, stream_docs)
    png = tmp_path / "drift.png"
    assert main(["drift", str(outbox), "--png", str(png)]) == 1  # in alarm at the end
    out = capsys.readouterr().out
    assert f"{N_ID + N_SHIFT} results" in out and "ALARM" in out and "quality.mean" in out
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 600
    # --since: only the results written from then on (t0 + 250 s: the last 70)
    assert main(["drift", str(outbox), "--since", "2026-05-28T20:30:50+00:00", "--json"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    assert [m["results"] for m in doc["models"].values()] == [N_ID + N_SHIFT - 250]
    assert main(["drift", str(tmp_path / "nope")]) == 2
    assert main(["drift", str(outbox), "--since", "yesterday"]) == 2


def test_cli_drift_in_distribution_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stream_docs: list[dict[str, Any]]
) -> None:
    from medimg_edge.cli import main

    outbox = tmp_path / "outbox"
    _write_outbox(outbox, stream_docs[:N_ID])
    assert main(["drift", str(outbox), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ((key, m),) = doc["models"].items()
    assert key.startswith("us_lesion@") and m["results"] == N_ID and m["events"] == []
    assert m["status"]["status"] == "ok"


# ---- batch ----------------------------------------------------------------------------------
def _write_pngs(folder: Path, frames: list[np.ndarray], start: int = 0) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"us_{start + i:05d}.png"), f)


def test_batch_summary_has_the_drift_status(tmp_path: Path) -> None:
    from medimg_edge import batch

    _write_pngs(
        tmp_path / "in",
        [_gamma(f, 0.6) for f in generated_frames("ultrasound", 170, seed=99_005, frame_size=128)],
    )
    summary = batch.execute(
        tmp_path / "in",
        out=tmp_path / "out",
        what="quality,diagnosis",
        modality="ultrasound",
        scheduler="serial",
    )
    assert summary.done == 170 and summary.drift is not None
    ((key, st),) = summary.drift.items()
    assert key.startswith("us_lesion@") and st["available"] and st["frames"] == 170
    assert st["status"] == "drift" and "quality.mean" in st["alarms"]
    assert "drift us_lesion@" in summary.format()
    assert json.loads(json.dumps(summary.to_dict()))["drift"][key]["status"] == "drift"


# ---- daemon ---------------------------------------------------------------------------------
def test_daemon_healthz_drift_section_and_restart(tmp_path: Path) -> None:
    from daemon_helpers import FAST, DaemonProc, make_dirs, results, wait_for

    inbox, outbox = make_dirs(tmp_path)
    frames = list(generated_frames("ultrasound", 40, seed=99_006, frame_size=128))
    d = DaemonProc(inbox, outbox, *FAST, "--health-port", "0").start()
    _write_pngs(inbox, frames[:30])
    wait_for(lambda: len(results(outbox)) == 30, "30 results")

    def drift() -> dict[str, Any]:
        code, body = d.http("/healthz")
        assert code == 200
        section: dict[str, Any] = json.loads(body)["drift"]
        return section

    key = f"us_lesion@{me.load_model('us_lesion', delegate='cpu').package.version}"
    wait_for(lambda: drift()["models"].get(key, {}).get("frames") == 30, "30 frames seen")
    sec = drift()
    assert sec["enabled"] and sec["window"] == DriftConfig().window
    assert sec["models"][key]["status"] == "warming_up" and sec["models"][key]["available"]
    _, metrics = d.http("/metrics")
    assert f'medimg_edge_drift_frames{{model="{key}"}} 30.0'.encode() in metrics
    assert f'medimg_edge_drift_available{{model="{key}"}} 1.0'.encode() in metrics
    assert d.stop() == 0
    state = json.loads((outbox / ".medimg-edge" / "drift.json").read_text())
    assert len(state["models"][key]["tracks"]["quality.mean"]["bins"]) == 30
    # a restart continues the windows
    d2 = DaemonProc(inbox, outbox, *FAST, "--health-port", "0").start()
    d = d2
    _write_pngs(inbox, frames[30:], start=30)
    wait_for(lambda: drift()["models"].get(key, {}).get("frames") == 40, "40 frames seen")
    assert any(e.get("event") == "drift_restored" for e in d2.log_events())
    assert d2.stop() == 0


# ---- fitting at export -------------------------------------------------------------------------
def test_fit_drift_from_generated_validation_frames_and_kept_frames() -> None:
    from medimg_edge.training._data import synth_dataset
    from medimg_edge.training._drift import fit_drift

    sidecar = MODELS / "us_lesion.json"
    val = synth_dataset("ultrasound", 60, seed=202, size=128, frame_size=128, chunk=30)
    data = {
        "generator": "medimg_edge.synth",
        "modality": "ultrasound",
        "val_seed": 202,
        "n_val": 60,
        "frame_size": 160,
        "lesion_prior": "conspicuous",
    }
    obj = fit_drift(sidecar, val, {"data": data})
    assert obj is not None and obj["n"] == 60 and "validation generator" in obj["source"]
    ref = reference_of({"drift": obj})
    assert ref is not None and set(ref.signals) >= {"quality.mean", "positive_score"}
    # frames of the set's own generator: their side is the recorded frame size
    assert obj["signals"].get("image_side") is None or ref.bands["image_side"]["p50"] == 160.0
    # a folder set: its kept raw frames; without them, no reference
    kept = synth_dataset("ultrasound", 60, seed=203, size=128, frame_size=128, keep_frames=True)
    obj2 = fit_drift(sidecar, kept, {"training_data": "user folder"})
    assert obj2 is not None and obj2["n"] == 60 and "validation split" in obj2["source"]
    assert fit_drift(sidecar, val, {"training_data": "user folder"}) is None


def test_daemon_tracker_finds_a_promoted_champion(tmp_path: Path) -> None:
    """A result of a package outside the model search path, recorded as champion in the
    ledger's model_state (as ``medimg-edge promote`` does), is monitored against its own
    reference; without that row it is unavailable."""
    import sqlite3
    from types import SimpleNamespace

    from medimg_edge.daemon._observe import Metrics

    pkg_dir = tmp_path / "candidates"
    pkg_dir.mkdir()
    meta = json.loads((MODELS / "us_lesion.json").read_text())
    meta.update(name="us_cand", model_card="us_cand.md")
    meta["files"]["cpu"]["path"] = "us_cand.tflite"
    shutil.copy(MODELS / "us_lesion.tflite", pkg_dir / "us_cand.tflite")
    (pkg_dir / "us_cand.md").write_text("# us_cand\n")
    (pkg_dir / "us_cand.json").write_text(json.dumps(meta))
    diag = me.Diagnoser(pkg_dir / "us_cand.json", modality="ultrasound", delegate="cpu")
    outbox, state = tmp_path / "outbox", tmp_path / "state"
    outbox.mkdir()
    state.mkdir()
    frame = next(generated_frames("ultrasound", 1, seed=11))
    (outbox / "r-1.json").write_text(json.dumps(diag.diagnose(frame).to_dict()))
    cfg = SimpleNamespace(outbox=outbox, state_dir=state, models={})
    key = f"us_cand@{meta['version']}"

    tracker = Metrics().drift
    tracker.observe(cfg, "r-1")
    assert tracker.section()["models"][key]["status"] == "unavailable"
    db = sqlite3.connect(state / "ledger.sqlite")
    db.execute("CREATE TABLE model_state (modality TEXT, ref TEXT, previous TEXT)")
    db.execute(
        "INSERT INTO model_state VALUES ('ultrasound', ?, '[]')", (str(pkg_dir / "us_cand.json"),)
    )
    db.commit()
    db.close()
    tracker = Metrics().drift
    tracker.observe(cfg, "r-1")
    st = tracker.section()["models"][key]
    assert st["available"] and st["frames"] == 1
    tracker.save(force=True)
    assert key in json.loads((state / "drift.json").read_text())["models"]


def test_daemon_tracker_takes_the_workers_summary_like_the_result_file(
    tmp_path: Path, stream_docs: list[dict[str, Any]]
) -> None:
    """The summary a worker sends in its reply (``monitor.drift_summary``, through JSON as
    on the pipe) puts a result in its model's window exactly as reading the result file
    back does: the same frames, bins and statistics."""
    from types import SimpleNamespace

    from medimg_edge.daemon._observe import Metrics
    from medimg_edge.monitor import drift_summary

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    cfg = SimpleNamespace(outbox=outbox, state_dir=tmp_path, models={})
    by_file, by_summary = Metrics().drift, Metrics().drift
    for i, doc in enumerate(stream_docs[:40]):
        (outbox / f"r-{i}.json").write_text(json.dumps(doc, allow_nan=False))
        by_file.observe(cfg, f"r-{i}")
        summary = json.loads(json.dumps(drift_summary(doc)))
        (outbox / f"r-{i}.json").unlink()  # the summary path never reads the file
        by_summary.observe(cfg, f"r-{i}", summary)
    a, b = by_file.section(), by_summary.section()
    key = next(iter(a["models"]))
    assert a["models"][key]["frames"] == 40 and a == b
    assert by_file.monitor is not None and by_summary.monitor is not None
    assert by_file.monitor.state() == by_summary.monitor.state()
    assert drift_summary({"quality": {}}) is None  # a result that names no model
