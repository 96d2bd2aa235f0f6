"""The package layout (issue 15): no import cycle among the modules of ``src/medimg_edge``
(an AST scan of the imports that run when a module is imported), every public module
imports on its own, and no module reaches into another package's private names where a
public one exists (``io``'s safe-file layer, the triage layer)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "medimg_edge"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_nodes(body: list[ast.stmt]) -> list[ast.stmt]:
    """Import statements that run when the module is imported: module level, inside
    ``if`` / ``try`` / ``with`` blocks, not under ``if TYPE_CHECKING`` and not inside
    functions or classes' methods."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _import_time_nodes(node.body)
            out += _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            out += _import_time_nodes(node.body)
            for h in node.handlers:
                out += _import_time_nodes(h.body)
            out += _import_time_nodes(node.orelse) + _import_time_nodes(node.finalbody)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            out += _import_time_nodes(node.body)
    return out


def _resolve(module: str, node: ast.ImportFrom) -> str:
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def imports_of(module: str) -> set[str]:
    """The package modules ``module`` imports when it is imported."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found: set[str] = set()
    for node in _import_time_nodes(tree.body):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.level:
            target = _resolve(module, node)
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        for name in names:
            # the module itself, or the closest enclosing module that exists
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("medimg_edge") and name != module:
                found.add(name)
    return found


def test_no_import_cycle() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    # An edge to an enclosing package (``from . import x`` also names the package) is not
    # a dependency of the module on that package's other contents: keep only edges to the
    # named module when it is a submodule.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".") or d == "medimg_edge"}
        graph[m].discard("medimg_edge")
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_scan_sees_imports() -> None:
    """The scanner itself: it finds the triage layer's real dependencies and ignores
    imports inside functions and under TYPE_CHECKING."""
    deps = imports_of("medimg_edge.triage")
    assert {"medimg_edge.runtime", "medimg_edge.diagnosis", "medimg_edge._clip"} <= deps
    # the reader is imported on first use (diagnose(array) never needs it: cold start)
    assert "medimg_edge.io" not in deps
    assert "medimg_edge.triage" not in imports_of("medimg_edge.diagnosis")  # lazy import
    assert "medimg_edge.diagnosis" not in imports_of("medimg_edge._clip")  # TYPE_CHECKING


PUBLIC = sorted(
    m
    for m in MODULES
    if not any(part.startswith("_") for part in m.split("."))
    and not m.startswith(("medimg_edge.training", "medimg_edge.holdout"))  # [train] extra
)


@pytest.mark.parametrize("module", PUBLIC)
def test_public_module_imports_on_its_own(module: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_no_private_names_across_packages() -> None:
    """Callers use io's public safe-file layer (open_regular, sniff_format, sha256_of,
    find_images, burned_in_annotation) and the triage layer, never io's private modules
    or helpers."""
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("medimg_edge.io"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                target = _resolve(module, node) if node.level else node.module
                if target.startswith("medimg_edge.io._"):
                    offenders.append((module, target))
                if target == "medimg_edge.io":
                    offenders += [(module, a.name) for a in node.names if a.name.startswith("_")]
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "io"
                and node.attr.startswith("_")
            ):
                offenders.append((module, f"io.{node.attr}"))
    assert not offenders, offenders


def test_runtime_does_not_import_denoising() -> None:
    """The runtime loads and runs models; the frame -> model-input step (denoising
    included) is ``medimg_edge.preprocess``, a layer above it: no module of
    ``medimg_edge.runtime`` imports ``denoise`` or ``preprocess``, at any level (function
    bodies included)."""
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith("medimg_edge.runtime"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, node) if node.level else (node.module or "")
                names = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith(("medimg_edge.denoise", "medimg_edge.preprocess")):
                    offenders.append((module, name))
    assert not offenders, offenders
    assert "medimg_edge.preprocess" in MODULES
    assert {"medimg_edge.denoise", "medimg_edge.runtime"} <= imports_of("medimg_edge.preprocess")


_TOP_LEVEL_PROBE = r"""
import sys
import medimg_edge as me
lazy = ("medimg_edge.triage", "medimg_edge.io", "medimg_edge.synth", "medimg_edge.batch")
print(sorted(m for m in lazy if m in sys.modules))
from medimg_edge import triage
assert me.diagnose_file is triage.diagnose_file and me.diagnose_clip is triage.diagnose_clip
assert me.Triage is triage.Triage and me.TriageResult is triage.TriageResult
assert me.preprocess.to_model_input is me.runtime.to_model_input
missing = [n for n in me.__all__ if not hasattr(me, n)]
assert not missing, missing
assert set(me.__all__) <= set(dir(me))
"""


def test_top_level_exports_the_triage_entry_points_lazily() -> None:
    """``me.diagnose_file`` / ``me.diagnose_clip`` / ``me.Triage`` are the triage layer's;
    ``import medimg_edge`` does not import it (nor the file readers, the phantoms or the
    batch engine): they load on first use.  Every name in ``__all__`` resolves."""
    run = subprocess.run(
        [sys.executable, "-c", _TOP_LEVEL_PROBE], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]", run.stdout
