"""The ``iimm`` command line.

Each sub-command lives in the module that does the work and registers itself
through an ``add_cli(subparsers)`` function; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# sub-command modules, in the order of the data flow
_COMMAND_MODULES: tuple[str, ...] = ("embed", "finetune.cli", "study.cli", "sandbox.cli", "book")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="iimm", description="Inter-Intra Modal Measure study tools.")
    parser.add_argument("--version", action="version", version=f"iimm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        importlib.import_module(f"iimm.{mod}").add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"iimm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
