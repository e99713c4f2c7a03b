"""The command line: parse options, build a Config, call the pipeline, render, map errors to exit codes.

This is the only module that prints.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from venvprune import __version__, apply, categories, config, pipeline, signals, verify
from venvprune.errors import ExitCode, Interrupted, UsageError, VenvpruneError
from venvprune.report import build_report, render_json, render_markdown, render_summary_line, render_text
from venvprune.target import resolve_target

_STATUS_EXIT = {
    pipeline.Status.SUCCESS: ExitCode.SUCCESS,
    pipeline.Status.PARTIAL: ExitCode.PARTIAL,
    pipeline.Status.CHECK_FAILED: ExitCode.CHECK_FAILED,
}


class _PruneByDefault(click.Group):
    """``venvprune VENV`` prunes; ``venvprune check VENV`` only checks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["prune", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_PruneByDefault, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Shrink a Python virtualenv safely. See `venvprune prune --help` and `venvprune check --help`."""


def _check_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option("--jobs", type=click.IntRange(min=0), help="Import workers (default: one per CPU)."),
            click.option("--check-module", "check_module", multiple=True, metavar="NAME", help="Also import NAME."),
            click.option(
                "--smoke", multiple=True, metavar="COMMAND", help="Also run COMMAND with the venv's bin first on PATH."
            ),
            click.option(
                "--timeout", type=click.FloatRange(min=1), help="Seconds allowed per module import (default 120)."
            ),
        ]
    ):
        command = option(command)
    return command


@cli.command("prune")
@click.argument("venv", required=False, type=click.Path(path_type=Path))
@click.option("-n", "--dry-run", "dry_run", is_flag=True, help="Print the plan as the report; change nothing.")
@click.option("--json", "json_path", metavar="PATH|-", help="Write the report as JSON to PATH (- for stdout).")
@click.option(
    "--markdown", "markdown_path", metavar="PATH|-", help="Write the report as Markdown to PATH (- for stdout)."
)
@click.option(
    "--only", multiple=True, type=click.Choice(categories.NAMES), help="Exactly these categories (repeatable)."
)
@click.option("--include", multiple=True, type=click.Choice(categories.NAMES), help="Add an opt-in category.")
@click.option("--exclude", multiple=True, type=click.Choice(categories.NAMES), help="Leave a category out.")
@click.option(
    "--keep", multiple=True, metavar="GLOB", help="Never touch paths matching GLOB, relative to site-packages."
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Read settings from this TOML file.")
@click.option("--no-verify", "no_verify", is_flag=True, help="Do not check imports before and after.")
@click.option("--no-heal", "no_heal", is_flag=True, help="Fail at the first regression instead of restoring.")
@click.option("--no-manifest", "no_manifest", is_flag=True, help="Do not write the final-stage checker into the venv.")
@_check_options
@click.option("-q", "--quiet", "quiet", is_flag=True, help="Print only the last line.")
@click.option("-v", "--verbose", "verbose", is_flag=True, help="Print more of what was kept, and tracebacks.")
@click.version_option(__version__, prog_name="venvprune")
@click.pass_context
def prune_command(ctx: click.Context, /, venv: Path | None, **options: Any) -> None:
    """Prune VENV (a venv, a Python prefix or a site-packages directory; default: $VIRTUAL_ENV)."""
    verbose = bool(options["verbose"])
    # The pipeline installs the signal handler; entering it here first makes it cover the report too: after a
    # commit a signal lets the run end normally (see venvprune.signals).
    with _errors_to_exit_codes(verbose), signals.handled():
        given = {
            name: value
            for name, value in options.items()
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        }
        settings = config.load(Path.cwd(), options["config_file"], _overrides(venv, given))
        for destination in (settings.json, settings.markdown):
            _check_output(destination)  # before pruning: a report that cannot be written must not fail a done prune
        progress = _Progress(enabled=not options["quiet"])
        outcome = pipeline.prune(settings, progress)
        report = build_report(outcome)
        if settings.json:
            _write_output(settings.json, render_json(report))
        if settings.markdown:
            _write_output(settings.markdown, render_markdown(report))
        human = render_summary_line(report) + "\n" if options["quiet"] else render_text(report, verbose=verbose)
        to_stderr = "-" in (settings.json, settings.markdown)
        click.echo(human, nl=False, err=to_stderr)
        ctx.exit(_STATUS_EXIT[outcome.status])


@cli.command("check")
@click.argument("venv", required=False, type=click.Path(path_type=Path))
@_check_options
@click.option("-v", "--verbose", "verbose", is_flag=True, help="Print tracebacks of internal errors.")
def check_command(venv: Path | None, **options: Any) -> None:
    """Import-check VENV without changing it; exit 1 naming each failure."""
    with _errors_to_exit_codes(bool(options["verbose"])), signals.handled():
        target = resolve_target(venv)
        with apply.target_lock(target, shared=True):
            pending = apply.pending(target)
            if pending is not None:
                raise VenvpruneError(
                    f"{pending}: an interrupted prune is pending; run `venvprune {pending.parent}` first"
                )
            defaults = config.Config()
            result = verify.run_check(
                target,
                verify.VerifyOptions(
                    jobs=options["jobs"] if options["jobs"] is not None else defaults.jobs,
                    check_modules=tuple(options["check_module"]),
                    smoke=tuple(options["smoke"]),
                    timeout=options["timeout"] or defaults.timeout,
                ),
            )
        for failure in result.failures:
            click.echo(f"FAILED {failure}")
        passed = result.checks_total - len(result.failures)
        click.echo(f"venvprune check: {passed}/{result.checks_total} checks pass in {target.root}")
        sys.exit(ExitCode.SUCCESS if result.ok else ExitCode.CHECK_FAILED)


def _overrides(venv: Path | None, given: dict[str, Any]) -> dict[str, Any]:
    """Command-line options as Config fields; only those the user typed, so the config files fill the rest."""
    renames = {"json_path": "json", "markdown_path": "markdown"}
    negations = {"no_verify": "verify", "no_heal": "heal", "no_manifest": "manifest"}
    overrides: dict[str, Any] = {"target": venv}
    for name, value in given.items():
        if name in negations:
            overrides[negations[name]] = not value
        elif isinstance(value, tuple):
            overrides[name] = value
        else:
            overrides[renames.get(name, name)] = value
    if "verbose" in given:
        overrides["verbosity"] = 1
    return overrides


class _Progress:
    """Phase progress on stderr: on a terminal a live line, in a build log one plain line per phase with its time."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()

    def start(self, phase: str) -> None:
        if self.live:
            click.echo(f"venvprune: {phase} ...", nl=False, err=True)

    def end(self, phase: str, seconds: float, detail: str) -> None:
        if not self.enabled:
            return
        line = f"venvprune: {phase} {seconds:.1f} s" + (f" ({detail})" if detail else "")
        click.echo(("\r\x1b[K" if self.live else "") + line, err=True)


def _check_output(destination: str | None) -> None:
    if destination is None or destination == "-":
        return
    folder = Path(destination).parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"{destination}: cannot write the report there; {folder} is not a writable folder")


def _write_output(destination: str, text: str) -> None:
    if destination == "-":
        click.echo(text, nl=False)
        return
    path = Path(destination)
    try:
        # Atomic: a reader never sees half a report.
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except OSError as exc:
        raise VenvpruneError(f"{path}: cannot write the report ({exc.strerror}); choose a writable path") from exc


@contextmanager
def _errors_to_exit_codes(verbose: bool) -> Iterator[None]:
    """The one place errors become messages and exit codes (see the README's table)."""
    try:
        yield
    except VenvpruneError as exc:
        click.echo(f"venvprune: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:  # Interrupted (SIGINT, SIGTERM), or Ctrl-C before the handler was set
        message = exc.message if isinstance(exc, Interrupted) else "stopped by SIGINT; every change was restored"
        click.echo(f"venvprune: error: {message}", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:  # anything else is a bug; the transaction has already restored the target
        if verbose:
            traceback.print_exc()
        click.echo(
            f"venvprune: internal error: {type(exc).__name__}: {exc}; nothing was left half done. "
            "Please report it (-v shows the traceback).",
            err=True,
        )
        sys.exit(ExitCode.FAILURE)


def main() -> None:
    cli(prog_name="venvprune")
