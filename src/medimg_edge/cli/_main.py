"""The ``medimg-edge`` parser and entry point: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import MedimgEdgeError
from .._version import __version__
from . import (
    batch,
    bench,
    compare,
    demo,
    diagnose,
    drift,
    evaluate,
    features,
    feedback,
    info,
    promote,
    synth,
    train,
    watch,
)

__all__ = ["build_parser", "main"]

#: The command modules, in the order ``medimg-edge --help`` lists them.
COMMANDS = (info, demo, features, train, evaluate, synth, diagnose, bench, watch, batch, feedback)
COMMANDS = (*COMMANDS, promote, compare)  # type: ignore[assignment]  # model lifecycle
COMMANDS = (*COMMANDS, drift)  # type: ignore[assignment]


def build_parser() -> argparse.ArgumentParser:
    """The ``medimg-edge`` argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="medimg-edge",
        description="AI triage for point-of-care medical imaging (not for clinical use).",
    )
    parser.add_argument("--version", action="version", version=f"medimg-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 success, 1 runtime failure (some files
    failed), 2 usage or input error, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if args.command == "demo" and not (64 <= args.size <= 4096 and 1 <= args.repeat <= 1000):
        parser.error("--size must be in [64, 4096] and --repeat in [1, 1000]")
    try:
        code: int = args.func(args)
        return code
    except MedimgEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
