"""Pieces every `pgolf` subcommand shares: option parsing, usage errors, output.

Kept apart from cli.py so subcommands living in their own packages (the rerun
harness, probes) use the same behaviour without importing the whole CLI.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Iterable, Optional

import typer

USAGE_ERROR = 2


class Format(str, Enum):
    rich = "rich"
    json = "json"
    markdown = "markdown"
    sarif = "sarif"
    github = "github"
    text = "text"


def fail_usage(message: str) -> None:
    """Exit 2 with one clear line on stderr, never a traceback."""
    typer.echo(f"pgolf: error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        if "=" not in pair:
            fail_usage(f"--env takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        env[key.strip()] = value
    return env


def parse_floats(text: str, option: str = "--against-loss") -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        fail_usage(f"{option} takes comma-separated numbers, got {text!r}")
        return []


def write_report(render: Callable, payload, output: Optional[Path]) -> None:
    """Render to stdout, or to `output` (a usage error if it cannot be written)."""
    if output is None:
        render(payload, sys.stdout)
        return
    try:
        out = output.open("w", encoding="utf-8")
    except OSError as exc:
        fail_usage(f"cannot write {output}: {exc.strerror}")
    with out:
        render(payload, out)


def max_exit_code(codes: Iterable[int]) -> int:
    """Analysis error beats fail beats pass, whatever the order of records."""
    codes = set(codes)
    for code in (3, 1):
        if code in codes:
            return code
    return 0
