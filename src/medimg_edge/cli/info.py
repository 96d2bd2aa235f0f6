"""``medimg-edge info``: installation, SIMD targets, runtime, Edge TPU and models."""

from __future__ import annotations

import argparse
import json

from .. import info, simd
from ._common import HelpFormatter

__all__ = ["add_parser", "cmd_info"]

INFO_HELP = """\
Show the installation: package version, SIMD targets (active, compiled, supported), the
compiler, Python / NumPy / OpenCV versions, the TFLite runtime, whether the Edge TPU
library loads, and the model packages found (bundled and $MEDIMG_EDGE_MODEL_PATH).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "info",
        help="show version, SIMD targets and libraries",
        description=INFO_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--no-cold-start",
        action="store_true",
        help="skip the cold-start measurement (a fresh interpreter: import + first diagnose)",
    )
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    data = info()
    if not getattr(args, "no_cold_start", False):
        from ..runtime._backend import cold_start

        data["cold_start"] = cold_start()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    s = data["simd"]
    print(f"medimg-edge {data['version']}")
    print(f"  SIMD active     : {s['active']}" + (f" (capped at {s['cap']})" if s["cap"] else ""))
    print(f"  SIMD compiled   : {', '.join(s['compiled'])}")
    print(f"  SIMD supported  : {', '.join(s['supported'])}")
    print(f"  compiler        : {data['compiler']}")
    print(f"  python          : {data['python']} on {data['machine']}")
    print(f"  numpy / opencv  : {data['numpy']} / {data['opencv']}")
    rt = data["runtime"]
    if rt["name"]:
        print(f"  TFLite runtime  : {rt['distribution']} {rt['version']}")
    else:
        print(f"  TFLite runtime  : none ({rt['error']})")
    tpu = data["edgetpu"]
    print(
        f"  Edge TPU        : {tpu['library']} "
        + (
            "loadable (device presence is checked when a model loads)"
            if tpu["loadable"]
            else f"unavailable: {tpu['reason']}"
        )
    )
    if not data["models"]:
        print("  models          : none found")
    for m in data["models"]:
        if "error" in m:
            print(f"  model {m['name']:<10}: INVALID: {m['error']}")
        else:
            tpu_note = ", Edge TPU variant" if m["edgetpu"] else ""
            print(f"  model {m['name']:<10}: v{m['version']} ({m['modality']}{tpu_note})")
    cs = data.get("cold_start")
    if cs is not None:
        if "error" in cs:
            print(f"  cold start      : not measured ({cs['error']})")
        else:
            first = (
                f", first diagnose {cs['first_diagnose_ms']:.1f} ms ({cs['model']})"
                if "first_diagnose_ms" in cs
                else ""
            )
            print(
                f"  cold start      : import medimg_edge {cs['import_ms']:.1f} ms "
                f"(numpy + cv2 before it: {cs['import_numpy_cv2_ms']:.1f} ms){first}"
            )
    print(f"  override        : set {simd.ENV_VAR}=scalar|sse4|avx2|avx512|neon to cap SIMD")
    return 0
