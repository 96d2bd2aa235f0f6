"""Watch-folder daemon (issue 7): real daemon processes, real writer processes, real files.

Every wait has a generous liveness bound (``daemon_helpers.WAIT_S``); nothing here asserts
a speed.  The fault tests (kill -9, poison files, malformed inputs) are in
``test_daemon_faults.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")

from daemon_helpers import (
    FAST,
    WAIT_S,
    DaemonProc,
    make_dirs,
    png_bytes,
    reasons,
    results,
    sha256,
    temp_files,
    wait_for,
    write_files,
    writer_process,
)
from medimg_edge.daemon import ConfigError, Ledger, load_config, unit_file


def _ledger_states(outbox: Path) -> Counter[str]:
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    try:
        return Counter(r.state for r in led.all_rows())
    finally:
        led.close()


# ---- configuration -------------------------------------------------------------------------


def test_config_validation(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    base = {"inbox": inbox, "outbox": outbox}
    cfg = load_config(None, {**base, "modality": "xray"})
    assert cfg.processed_dir == outbox / "processed"
    assert cfg.failed_dir == outbox / "failed"
    assert cfg.is_ignored("a.part") and cfg.is_ignored(".x.png") and cfg.is_ignored("b.tmp")
    assert cfg.is_ignored("~syncthing~a.png.tmp") and cfg.is_ignored(".syncthing.a.png")
    assert not cfg.is_ignored("a.png")
    bad = [
        ({"workers": 0}, "workers"),
        ({"workers": "2"}, "workers"),
        ({"modality": "ct"}, "modality"),
        ({"settle_seconds": -1}, "settle_seconds"),
        ({"health_host": "0.0.0.0"}, "loopback"),
        ({"health_host": "10.1.2.3"}, "loopback"),
        ({"outbox": inbox / "out"}, "inside the inbox"),
        ({"colour": "red"}, "unknown key"),
    ]
    for extra, words in bad:
        with pytest.raises(ConfigError, match=words):
            load_config(None, {**base, **extra})
    toml = tmp_path / "watch.toml"
    toml.write_text(
        'modality = "xray"\nsettle_seconds = 1.5\nignore = ["*.bak"]\n'
        '[folders]\n"us" = "ultrasound"\n"us/cardiac" = "ultrasound"\n'
    )
    cfg = load_config(toml, base)
    assert cfg.settle_seconds == 1.5 and cfg.is_ignored("x.bak") and cfg.is_ignored("y.part")
    assert cfg.modality_for("a.png") == "xray"
    assert cfg.modality_for("us/a.png") == "ultrasound"
    assert cfg.modality_for("us/cardiac/b/a.png") == "ultrasound"
    toml.write_text("settle_seconds = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(toml, base)
    toml.write_text('[folders]\n"../x" = "xray"\n')
    with pytest.raises(ConfigError, match="inside the inbox"):
        load_config(toml, base)


def test_unit_file_ships() -> None:
    text = unit_file()
    for needle in ("Type=notify", "WatchdogSec=", "ExecReload=", "NoNewPrivileges=yes"):
        assert needle in text


def test_cli_overrides_are_the_config_keys(tmp_path: Path) -> None:
    """Both parsers (``medimg-edge watch`` and ``python -m medimg_edge.cli.watch``) give
    the same overrides: every option named like its config key, nothing else (no
    ``command`` / ``func`` / ``config`` / ``exit_when_idle``); load_config takes them."""
    import argparse

    from medimg_edge.cli import build_parser
    from medimg_edge.cli import watch as _cli_watch

    inbox, outbox = make_dirs(tmp_path)
    argv = [str(inbox), "--out", str(outbox), "--sr", "--workers", "3", "--settle", "1.5"]
    argv += ["--log-level", "INFO", "--exit-when-idle", "--modality", "xray"]
    standalone = argparse.ArgumentParser()
    _cli_watch._add_arguments(standalone)
    got = [
        _cli_watch._overrides(build_parser().parse_args(["watch", *argv])),
        _cli_watch._overrides(standalone.parse_args(argv)),
    ]
    assert got[0] == got[1]
    assert list(got[0]) == [
        "modality",
        "override_dicom_modality",
        "overlay",
        "sr",
        "sc",
        "deidentify",
        "sr_series_number",
        "record_source_name",
        "workers",
        "settle_seconds",
        "rescan_seconds",
        "timeout_seconds",
        "max_attempts",
        "min_free_mb",
        "health_port",
        "log_level",
        "shadow",
        "dicom_port",
        "ae_title",
        "allow_ae",
        "dicom_host",
        "tls_cert",
        "tls_key",
        "tls_ca",
        "forward",
        "inbox",
        "outbox",
    ]
    assert got[0]["sr"] is True and got[0]["overlay"] is None and got[0]["workers"] == 3
    assert got[0]["inbox"] == str(inbox) and got[0]["outbox"] == str(outbox)
    config = load_config(None, got[0])
    assert config.workers == 3 and config.settle_seconds == 1.5 and config.sr is True


def test_cli_config_error_exit_2(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    d = DaemonProc(inbox, outbox, "--workers", "0").start(wait=False)
    assert d.proc is not None and d.proc.wait(timeout=60) == 2
    assert "workers" in d.log_text()


def test_one_daemon_per_inbox_and_outbox(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    first = DaemonProc(inbox, outbox, *FAST).start()
    for other_out in (outbox, tmp_path / "outbox2"):
        second = DaemonProc(inbox, other_out, *FAST, log=tmp_path / "second.log")
        second.start(wait=False)
        assert second.proc is not None and second.proc.wait(timeout=60) == 2
        assert "another medimg-edge watch is running" in second.log_text()
    assert first.stop() == 0


# ---- the main flow -------------------------------------------------------------------------


def test_concurrent_writers_exactly_once(tmp_path: Path) -> None:
    """1000 PNGs from 8 writer processes (direct, slow chunked, temp-then-rename,
    .part-then-rename; into the inbox and into subfolders created after the start):
    every file gives exactly one result, none is read before it is complete."""
    inbox, outbox = make_dirs(tmp_path)
    d = DaemonProc(inbox, outbox, *FAST, "--workers", "2", "--health-port", "0").start()
    plan = [
        ("direct", inbox, 0, 250),
        ("rename", inbox, 250, 200),
        ("part", inbox / "later" / "deep", 450, 200),
        ("direct", inbox / "later2", 650, 200),
        ("chunked", inbox / "slow", 850, 60),
        ("chunked", inbox, 910, 40),
        ("rename", inbox / "later3", 950, 50),
    ]
    writers = [writer_process(mode, folder, start, n) for mode, folder, start, n in plan]
    for w in writers:
        assert w.wait(timeout=300) == 0
    expected = {sha256(png_bytes(i)) for i in range(1000)}
    wait_for(lambda: len(list(outbox.glob("*.json"))) >= 1000, "1000 results")
    wait_for(lambda: not any(p.is_file() for p in inbox.rglob("*")), "inbox emptied")
    got = results(outbox)
    assert len(got) == 1000
    shas = [r["input"]["sha256"] for r in got]
    assert Counter(shas).most_common(1)[0][1] == 1  # no duplicate
    assert set(shas) == expected  # every file, complete (a partial read has another hash)
    assert all(r["status"] in ("positive", "negative", "indeterminate") for r in got)
    assert len(list((outbox / "processed").iterdir())) == 1000
    assert not list((outbox / "failed").iterdir())
    # names carry the id only
    ids = {r["id"] for r in got}
    assert {p.stem for p in outbox.glob("*.json")} == ids
    assert not any("img_" in p.name for p in outbox.rglob("*"))
    code, body = d.http("/metrics")
    assert code == 200 and b"medimg_edge_files_processed_total 1000.0" in body
    assert d.stop() == 0
    assert _ledger_states(outbox) == Counter({"done": 1000})
    assert not temp_files(outbox)
    # permissions: outputs 0600, folders 0700
    some = next(outbox.glob("*.json"))
    assert stat.S_IMODE(some.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert stat.S_IMODE((outbox / ".medimg-edge" / "ledger.sqlite").stat().st_mode) == 0o600


_SIGNAL_STORM = """
import os, signal, sys, threading, time
from medimg_edge.daemon._finish import Waker
w = Waker()
handled = 0
def on_signal(signum, frame):  # what the daemon's handler does: flags and a wake-up
    global handled
    handled += 1
    w.set()
