"""Markdown report of a pytest-benchmark run of ``bench/``.

Usage::

    python -m pytest bench --benchmark-only --benchmark-json=/tmp/bench.json
    python bench/report.py /tmp/bench.json [/tmp/bench2.json ...]

Prints, for the first JSON file (or the N-th with ``--tables N``): the machine facts
(CPU model, medimg-edge SIMD targets, library versions; recorded by ``bench/conftest.py``
at run time, or read from this machine if the JSON lacks them), one table per benchmark
group (median ms, speed-up vs the group's scalar path, vs its NumPy implementation and vs
its OpenCV + NumPy composition, PSNR gain), a speed-vs-quality table of every method on
the speckle image, and the issue-2 speed targets, measured in every JSON file given (one
column per run).

A speed-up is ``median(reference) / median(row)``: above 1 means the row is faster.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

GROUP_ORDER = [
    "srad-1it",
    "srad-10it",
    "lee-7x7",
    "kuan-7x7",
    "frost-7x7",
    "anscombe",
    "inverse-anscombe",
    "estimate-noise",
    "xray-pipeline",
    "speckle-denoisers",
]
TARGET_ORDER = ["scalar", "sse4", "avx2", "avx512", "neon"]
ROLE_ORDER = {"target": 0, "numpy": 1, "opencv+numpy": 2, "peer": 3}

# (group, reference role, required speed-up of the best SIMD target)
TARGETS: list[tuple[str, str, float]] = [
    ("srad-1it", "numpy", 5.0),
    ("srad-1it", "scalar", 4.0),
    ("lee-7x7", "opencv+numpy", 5.0),
    ("kuan-7x7", "opencv+numpy", 5.0),
    ("frost-7x7", "opencv+numpy", 5.0),
]
REFERENCE_NAMES = {
    "numpy": "the NumPy implementation",
    "scalar": "the scalar path",
    "opencv+numpy": "the OpenCV + NumPy composition",
}


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def rows_by_group(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        stats = bench.get("stats") or {}
        if "median" not in stats:
            continue
        row = {
            "name": bench.get("name", "?"),
            "label": info.get("label", bench.get("name", "?")),
            "role": info.get("role", "peer"),
            "target": info.get("target", ""),
            "image": info.get("image", ""),
            "ms": 1e3 * float(stats["median"]),
            "iqr_ms": 1e3 * float(stats.get("iqr", 0.0)),
            "rounds": int(stats.get("rounds", 0)),
            "psnr_gain_db": info.get("psnr_gain_db"),
        }
        groups.setdefault(bench.get("group") or "(no group)", []).append(row)
    for rows in groups.values():
        rows.sort(key=_row_key)
    return dict(sorted(groups.items(), key=lambda kv: _group_key(kv[0])))


def _row_key(row: dict[str, Any]) -> tuple[int, int, str]:
    target = row["target"]
    t = TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER)
    return ROLE_ORDER.get(row["role"], 9), t, row["name"]


def _group_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def reference_ms(rows: list[dict[str, Any]], ref: str) -> float | None:
    """Median ms of the group's scalar path / NumPy implementation / OpenCV composition."""
    for row in rows:
        if ref == "scalar" and row["role"] == "target" and row["target"] == "scalar":
            return float(row["ms"])
        if ref != "scalar" and row["role"] == ref:
            return float(row["ms"])
    return None


def best_target(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    own = [r for r in rows if r["role"] == "target"]
    return min(own, key=lambda r: r["ms"]) if own else None


def _ratio(ref: float | None, ms: float) -> str:
    return f"{ref / ms:.2f}x" if ref is not None and ms > 0 else "–"


def _ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def _db(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):+.2f}"


def group_table(group: str, rows: list[dict[str, Any]]) -> list[str]:
    scalar, numpy_, composed = (
        reference_ms(rows, "scalar"),
        reference_ms(rows, "numpy"),
        reference_ms(rows, "opencv+numpy"),
    )
    out = [
        f"#### `{group}`",
        "",
        "| benchmark | implementation | target | median ms | IQR ms | rounds "
        "| vs scalar | vs NumPy | vs OpenCV+NumPy | PSNR gain dB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| `{r['name']}` | {r['label']} | {r['target']} | {_ms(r['ms'])} "
            f"| {_ms(r['iqr_ms'])} | {r['rounds']} | {_ratio(scalar, r['ms'])} "
            f"| {_ratio(numpy_, r['ms'])} | {_ratio(composed, r['ms'])} "
            f"| {_db(r['psnr_gain_db'])} |"
        )
    out.append("")
    return out


