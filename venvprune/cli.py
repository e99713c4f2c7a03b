"""The command line: parse options into a Config, call the pipeline, render, map errors to exit codes.

This is the only module that prints. The options are the table in :mod:`venvprune.config`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from venvprune import __version__, config, pipeline, signals
from venvprune.errors import ExitCode, Interrupted, TargetError, VenvpruneError
from venvprune.report import (
    Report,
    build_check_report,
    build_report,
    render_check_json,
    render_check_text,
    render_json,
    render_markdown,
    render_summary_line,
    render_text,
)
from venvprune.report.output import STDOUT, check_destinations, write_report

_STATUS_EXIT = {
    pipeline.Status.SUCCESS: ExitCode.SUCCESS,
    pipeline.Status.PARTIAL: ExitCode.PARTIAL,
    pipeline.Status.CHECK_FAILED: ExitCode.CHECK_FAILED,
}


class _UsageLine(click.ClickException):
    """A usage error as the README promises it: one line naming the option and what to do, exit 2."""

    exit_code = ExitCode.USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"venvprune: error: {self.format_message()}", err=True)


class _Venvprune(click.Group):
    """``venvprune VENV`` prunes; ``venvprune check VENV`` only checks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["prune", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # click's four lines (Usage, Try, blank, Error) become one
            command = "venvprune check" if exc.ctx is not None and exc.ctx.command.name == "check" else "venvprune"
            raise _UsageLine(f"{_what_was_wrong(exc)}; see `{command} --help`") from None


def _what_was_wrong(exc: click.UsageError) -> str:
    if isinstance(exc, click.NoSuchOption):
        close = sorted(exc.possibilities or ())
        return f"{exc.option_name}: no such option" + (f" (did you mean {' or '.join(close)}?)" if close else "")
    if type(exc) is click.BadParameter and exc.param is not None:
        hint = exc.param.opts[-1] if isinstance(exc.param, click.Option) else exc.param.human_readable_name
        return f"{hint}: {exc.message.rstrip('.')}"
    return exc.format_message().rstrip(".")


class _PruneCommand(click.Command):
    """``venvprune --help`` shows this command's options and both forms of the command line."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("venvprune", "[OPTIONS] [VENV]")
        formatter.write_usage("venvprune check", "[OPTIONS] [VENV]", prefix="   or: ")

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text(
            "`venvprune check VENV` runs the import checks alone and changes nothing (see `venvprune check --help`)."
            " Settings may also live in [tool.venvprune] of ./pyproject.toml or in a --config file; the keys are"
            " the long option names."
        )


@click.group("venvprune", cls=_Venvprune, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Shrink a Python virtualenv safely."""


def _table_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click options of *command*, made from the table of settings (:class:`venvprune.config.Config`)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for setting, option in reversed(config.options(command)):
            default = setting.default
            details: dict[str, Any] = {"help": option.help}
            if isinstance(default, bool):
                details.update(is_flag=True, flag_value=not default, default=default)
            elif isinstance(default, tuple):
                details.update(multiple=True, metavar=option.metavar)
                if option.choices:
                    details["type"] = click.Choice(option.choices)
            else:
                kinds = {int: click.INT, float: click.FLOAT}
                kind = click.Choice(option.choices) if option.choices else kinds.get(type(default), click.STRING)
                details.update(metavar=option.metavar, type=kind)
            function = click.option(*option.flags, setting.name, **details)(function)
        return function

    return decorate


def _venv_and_config(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--config", "config_file", type=click.Path(path_type=Path), metavar="FILE", help="Read settings from FILE."
    )(function)
    return click.argument("venv", required=False, type=click.Path(path_type=Path))(function)


def _settings(ctx: click.Context, venv: Path | None, config_file: Path | None, values: dict[str, Any]) -> config.Config:
    """The Config of this run: what the user typed wins over the settings files, which win over the defaults."""
    typed = {
        name: value for name, value in values.items() if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    return config.load(Path.cwd(), config_file, typed, target=venv or _virtual_env())


def _virtual_env() -> Path | None:
    venv = os.environ.get("VIRTUAL_ENV")
    return Path(venv) if venv else None


@cli.command("prune", cls=_PruneCommand)
@_table_options("prune")
@_venv_and_config
@click.version_option(__version__, prog_name="venvprune")
@click.pass_context
def prune_command(ctx: click.Context, /, venv: Path | None, config_file: Path | None, **values: Any) -> None:
    """Prune VENV (a venv, a Python prefix or a site-packages directory; default: $VIRTUAL_ENV) and verify it."""
    # The pipeline installs the signal handler; entering it here first makes it cover the report too: after a
    # commit a signal lets the run end normally (see venvprune.signals).
    style = _ErrorStyle(verbose=bool(values["verbose"]), target_from_environment=venv is None)
    with _errors_to_exit_codes(style), signals.handled():
        settings = _settings(ctx, venv, config_file, values)
        style.verbose = settings.verbose  # a settings file may ask for tracebacks too
        check_destinations(settings.json, settings.markdown)  # before pruning: a report must not fail a done prune
        outcome = pipeline.prune(settings, _Progress(enabled=not settings.quiet))
        report = build_report(outcome)
        for warning in report.warnings:
            click.echo(f"venvprune: warning: {warning}", err=True)
        failures = _write_outputs(settings, report)
        for failure in failures:
            click.echo(f"venvprune: error: {failure}; {_what_the_run_did(outcome)}", err=True)
        ctx.exit(_exit_code(outcome, outputs_failed=bool(failures)))


def _write_outputs(settings: config.Config, report: Report) -> list[str]:
    """The report files, then the human report; each failure as a message, once every output was tried."""
    failures = []
    for destination, render in ((settings.json, render_json), (settings.markdown, render_markdown)):
        if destination is not None:
            failures += _emit(destination, render(report))
    human = render_summary_line(report) + "\n" if settings.quiet else render_text(report, verbose=settings.verbose)
    return failures + _emit(STDOUT, human, err=STDOUT in (settings.json, settings.markdown))


def _exit_code(outcome: pipeline.Outcome, outputs_failed: bool) -> ExitCode:
    code = _STATUS_EXIT[outcome.status]
    if outputs_failed and outcome.dry_run:
        return ExitCode.FAILURE  # the report is all a dry run makes
    if outputs_failed and code is ExitCode.SUCCESS:
        return ExitCode.PARTIAL  # pruned, and the venv works; a report is missing
    return code


def _what_the_run_did(outcome: pipeline.Outcome) -> str:
    if outcome.dry_run:
        return "nothing was changed"
    if outcome.status is pipeline.Status.CHECK_FAILED:
        return "verification failed and every change was restored"
    return "the prune succeeded; only this report is missing"


def _emit(destination: str, text: str, err: bool = False) -> list[str]:
    """Write one output; a failure is returned as a message, so that the other outputs are still written."""
    try:
        if destination == STDOUT:
            click.echo(text, nl=False, err=err)
        else:
            write_report(Path(destination), text)
    except OSError as exc:
        if destination == STDOUT:
            _silence_stdout()
        where = destination if destination != STDOUT else "stderr" if err else "stdout"
        return [f"{where}: cannot write the report ({exc.strerror or exc})"]
    return []


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null: the interpreter's last flush must not print a traceback."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's buffer)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


@cli.command("check")
@_table_options("check")
@_venv_and_config
@click.option("--json", "json_path", metavar="PATH|-", help="Write the report as JSON to PATH (- for stdout).")
@click.pass_context
def check_command(
    ctx: click.Context, /, venv: Path | None, config_file: Path | None, json_path: str | None, **values: Any
) -> None:
    """Check VENV without changing it, as the final-stage check.py does; exit 1 naming each failure."""
    style = _ErrorStyle(verbose=bool(values["verbose"]), target_from_environment=venv is None)
    with _errors_to_exit_codes(style), signals.handled():
        settings = _settings(ctx, venv, config_file, values)
        style.verbose = settings.verbose
        check_destinations(json_path, None)
        outcome = pipeline.check(settings, _Progress(enabled=not settings.quiet))
        report = build_check_report(outcome)
        failures = _emit(json_path, render_check_json(report)) if json_path is not None else []
        failures += _emit(STDOUT, render_check_text(report, quiet=settings.quiet), err=json_path == STDOUT)
        for failure in failures:
            click.echo(f"venvprune: error: {failure}", err=True)
        sys.exit(ExitCode.SUCCESS if outcome.verification.ok and not failures else ExitCode.CHECK_FAILED)


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


@dataclass
class _ErrorStyle:
    """How an error is told: with a traceback (``-v``), and whether the target came from ``$VIRTUAL_ENV``."""

    verbose: bool
    target_from_environment: bool


@contextmanager
def _errors_to_exit_codes(style: _ErrorStyle) -> Iterator[None]:
    """The one place errors become messages and exit codes (see the README's table)."""
    try:
        yield
    except VenvpruneError as exc:
        message = exc.message
        if isinstance(exc, TargetError) and style.target_from_environment and _virtual_env() is not None:
            message += " (the target came from $VIRTUAL_ENV)"
        click.echo(f"venvprune: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:  # Interrupted (SIGINT, SIGTERM), or Ctrl-C before the handler was set
        message = exc.message if isinstance(exc, Interrupted) else "stopped by SIGINT; every change was restored"
        click.echo(f"venvprune: error: {message}", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:  # anything else is a bug; the transaction has already restored the target
        if style.verbose:
            traceback.print_exc()
        click.echo(
            f"venvprune: internal error: {type(exc).__name__}: {exc}; nothing was left half done. "
            "Please report it (-v shows the traceback).",
            err=True,
        )
        sys.exit(ExitCode.FAILURE)


def main(argv: Sequence[str] | None = None) -> None:
    cli(args=argv, prog_name="venvprune")
