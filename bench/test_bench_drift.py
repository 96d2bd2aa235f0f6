"""Cost of drift monitoring in the watch-folder daemon (issue 18 item 1), in one run.

Files: 256x256 uint8 B-mode phantoms (the training generator's distribution, one seed
base no training set uses) as PNG; the ultrasound reference model, two workers (the
default).

Group ``drift-overhead``:

* ``daemon-off`` / ``daemon-on`` (twice, alternated: the machine's load changes during a
  run): ``medimg-edge watch`` with ``MEDIMG_EDGE_DRIFT=0`` and with monitoring (the
  default), already running and idle; the time from hard-linking
  all files into its inbox until the last ``<id>.json`` exists (as in
  ``test_bench_daemon.py``). ``extra_info``: files/s and, for ``daemon-on``, the
  throughput loss against the ``daemon-off`` run just before it.
* ``monitor``: what the daemon's main thread adds per result, alone: take the drift
  summary the worker computed beside the result and sent in its reply header
  (``monitor.drift_summary``; decoded with the rest of the header), update the window (a
  check every 10 results) and save the windows once per 5 s of results; ``extra_info``
  has the time per result and its share of the (fastest) ``daemon-off`` time per file.
  (Until 2026-12-04 the main thread read each result file back and parsed it: ~50 us more
  per result.)

Both daemon cases check that every file got exactly one result and the monitored one that
its ``/healthz`` drift section counted every result. Files per case: 600 (CI with
``--benchmark-disable``: 12).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest

import medimg_edge as me

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemon_helpers import BENCH, DaemonProc, daemon_children, make_dirs, results

N_FULL = 600
N_CI = 12
_TIMES: dict[str, float] = {}
_CPU: dict[str, tuple[float, float]] = {}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _daemon_cpu(d: DaemonProc) -> tuple[float, float]:
    """CPU seconds of the daemon's main process and of its workers."""
    assert d.proc is not None
    return _cpu_s(d.proc.pid), sum(_cpu_s(c) for c in daemon_children(d.proc.pid))


def _n(benchmark: Any) -> int:
    return N_CI if getattr(benchmark, "disabled", False) else N_FULL


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], list[Path]]:
    """``corpus(n)``: ``n`` PNG phantoms with an old modification time (made once)."""
    from medimg_edge.training._drift import generated_frames

    root = tmp_path_factory.mktemp("bench-drift")

    @functools.cache
    def make(n: int) -> list[Path]:
        frames = generated_frames("ultrasound", n, seed=77_001, frame_size=256)
        paths = [root / f"f{i:05d}.png" for i in range(n)]
        old = time.time() - 60
        for p, frame in zip(paths, frames, strict=True):
            assert cv2.imwrite(str(p), frame)
            os.utime(p, (old, old))
        return paths

    return make


def _daemon(monitoring: bool) -> DaemonProc:
    root = Path(tempfile.mkdtemp(prefix="bench-drift-watch-"))
    inbox, outbox = make_dirs(root)
    return DaemonProc(
        inbox,
        outbox,
        *BENCH,
        "--workers",
        "2",
        "--health-port",
        "0",
        env={"MEDIMG_EDGE_DRIFT": "1" if monitoring else "0"},
    ).start()


