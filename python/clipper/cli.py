"""The `clipper` command: run, inspect and change a local cluster from the shell.

Owns the user-facing output: results on stdout (plain text tables, or JSON for `inspect`), progress of
long operations on stderr (rendered from the library's structured log events), exit status 1 with a
one-line reason on errors, and a quiet exit when stdout is a closed pipe (`clipper apps | head -1`).
Every command acts on one cluster, named by `--cluster-name` and its ports, through `ClipperConnection`
and `LocalContainerManager` exactly as a Python program would. The commands live in `clipper._cli`:
`parser.py` declares them (one function per group of subcommands), the other modules run them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from clipper._cli.deploy import load_predict_function
from clipper._cli.parser import build_parser
from clipper._cli.progress import ProgressReporter, reporting_progress
from clipper.exceptions import ClipperException

__all__ = ["ProgressReporter", "build_parser", "load_predict_function", "main"]

# The status of a process a closed pipe stopped (128 + SIGPIPE), as `yes | head -1` leaves `yes`.
CLOSED_PIPE_STATUS = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, while it can still be handled quietly
        return status
    except BrokenPipeError:
        # Whoever read our output stopped reading: nothing is left to say. Point stdout at /dev/null
        # so the interpreter's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE_STATUS


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with reporting_progress(enabled=not args.quiet):
            return int(args.handler(args))
    except ClipperException as error:
        print(f"clipper {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
