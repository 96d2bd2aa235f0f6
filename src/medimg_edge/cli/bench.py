"""``medimg-edge bench``: run the pytest-benchmark suites on this machine and print the
comparison tables (ours vs peers, per SIMD target) with the machine facts.

The suites live in ``bench/`` of the source tree (they need the ``[test]`` extra:
pytest-benchmark, scikit-image). The command finds them with ``--suite DIR``, else
``./bench``, else beside the installed package in a source checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import HelpFormatter

__all__ = ["BENCH_HELP", "add_parser", "cmd_bench", "find_suite", "machine_facts"]

BENCH_HELP = """\
Run the pytest-benchmark suites on this machine and print the comparison tables (ours vs
peers, per SIMD target) with the machine facts.  The suites live in bench/ of the source
tree and need the [test] extra (pytest-benchmark, scikit-image); they are found with
--suite DIR, else ./bench, else beside the installed package in a source checkout.
"""


def find_suite(explicit: str | None) -> Path | None:
    """The ``bench/`` folder to run (None if none is found)."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path.cwd() / "bench", Path(__file__).resolve().parents[2] / "bench"]
    for c in candidates:
        if (c / "conftest.py").is_file() and (c / "report.py").is_file():
            return c
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    """CPU model, governor, SIMD target, runtime: what a device maker reports."""
    from .. import info

    cpu = platform.processor() or platform.machine()
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Hardware", "Model")):
            cpu = line.partition(":")[2].strip()
            break
    data = info()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unknown",
        "simd_active": data["simd"]["active"],
        "simd_supported": data["simd"]["supported"],
        "runtime": data["runtime"],
        "edgetpu": data["edgetpu"],
        "python": data["python"],
        "platform": data["platform"],
        "medimg_edge": data["version"],
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suites here and print ours-vs-peers tables",
        description=BENCH_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--suite", metavar="DIR", help="the bench/ folder (default: found)")
    p.add_argument("--json", metavar="OUT", help="keep pytest-benchmark's JSON here")
    p.add_argument("-k", metavar="EXPR", help="only benchmarks matching EXPR (pytest -k)")
    p.add_argument("--quick", action="store_true", help="fewer rounds (max 0.2 s per benchmark)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    suite = find_suite(args.suite)
    if suite is None:
        print(
            "error: no benchmark suite found: pass --suite path/to/medimg-edge/bench (the "
            "bench/ folder of a source checkout)",
            file=sys.stderr,
        )
        return 2
    if importlib.util.find_spec("pytest_benchmark") is None:
        print(
            'error: pytest-benchmark is missing: pip install "medimg-edge[test]"', file=sys.stderr
        )
        return 2
    facts = machine_facts()
    print("Machine:")
    for key, value in facts.items():
        print(f"  {key:<15}: {value}")
    if facts["governor"] not in ("performance", "unknown"):
        print(
            f"  note: CPU governor is {facts['governor']!r}; 'performance' gives steadier numbers"
        )
    out = Path(args.json) if args.json else Path(tempfile.mkdtemp()) / "bench.json"
    cmd = [sys.executable, "-m", "pytest", str(suite), "--benchmark-only", "-q"]
    cmd += ["-p", "no:cacheprovider", f"--benchmark-json={out}"]
    if args.quick:
        cmd += ["--benchmark-max-time=0.2", "--benchmark-min-rounds=3"]
    if args.k:
        cmd += ["-k", args.k]
    print("+ " + " ".join(cmd), flush=True)
    code = subprocess.call(cmd)
    if not out.is_file():
        print("error: the benchmark run produced no results", file=sys.stderr)
        return 1
    spec = importlib.util.spec_from_file_location("medimg_bench_report", suite / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    print(report.render([str(out)]))
    data = json.loads(out.read_text(encoding="utf-8"))
    data.setdefault("machine_info", {})["medimg_edge_device"] = facts
    out.write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(f"\nJSON: {out}")
    return 0 if code == 0 else 1