@pytest.mark.parametrize(
    "role", ["daemon-off", "daemon-on", "daemon-off#2", "daemon-on#2", "monitor"]
)
def test_drift_overhead(benchmark: Any, corpus: Any, role: str, tmp_path: Path) -> None:
    n = _n(benchmark)
    files: list[Path] = corpus(n)
    benchmark.group = "drift-overhead"
    if role == "monitor":
        _monitor_case(benchmark, files, tmp_path)
        return
    monitoring = role.startswith("daemon-on")
    holder: dict[str, DaemonProc] = {}
    t0 = 0.0

    cpu0 = (0.0, 0.0)

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        nonlocal t0, cpu0
        holder["d"] = _daemon(monitoring)
        cpu0 = _daemon_cpu(holder["d"])
        t0 = time.perf_counter()
        return (), {}

    def run() -> None:
        d = holder["d"]
        assert d.proc is not None
        for p in files:
            os.link(p, d.inbox / p.name)
        end = time.monotonic() + 600
        while sum(1 for e in os.scandir(d.outbox) if e.name.endswith(".json")) < n:
            assert time.monotonic() < end and d.proc.poll() is None
            time.sleep(0.02)

    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    elapsed = time.perf_counter() - t0
    d = holder["d"]
    cpu1 = _daemon_cpu(d)
    main_cpu, worker_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    if monitoring:
        key = f"us_lesion@{me.load_model('us_lesion', delegate='cpu').package.version}"
        end = time.monotonic() + 60
        while True:
            _, body = d.http("/healthz")
            seen = json.loads(body)["drift"]["models"].get(key, {}).get("frames")
            if seen == n or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert seen == n
    assert d.stop() == 0, d.log_text()[-2000:]
    got = results(d.outbox)
    shutil.rmtree(d.inbox.parent, ignore_errors=True)
    assert len(got) == n and len({r["input"]["sha256"] for r in got}) == n
    _TIMES[role] = elapsed
    info: dict[str, Any] = {
        "label": f"medimg-edge watch, 2 workers, {n} png 256x256, drift monitoring "
        + ("on" if monitoring else "off"),
        "role": "wrapper" if monitoring else "peer",
        "files_per_s": n / elapsed,
        "main_cpu_ms_per_file": 1e3 * main_cpu / n,
        "worker_cpu_ms_per_file": 1e3 * worker_cpu / n,
    }
    _CPU[role] = (main_cpu / n, worker_cpu / n)
    peer = role.replace("-on", "-off")
    if monitoring and peer in _TIMES:  # against the run just before it
        info["throughput_loss"] = 1.0 - _TIMES[peer] / elapsed
        # CPU-bound on two cores, throughput goes with the CPU spent per file: the main
        # process's extra CPU per file over the whole CPU per file (load-independent)
        off_main, off_workers = _CPU[peer]
        info["cpu_overhead"] = (main_cpu / n - off_main) / (off_main + off_workers)
    benchmark.extra_info.update(info)


def _monitor_case(benchmark: Any, files: list[Path], tmp_path: Path) -> None:
    """The main thread's work per result, on real result records written to disk."""
    import logging

    from medimg_edge.daemon._observe import Metrics

    diag = me.Diagnoser("us_lesion", modality="ultrasound", delegate="cpu", num_threads=1)
    outbox = tmp_path / "outbox"
    state = tmp_path / "state"
    outbox.mkdir()
    state.mkdir()
    from medimg_edge.monitor import drift_summary

    rids, summaries = [], []
    for i, p in enumerate(files):
        doc = diag.diagnose(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)).to_dict()
        rid = f"bench-{i}"
        (outbox / f"{rid}.json").write_text(json.dumps(doc) + "\n")
        rids.append(rid)
        summaries.append(json.loads(json.dumps(drift_summary(doc))))  # as off the pipe

    class Cfg:
        pass

    cfg = Cfg()
    cfg.outbox, cfg.state_dir, cfg.models = outbox, state, {}  # type: ignore[attr-defined]
    logging.getLogger("medimg_edge.daemon").setLevel(logging.ERROR)

    trackers: list[Any] = []
    warm = min(200, len(rids))

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        # a running daemon: its model's reference found and the first save done (once
        # per daemon), the window filled
        (state / "drift.json").unlink(missing_ok=True)
        tracker = Metrics().drift
        for rid, summary in zip(rids[:warm], summaries[:warm], strict=True):
            tracker.observe(cfg, rid, summary)
        tracker.save()
        trackers.append(tracker)
        return (), {}

    def run() -> int:
        tracker = trackers[-1]
        for rid, summary in zip(rids, summaries, strict=True):
            tracker.observe(cfg, rid, summary)
            tracker.save()  # throttled: at most one write per 5 s
            tracker.update_gauges()
        return int(next(iter(tracker.section()["models"].values()))["frames"])

    seen = benchmark.pedantic(
        run, setup=setup, rounds=3 if not benchmark.disabled else 1, iterations=1
    )
    assert seen == len(rids) + warm
    t0 = time.perf_counter()
    trackers[-1].save(force=True)  # the write every 5 s: its cost, separately
    save_s = time.perf_counter() - t0
    assert json.loads((state / "drift.json").read_text())["models"]
    per = benchmark.stats.stats.mean / len(rids) if not benchmark.disabled else float("nan")
    info: dict[str, Any] = {
        "label": f"drift monitor per result (read, signals, window, save), {len(rids)} results",
        "role": "component",
        "us_per_result": per * 1e6,
        "save_ms": save_s * 1e3,
    }
    offs = [t for r, t in _TIMES.items() if r.startswith("daemon-off")]
    if offs:
        info["share_of_daemon_time_per_file"] = per / (min(offs) / len(rids))
    off = [c for r, c in _CPU.items() if r.startswith("daemon-off")]
    if off:  # against the whole CPU per file of the daemon without monitoring
        info["share_of_daemon_cpu_per_file"] = per / min(a + b for a, b in off)
    benchmark.extra_info.update(info)