signal.signal(signal.SIGUSR1, on_signal)
def storm():
    while True:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.00002)
threading.Thread(target=storm, daemon=True).start()
end, woken = time.monotonic() + 3.0, 0
while time.monotonic() < end:  # the main loop: waits that signals interrupt
    woken += w.wait(0)
print(handled, woken)
"""


def test_signal_handler_wakeup_cannot_deadlock_the_main_loop() -> None:
    """The daemon's signal handler wakes the main loop through :class:`Waker`. With a
    ``threading.Event`` a handler that interrupts the main thread while it holds the
    Event's lock (inside ``wait``/``clear``) blocks on that lock forever: one SIGTERM
    left a CI daemon unable to stop. Thousands of signals landing in the middle of the
    main loop's waits: every one handled, the loop keeps running (an Event there dies of
    the handler's recursion on its own lock or hangs, measured 2026-12-04)."""
    r = subprocess.run(
        [sys.executable, "-c", _SIGNAL_STORM], capture_output=True, text=True, timeout=WAIT_S
    )
    assert r.returncode == 0, r.stderr[-2000:]
    handled, woken = (int(v) for v in r.stdout.split())
    assert handled > 100 and woken > 50


def test_sigterm_finishes_in_flight_and_restart_completes(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    write_files("direct", inbox, 0, 300, size=256)
    d = DaemonProc(inbox, outbox, *FAST, "--overlay").start()
    wait_for(lambda: len(list(outbox.glob("*.json"))) >= 5, "some results")
    d.signal(signal.SIGTERM)
    assert d.proc is not None and d.proc.wait(timeout=120) == 0
    events = [e.get("event") for e in d.log_events()]
    assert "stopping" in events and events[-1] == "stopped"
    states = _ledger_states(outbox)
    assert states["processing"] == 0  # in-flight files were finished, queued ones given back
    assert not temp_files(outbox)
    done = len(list(outbox.glob("*.json")))
    assert done == len(list((outbox / "processed").iterdir())) == states["done"]
    left = len([p for p in inbox.iterdir() if p.is_file()])
    assert done + left == 300 and left > 0
    # every JSON has its overlay: no partial output set
    assert {p.name.split(".")[0] for p in outbox.glob("*.overlay.png")} == {
        p.stem for p in outbox.glob("*.json")
    }
    d2 = DaemonProc(inbox, outbox, *FAST, "--overlay", "--exit-when-idle").start(wait=False)
    assert d2.proc is not None and d2.proc.wait(timeout=120) == 0
    got = results(outbox)
    assert len(got) == 300 and len({r["input"]["sha256"] for r in got}) == 300
    assert len(list(outbox.glob("*.overlay.png"))) == 300


def test_sighup_reload_and_disk_threshold_pause(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    toml = tmp_path / "watch.toml"
    toml.write_text("min_free_mb = 1e12\n")  # absurd: intake pauses
    d = DaemonProc(inbox, outbox, *FAST, "--config", str(toml), "--health-port", "0").start()
    write_files("direct", inbox, 0, 20)

    def health() -> dict[str, object]:
        code, body = d.http("/healthz")
        assert code == 200
        doc: dict[str, object] = json.loads(body)
        return doc

    wait_for(lambda: health()["paused"] is True, "paused")
    scans = int(str(health()["scans"]))
    wait_for(lambda: int(str(health()["scans"])) >= scans + 3, "three more scans")
    assert not list(outbox.glob("*.json"))  # nothing taken while paused
    assert health()["queue_depth"] == 20
    _, body = d.http("/metrics")
    assert b"medimg_edge_intake_paused 1.0" in body
    # a broken config is refused on reload: the daemon keeps the old one and runs on
    toml.write_text("min_free_mb = 'lots'\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload_failed" in d.log_text(), "reload refused")
    assert d.proc is not None and d.proc.poll() is None
    toml.write_text("min_free_mb = 0\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: len(list(outbox.glob("*.json"))) == 20, "all 20 after resume")
    assert health()["paused"] is False
    events = [e.get("event") for e in d.log_events()]
    assert "paused" in events and "reloaded" in events and "resumed" in events
    assert d.stop() == 0


def _listening_addresses(port: int) -> list[str]:
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st = fields[1], fields[3]
            addr, p = local.split(":")
            if int(p, 16) == port and st == "0A":  # LISTEN
                out.append(addr)
    return out


def test_health_and_metrics_loopback_only(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    d = DaemonProc(inbox, outbox, *FAST, "--health-port", "0").start()
    write_files("direct", inbox, 0, 5)
    wait_for(lambda: len(list(outbox.glob("*.json"))) == 5, "5 results")
    host, port = d.status()["health"]
    assert host == "127.0.0.1"
    assert _listening_addresses(port) == ["0100007F"]  # 127.0.0.1, nothing else
    code, body = d.http("/healthz")
    doc = json.loads(body)
    assert code == 200 and doc["status"] == "ok" and doc["watcher"] is True
    # The result files appear when the finisher has written them; the counters move when
    # the main loop applies the outcome just after: wait for that, then check everything.
    wait_for(
        lambda: "medimg_edge_files_processed_total 5.0" in d.http("/metrics")[1].decode(),
        "the processed counter at 5",
    )
    code, body = d.http("/metrics")
    text = body.decode()
    assert code == 200
    for name in (
        "medimg_edge_files_processed_total 5.0",
        "medimg_edge_queue_depth",
        "medimg_edge_processing_seconds_bucket",
        "medimg_edge_processing_seconds_count 5.0",
    ):
        assert name in text
    assert d.http("/nope")[0] == 404
    assert d.stop() == 0


def test_sd_notify_ready_watchdog_reload_stopping(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(WAIT := 60.0)
        env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"}
        d = DaemonProc(inbox, outbox, *FAST, env=env).start(wait=False)
        got: list[str] = []

        def until(word: str) -> None:
            end = time.monotonic() + WAIT
            while time.monotonic() < end:
                msg = sock.recv(4096).decode()
                got.append(msg)
                if word in msg:
                    return
            raise AssertionError(f"no {word} in {got}")

        until("READY=1")
        until("WATCHDOG=1")
        until("WATCHDOG=1")
        d.signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1")
        d.signal(signal.SIGTERM)
        until("STOPPING=1")
        assert d.proc is not None and d.proc.wait(timeout=60) == 0


def test_rename_inside_inbox_is_one_input(tmp_path: Path) -> None:
    """A file renamed inside the inbox before it settles stays one input (same inode)."""
    inbox, outbox = make_dirs(tmp_path)
    d = DaemonProc(inbox, outbox, "--modality", "ultrasound", "--settle", "2", "--rescan", "0.2")
    d.start()
    (inbox / "a.png").write_bytes(png_bytes(1))
    wait_for(lambda: "event" in d.log_text() and d.status() is not None, "running")
    wait_for(
        lambda: _ledger_count(outbox) == 1,
        "first sighting in the ledger",
    )
    os.rename(inbox / "a.png", inbox / "b.png")
    wait_for(lambda: len(list(outbox.glob("*.json"))) == 1, "one result")
    assert d.stop() == 0
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    rows = led.all_rows()
    led.close()
    assert [(r.path, r.state) for r in rows] == [("b.png", "done")]


def _ledger_count(outbox: Path) -> int:
    try:
        led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    except Exception:
        return 0
    try:
        return len(led.all_rows())
    finally:
        led.close()


def test_symlink_out_of_inbox_not_followed(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(7))
    (inbox / "sub").mkdir()
    os.symlink(outside, inbox / "sub" / "link.png")
    os.symlink(tmp_path, inbox / "dirlink")  # a symlinked folder is not descended
    (inbox / "real.png").write_bytes(png_bytes(8))
    d = DaemonProc(inbox, outbox, *FAST, "--exit-when-idle").start(wait=False)
    assert d.proc is not None and d.proc.wait(timeout=120) == 0
    got = results(outbox)
    assert [r["input"]["sha256"] for r in got] == [sha256(png_bytes(8))]
    codes = sorted(r["code"] for r in reasons(outbox))
    assert codes == ["symlink_outside_inbox", "symlink_outside_inbox"]
    assert outside.read_bytes() == png_bytes(7)  # untouched
    quarantined = [p for p in (outbox / "failed").iterdir() if p.is_symlink()]
    assert len(quarantined) == 2  # the links themselves were moved, never their targets


def test_modalities_multiframe_and_worker_limits(tmp_path: Path) -> None:
    """Modality from the DICOM tag, from a folder rule, or none (quarantined); a cine is
    diagnosed on sampled frames with an aggregate; the workers run under RLIMIT_AS and
    RLIMIT_CPU; SIGINT stops cleanly; every log line is a JSON object."""
    from daemon_helpers import daemon_children, dicom_bytes

    inbox, outbox = make_dirs(tmp_path)
    toml = tmp_path / "watch.toml"
    toml.write_text(
        "settle_seconds = 0.3\nrescan_seconds = 0.5\nmemory_limit_mb = 3000\ncpu_seconds = 77\n"
        '[folders]\n"cxr" = "xray"\n"us" = "ultrasound"\n'
    )
    d = DaemonProc(inbox, outbox, "--config", str(toml)).start()
    (inbox / "cxr").mkdir()
    (inbox / "us").mkdir()
    (inbox / "cxr" / "a.png").write_bytes(png_bytes(1, 256))
    (inbox / "us" / "b.png").write_bytes(png_bytes(2, 128))
    (inbox / "nomodality.png").write_bytes(png_bytes(3))
    (inbox / "cine.dcm").write_bytes(dicom_bytes(frames=7, name="CINE^TEST"))
    wait_for(lambda: len(results(outbox)) == 3 and len(reasons(outbox)) == 1, "4 records")
    assert d.proc is not None
    for pid in daemon_children(d.proc.pid):
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
        assert line.split()[3] == str(3000 << 20)
        cpu = next(x for x in limits.splitlines() if x.startswith("Max cpu time"))
        assert cpu.split()[3] != "unlimited"  # the per-file CPU budget is armed
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in results(outbox):
        by_kind.setdefault(str(r["input"]["kind"]), []).append(r)
    mods = sorted((r["input"]["modality"], r["input"]["modality_source"]) for r in by_kind["png"])
    assert mods == [("ultrasound", "config"), ("xray", "config")]
    (cine,) = by_kind["dicom"]
    inp = cine["input"]
    assert inp["modality"] == "ultrasound" and inp["modality_source"] == "dicom"
    assert inp["frames_in_file"] == 7 and inp["frames_diagnosed"] == 3
    frames = cine["frame_results"]
    assert [f["frame_index"] for f in frames] == [0, 3, 6]
    assert cine["input"]["frame_index"] in (0, 3, 6)
    assert "aggregate" in cine
    (bad,) = reasons(outbox)
    assert bad["code"] == "unknown_modality"
    d.signal(signal.SIGINT)
    assert d.proc.wait(timeout=120) == 0
    for line in d.log_text().splitlines():
        doc = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(doc)
    assert "CINE" not in d.log_text()