def speckle_summary(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every method run on the speckle image; medimg_edge at its best target only."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for group, grows in groups.items():
        best = best_target(grows)
        for r in grows:
            if r["image"] != "speckle" or r["psnr_gain_db"] is None:
                continue
            if r["role"] == "target" and r is not best:
                continue
            rows.append((group, r))
    if not rows:
        return []
    rows.sort(key=lambda gr: gr[1]["ms"])
    out = [
        "| method | group | target | median ms | frames/s | PSNR gain dB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for group, r in rows:
        fps = 1e3 / r["ms"] if r["ms"] > 0 else float("inf")
        out.append(
            f"| {r['label']} | {group} | {r['target']} | {_ms(r['ms'])} | {fps:,.0f} "
            f"| {_db(r['psnr_gain_db'])} |"
        )
    out.append("")
    return out


def measure_targets(groups: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    results = []
    for group, ref, required in TARGETS:
        rows = groups.get(group, [])
        best = best_target(rows)
        ref_ms = reference_ms(rows, ref)
        speedup = ref_ms / best["ms"] if best is not None and ref_ms else None
        results.append(
            {
                "group": group,
                "ref": ref,
                "required": required,
                "best": best["target"] if best else None,
                "best_ms": best["ms"] if best else None,
                "ref_ms": ref_ms,
                "speedup": speedup,
            }
        )
    return results


def targets_table(runs: list[dict[str, list[dict[str, Any]]]]) -> list[str]:
    measured = [measure_targets(groups) for groups in runs]
    head = "| target | required |"
    rule = "|---|---:|"
    for i in range(len(runs)):
        head += f" run {i + 1}: best target, ms vs reference ms, speed-up |"
        rule += "---|"
    out = [head + " met in |", rule + "---|"]
    for k, (group, ref, required) in enumerate(TARGETS):
        line = f"| `{group}` best target vs {REFERENCE_NAMES[ref]} | >= {required:g}x |"
        met = 0
        for run in measured:
            m = run[k]
            if m["speedup"] is None:
                line += " not measured |"
                continue
            ok = m["speedup"] >= required
            met += ok
            line += (
                f" {m['best']}: {_ms(m['best_ms'])} vs {_ms(m['ref_ms'])} ms, "
                f"**{m['speedup']:.2f}x** {'(met)' if ok else '(NOT met)'} |"
            )
        out.append(line + f" {met}/{len(runs)} runs |")
    out.append("")
    return out


def machine_facts(data: dict[str, Any]) -> dict[str, Any]:
    facts = (data.get("machine_info") or {}).get("medimg_edge_bench")
    if facts:
        return dict(facts)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import machine_facts as live

    facts = live()
    facts["note"] = "read from this machine at report time (not recorded in the JSON)"
    return facts


def machine_section(data: dict[str, Any]) -> list[str]:
    f = machine_facts(data)
    info = f.get("medimg_edge", {})
    simd = info.get("simd", {})
    lines = [
        "| fact | value |",
        "|---|---|",
        f"| CPU | {f.get('cpu_model', '?')}, {f.get('logical_cpus', '?')} logical CPUs |",
        f"| CPU SIMD flags | {f.get('cpu_simd_flags', '?')} |",
        f"| medimg-edge | {info.get('version', '?')}, built with {info.get('compiler', '?')} |",
        f"| SIMD targets compiled | {', '.join(simd.get('compiled', []))} |",
        f"| SIMD targets supported here | {', '.join(simd.get('supported', []))} |",
        f"| SIMD target active (no cap) | {simd.get('active', '?')} |",
        f"| Python | {f.get('python', '?')} |",
        f"| NumPy | {f.get('numpy', '?')} |",
        f"| OpenCV | {f.get('opencv', '?')} (threads: {f.get('opencv_threads', '?')}) |",
        f"| scikit-image | {f.get('skimage', '?')} |",
        f"| platform | {f.get('platform', '?')} |",
    ]
    if data.get("datetime"):
        lines.append(f"| run at | {data['datetime']} |")
    if f.get("note"):
        lines.append(f"| note | {f['note']} |")
    lines.append("")
    return lines


def runtime_overhead(runs: list[dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Issue-4 target: Model.predict vs the bare interpreter, per predict-* group and run."""
    names = sorted({g for groups in runs for g in groups if g.startswith("predict-")})
    if not names:
        return []
    head = "| group | " + " | ".join(
        f"run {k + 1}: predict / bare ms, overhead" for k in range(len(runs))
    )
    lines = [head + " |", "|---|" + "---|" * len(runs)]
    for name in names:
        cells = []
        for groups in runs:
            rows = {r["role"]: r for r in groups.get(name, [])}
            if "wrapper" in rows and "bare" in rows:
                w, b = rows["wrapper"]["ms"], rows["bare"]["ms"]
                cells.append(
                    f"{w:.3f} / {b:.3f} ms, {100.0 * (w / b - 1.0):+.1f}% ({1e3 * (w - b):+.0f} us)"
                )
            else:
                cells.append("-")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def render(paths: list[str], tables: int = 1) -> str:
    if not 1 <= tables <= len(paths):
        raise SystemExit(f"--tables must be between 1 and {len(paths)}")
    datas = [load(p) for p in paths]
    runs = [rows_by_group(d) for d in datas]
    groups = runs[tables - 1]
    out = ["### Machine", "", *machine_section(datas[tables - 1])]
    out += ["### Results per group", ""]
    if len(paths) > 1:
        out += [f"Tables from run {tables} (`{paths[tables - 1]}`).", ""]
    for group, rows in groups.items():
        out += group_table(group, rows)
    summary = speckle_summary(groups)
    if summary:
        out += ["### Speed vs quality on the speckle image", "", *summary]
    out += ["### Targets (issue 2)", "", *targets_table(runs)]
    overhead = runtime_overhead(runs)
    if overhead:
        out += ["### Runtime overhead (issue 4: Model.predict vs bare invoke, < 5%)", "", *overhead]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON file(s)")
    parser.add_argument(
        "--tables", type=int, default=1, help="print the group tables of the N-th file"
    )
    args = parser.parse_args(argv)
    print(render(args.json, args.tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
