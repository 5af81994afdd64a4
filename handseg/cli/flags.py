"""`--model`, the one flag every command that runs or exports a model shares (the `handseg` commands, the
app, training, tools and benchmarks): a module of its own, so that asking for it loads no torch."""

from __future__ import annotations

import argparse


def model_flag() -> argparse.ArgumentParser:
    """A parent parser holding `--model` (default None: the shipped default model)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--model", default=None, help="hub folder, repo id or shipped model name (default: the shipped default model)"
    )
    return flags
