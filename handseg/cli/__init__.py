"""The `handseg` command line: `handseg segment | video | ray | models | export | convert` (`--help`).

One module per concern: the flags every command that segments shares (`options`), each command's
work (`segment`: images and videos; `ray`: folders on Ray; `tools`: models, export, convert), and the
parser that joins them (`parser`). This module stays light, so Ctrl-C while torch loads is one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run `handseg ARGS...`; the exit status: 0 done, 1 some input failed, 2 a usage, device or model
    error (one line), 130 interrupted."""
    try:
        from handseg.cli.parser import build_parser  # torch and the rest load here

        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:  # before any file was written (a run's own handler says more)
        print("\nhandseg: interrupted", file=sys.stderr)
        return 130
