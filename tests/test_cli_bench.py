"""``medimg-edge bench``: finds the suites, runs them, prints tables and machine facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg_edge.cli import main
from medimg_edge.cli.bench import find_suite, machine_facts

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_find_suite(tmp_path: Path) -> None:
    assert find_suite(str(BENCH)) == BENCH
    assert find_suite(str(tmp_path)) in (None, BENCH)  # falls back to the checkout


def test_machine_facts() -> None:
    facts = machine_facts()
    assert facts["logical_cpus"] >= 1 and facts["simd_active"] in facts["simd_supported"]
    assert facts["runtime"]["name"] == "litert"


def test_bench_command_runs_a_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--suite", str(BENCH), "-k", "quantize", "--quick", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "Machine:" in text and "governor" in text and "#### `quantize-224`" in text
    data = json.loads(out.read_text())
    assert {b["group"] for b in data["benchmarks"]} == {"quantize-224"}
    assert data["machine_info"]["medimg_edge_device"]["simd_active"]


def test_bench_command_without_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("medimg_edge.cli.bench.find_suite", lambda explicit: None)
    assert main(["bench", "--suite", str(tmp_path)]) == 2
