"""False alarms and detection delay of the drift monitor on phantom streams.

    python scripts/drift_stream.py --model us_lesion --n-id 10000        # the RESULTS run
    python scripts/drift_stream.py --model xray_chest_nodule --n-id 2000 --repeats 3

The shipped package diagnoses (``me.Diagnoser``, CPU) a stream of in-distribution phantoms
(``medimg_edge.training._drift.generated_frames``: the training generator's distribution,
sides from ``FRAME_SIZES``, seed bases 7001... that no training, validation or test set
uses) and streams of shifted phantoms; the signals of every result are cached
(``--cache``, an ``.npz`` per stream) so that the monitor settings can be replayed without
diagnosing again.

* **False alarms**: the monitor (``DriftConfig`` defaults, or ``--window`` ...) reads the
  in-distribution stream; every ``drift_alarm`` event is a false alarm.
* **Detection delay**: ``--repeats`` times, a window's worth of in-distribution frames
  (a different part of the stream each time), then shifted frames; the delay is the
  number of shifted frames until the first alarm (none within ``--n-shift``: missed).

Shifts: ``gamma0.6`` (every frame through ``v' = max (v / max)^0.6``, ``max`` the container's
full scale: 255, or 4095 for the 12-bit X-ray phantoms), for X-ray ``dose-low`` (dose
log-uniform in 150-600 quanta/pixel; training draws 1e3-1.2e5), for ultrasound
``linear-probe`` (every frame from the linear array; training mixes linear and convex
half and half) and ``snr-low`` (electronic SNR 3 dB; training 10-30 dB).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = 250
ID_SEED = 7001
SHIFT_SEED = 8001

SHIFTS: dict[str, dict[str, dict[str, Any]]] = {
    "xray": {
        "gamma0.6": {"gamma": 0.6},
        "dose-low": {"dose_range": (150.0, 600.0)},
    },
    "ultrasound": {
        "gamma0.6": {"gamma": 0.6},
        "linear-probe": {"synth": {"geometry": "linear"}},
        "snr-low": {"synth": {"snr_db": 3.0}},
    },
}


def _gamma(img: np.ndarray, g: float) -> np.ndarray:
    full = 255.0 if img.dtype == np.uint8 else 4095.0
    out = full * np.power(np.clip(img.astype(np.float64) / full, 0.0, 1.0), g)
    return np.rint(out).astype(img.dtype)


def _block(
    args: tuple[str, str, int, int, dict[str, Any]],
) -> tuple[list[dict[str, float]], list[str | None]]:
    """Signals and outcomes of one block of the stream (one worker process)."""
    import medimg_edge as me
    from medimg_edge.monitor import signals_of_result
    from medimg_edge.training._drift import generated_frames

    model, modality, seed, n, shift = args
    diag = me.Diagnoser(model, modality=modality, delegate="cpu", num_threads=1)
    kw = dict(shift.get("synth", {}))
    sigs: list[dict[str, float]] = []
    outs: list[str | None] = []
    if "dose_range" in shift:
        lo, hi = shift["dose_range"]
        rng = np.random.default_rng([seed, 0xD05E])
        doses = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        # pairs of frames (one with a nodule, one without) share a dose
        frames: Iterator[np.ndarray] = (
            f
            for i in range(0, n, 2)
            for f in generated_frames(
                modality, min(2, n - i), seed=seed * 10_000 + i, dose=float(doses[i])
            )
        )
    else:
        frames = generated_frames(modality, n, seed=seed, **kw)
    for frame in frames:
        if "gamma" in shift:
            frame = _gamma(frame, float(shift["gamma"]))
        s, o = signals_of_result(diag.diagnose(frame).to_dict())
        sigs.append(s)
        outs.append(o)
    return sigs, outs


def stream(
    cache: Path, model: str, modality: str, name: str, base: int, n: int, workers: int
) -> tuple[list[dict[str, float]], list[str | None]]:
    """The signals of ``n`` frames of stream ``name`` (cached)."""
    path = cache / f"{Path(model).stem}-{name}-{base}-{n}.json"
    if path.exists():
        doc = json.loads(path.read_text())
        return doc["signals"], doc["outcomes"]
    shift = {} if name == "id" else SHIFTS[modality][name]
    jobs = [
        (model, modality, base * 1000 + b, min(BLOCK, n - b * BLOCK), shift)
        for b in range((n + BLOCK - 1) // BLOCK)
    ]
    sigs: list[dict[str, float]] = []
    outs: list[str | None] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for s, o in pool.map(_block, jobs):
            sigs.extend(s)
            outs.extend(o)
    print(f"  {name}: {n} frames diagnosed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"signals": sigs, "outcomes": outs}))
    return sigs, outs


def replay(
    mon: Any, key: str, sigs: list[Any], outs: list[Any]
) -> list[tuple[int, dict[str, Any]]]:
    """Feed a stream; the alarms as ``(index, event)``."""
    alarms = []
    for i, (s, o) in enumerate(zip(sigs, outs, strict=True)):
        for ev in mon.observe(key, s, o):
            if ev["event"] == "drift_alarm":
                alarms.append((i, ev))
    return alarms


def main() -> int:
    import logging

    import medimg_edge as me
    from medimg_edge.monitor import DriftConfig, DriftMonitor, reference_of

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="us_lesion")
    ap.add_argument("--n-id", type=int, default=10_000)
    ap.add_argument("--n-shift", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=REPO_ROOT / "build" / "drift-stream")
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--check-every", type=int, default=None)
    ap.add_argument("--alpha", type=float, default=None)
    ap.add_argument("--psi-min", type=float, default=None)
    ap.add_argument("--persistence", type=int, default=None)
    args = ap.parse_args()
    logging.getLogger("medimg_edge.monitor").setLevel(logging.ERROR)
    kw = {
        k: v
        for k, v in {
            "window": args.window,
            "check_every": args.check_every,
            "alpha": args.alpha,
            "psi_min": args.psi_min,
            "persistence": args.persistence,
        }.items()
        if v is not None
    }
    cfg = DriftConfig(**kw)
    pkg = me.load_model(args.model, delegate="cpu").package
    ref = reference_of(pkg.meta)
    if ref is None:
        print(f"{args.model} has no drift reference", file=sys.stderr)
        return 2
    modality = pkg.modality
    key = f"{pkg.name}@{pkg.version}"
    id_s, id_o = stream(args.cache, args.model, modality, "id", ID_SEED, args.n_id, args.workers)
    mon = DriftMonitor(cfg)
    mon.add_model(key, ref)
    false = replay(mon, key, id_s, id_o)
    report: dict[str, Any] = {
        "model": key,
        "config": vars(cfg) if hasattr(cfg, "__dict__") else str(cfg),
        "id_frames": len(id_s),
        "false_alarms": len(false),
        "false_alarm_signals": sorted({ev["signal"] for _, ev in false}),
        "false_alarms_per_10k": round(len(false) * 10_000 / max(1, len(id_s)), 2),
        "shifts": {},
    }
    n_shift_total = args.n_shift * args.repeats
    for name in SHIFTS[modality]:
        sh_s, sh_o = stream(
            args.cache, args.model, modality, name, SHIFT_SEED, n_shift_total, args.workers
        )
        delays: list[int | None] = []
        signals: set[str] = set()
        for r in range(args.repeats):
            a = (r * 997) % max(1, len(id_s) - cfg.window)
            pre_s, pre_o = id_s[a : a + cfg.window], id_o[a : a + cfg.window]
            post = slice(r * args.n_shift, (r + 1) * args.n_shift)
            m = DriftMonitor(cfg)
            m.add_model(key, ref)
            pre_alarms = replay(m, key, pre_s, pre_o)
            got = replay(m, key, sh_s[post], sh_o[post])
            first = got[0][0] + 1 if got else None
            delays.append(None if pre_alarms else first)
            signals.update(ev["signal"] for _, ev in got[:5])
        hits = [d for d in delays if d is not None]
        report["shifts"][name] = {
            "delays": delays,
            "median_delay": float(np.median(hits)) if hits else None,
            "max_delay": max(hits) if hits else None,
            "missed": sum(d is None for d in delays),
            "first_signals": sorted(signals),
        }
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
