"""The ``medimg-edge`` command line (src/medimg_edge/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge.cli import main


def test_info_text(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"medimg-edge {me.__version__}" in out
    assert me.simd.active_target() in out
    assert "MEDIMG_EDGE_SIMD" in out


def test_info_json_matches_api(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == me.__version__
    assert data["simd"]["active"] == me.simd.active_target()
    assert data["simd"]["compiled"] == list(me.simd.compiled_targets())


def test_demo_prints_table_and_writes_labelled_pngs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "96", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "Not for clinical use" in out
    denoising, _, diagnosis = out.partition("Diagnosis with the reference models")
    assert diagnosis, "the demo must diagnose with the reference models"
    rows = [line for line in denoising.splitlines() if line.startswith(("ultrasound ", "xray "))]
    assert len(rows) == 5  # 4 speckle methods + the X-ray preset
    for row in rows:
        gain = float(row.split()[-1])
        assert gain > 1.0, row  # every method must improve PSNR on the sample frames
    us = cv2.imread(str(tmp_path / "demo_ultrasound.png"))
    xr = cv2.imread(str(tmp_path / "demo_xray.png"))
    assert us is not None and us.shape == (96, 96 * 5, 3)
    assert xr is not None and xr.shape == (96, 96 * 2, 3)
    assert np.ptp(us) > 100 and np.ptp(xr) > 100  # real pictures, not blank canvases
    # The diagnosis table: 2 X-ray and 4 ultrasound phantom frames (truth, status, label).
    drows = [line.split() for line in diagnosis.splitlines()]
    drows = [r for r in drows if r and r[0] in ("ultrasound", "xray")]
    assert [r[1] for r in drows] == [
        "normal", "nodule", "normal", "cyst", "hypoechoic", "hyperechoic"
    ]  # fmt: skip
    us_rows = [r for r in drows if r[0] == "ultrasound"]
    assert sum(r[1] == r[3] for r in us_rows) >= 3  # the reference model is ~97% accurate
    for name in ("diagnose_ultrasound.png", "diagnose_xray.png", "diagnose_ultrasound_cyst.png"):
        img = cv2.imread(str(tmp_path / name))
        assert img is not None and img.shape[2] == 3 and np.ptp(img) > 100, name


@pytest.mark.parametrize(
    "argv",
    [["demo", "--size", "8"], ["demo", "--repeat", "0"], ["demo", "--size", "abc"], ["nope"]],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script_and_module_entry_points():
    out = subprocess.run(
        [sys.executable, "-m", "medimg_edge", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout)["version"] == me.__version__


_BLOCK = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Block())
from medimg_edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("argv", "blocked", "words"),
    [
        (["watch", "IN", "--out", "OUT"], {"prometheus_client"}, "[daemon] extra"),
        (["watch", "IN", "--out", "OUT"], {"highdicom"}, "highdicom missing"),
        (["batch", "IN", "--out", "OUT"], {"pyarrow"}, "[batch] extra (pyarrow"),
    ],
)
def test_missing_extra_is_a_clear_error(tmp_path, argv, blocked, words):
    """Without the ``[daemon]`` / ``[batch]`` extra the commands say what to install and
    exit 2 (no traceback); ``me.batch`` raises a helpful ModuleNotFoundError."""
    (tmp_path / "IN").mkdir()
    argv = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in argv]
    code = _BLOCK.format(blocked=blocked)
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert words in run.stderr and "pip install" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "OUT").exists()
    lazy = _BLOCK.format(blocked={"pyarrow"}).replace(
        "from medimg_edge.cli import main\nsys.exit(main(sys.argv[1:]))",
        "import medimg_edge as me\nme.batch",
    )
    run = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True)
    assert "needs the [batch] extra" in run.stderr
