"""Run the command line in-process, as a user would, with stdout and stderr kept apart."""

from __future__ import annotations

import inspect
from typing import Any

from click.testing import CliRunner

from venvprune.cli import cli


def run_cli(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``venvprune ARGS``; exceptions are not caught, so a traceback fails the test."""
    # click < 8.2 mixes stderr into stdout unless told not to; 8.2 always keeps them apart and has no such option.
    options: dict[str, Any] = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    result = CliRunner(**options).invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
