"""The ``medimg-edge`` command line (src/medimg_edge/cli/)."""

from __future__ import annotations

import argparse
import dataclasses
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
    # The diagnosis table: 2 X-ray and 4 ultrasound phantom frames (truth, status, label),
    # each modality followed by a frame of the other modality (out of distribution).
    drows = [line.split() for line in diagnosis.splitlines()]
    drows = [r for r in drows if r and r[0] in ("ultrasound", "xray")]
    assert [r[1] for r in drows] == [
        "normal", "nodule", "(ultrasound)",
        "normal", "cyst", "hypoechoic", "hyperechoic", "(radiograph)",
    ]  # fmt: skip
    for r in drows:
        assert r[2] in ("positive", "negative", "indeterminate"), r
        if r[1].startswith("("):  # the other modality: never a finding
            assert r[2] != "positive", r
    us_rows = [r for r in drows if r[0] == "ultrasound" and not r[1].startswith("(")]
    assert sum(r[1] == r[3] for r in us_rows) >= 2  # 96 px frames: a hard setting
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
        (["train", "--modality", "xray", "--out", "OUT"], {"tensorflow"}, "[train] extra"),
        (
            ["evaluate", "us_lesion", "--modality", "ultrasound", "--report", "OUT"],
            {"sklearn"},
            "[train] extra (sklearn",
        ),
    ],
)
def test_missing_extra_is_a_clear_error(tmp_path, argv, blocked, words):
    """Without the ``[daemon]`` / ``[batch]`` / ``[train]`` extra the commands say what to
    install and exit 2 at once (no traceback, no work done: ``evaluate`` used to generate
    phantoms for minutes first); ``me.batch`` raises a helpful ModuleNotFoundError."""
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


def _diagnose_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medimg_edge", "diagnose", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_diagnose_is_quiet_without_an_edge_tpu(tmp_path):
    """delegate auto on a machine without an Edge TPU: no warning, no runtime INFO line;
    the DICOM header gives the modality (no --modality needed)."""
    pytest.importorskip("pydicom")
    from dicom_helpers import bundled
    from medimg_edge.triage import edgetpu_present

    if edgetpu_present():
        pytest.skip("this machine shows an Edge TPU")
    run = _diagnose_cli(bundled("examples_rgb_color.dcm"))
    assert run.returncode == 0, run.stderr
    assert "XNNPACK" not in run.stderr and "note:" not in run.stderr, run.stderr
    assert "Warning" not in run.stderr
    assert "(ultrasound from dicom" in run.stdout


def test_indeterminate_prints_as_such(tmp_path):
    """An indeterminate answer says why, never a label next to a confidence."""
    flat = tmp_path / "flat.npy"
    np.save(flat, np.full((128, 128), 3, np.uint8))  # fails the quality gate
    run = _diagnose_cli(str(flat), "--modality", "ultrasound")
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip()
    assert ": indeterminate: quality (" in line and "%" not in line.split("(")[0], line


def test_describe_abstain_band():
    from medimg_edge._overlay import describe

    d = me.diagnose(np.full((64, 64), 100, np.uint8), modality="ultrasound")
    assert describe(d).startswith("indeterminate: quality (")
    abst = dataclasses.replace(
        d, status="indeterminate", reasons=("abstain_band",), positive_score=0.45, label="x"
    )
    assert describe(abst) == "indeterminate: abstain band, score 0.45"
    pos = dataclasses.replace(d, status="positive", label="cyst", confidence=0.87)
    assert describe(pos) == "positive cyst 87%"


COMMANDS = ["info", "demo", "features", "train", "evaluate", "synth", "diagnose", "bench",
            "watch", "batch"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_has_a_description_and_defaults(command, capsys):
    """``medimg-edge COMMAND --help``: a description paragraph (no raw reST markup) and
    the default of every option that has one."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    head, _, rest = text.partition("\n\n")
    assert head.startswith("usage:")
    description = rest.split("\n\n")[0]
    assert len(description.split()) >= 5, text
    assert "``" not in text and ":func:" not in text and ":class:" not in text, text
    from medimg_edge.cli import build_parser

    sub = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices[command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        has_default = action.default not in (None, False, argparse.SUPPRESS)
        if action.option_strings and has_default and action.help != argparse.SUPPRESS:
            assert "default" in formatter._get_help_string(action), (command, action.dest)
