"""Settings: defaults < ``[tool.venvprune]`` in ./pyproject.toml < ``--config FILE`` < the command line.

:class:`Config` is the one table of options. Each field a user may set carries its :class:`Option`: how the command
line spells it and its help. The command line (``cli.py``) is built from it, and a settings file's keys are the
long option names without dashes (``check-module = ["app"]``, ``no-heal = true``; ``heal = false`` reads too).
Adding an option is adding a field here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from venvprune import _tomllib, categories
from venvprune.errors import ConfigError, UsageError

PRUNE = ("prune",)
VERIFY_SCOPES = ("affected", "all")
BOTH = ("prune", "check")
SELECTION = ("only", "include", "exclude")

T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """How a setting is given: its command-line flags, help, the commands that take it, and its valid values."""

    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    commands: tuple[str, ...] = PRUNE
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def long_flag(self) -> str:
        return next(flag for flag in self.flags if flag.startswith("--"))

    @property
    def negated(self) -> bool:
        """A setting that is on by default and that the command line turns off (``--no-verify``)."""
        return self.long_flag.startswith("--no-")


def _option(default: T, *flags: str, help: str, **details: Any) -> T:
    return field(default=default, metadata={"option": Option(flags, help, **details)})


@dataclass(frozen=True)
class Config:
    target: Path | None = None  # the VENV argument, or $VIRTUAL_ENV; not a setting
    dry_run: bool = _option(False, "-n", "--dry-run", help="Print the plan as the report; change nothing.")
    json: str | None = _option(
        None, "--json", metavar="PATH|-", help="Write the report as JSON to PATH (- for stdout)."
    )
    markdown: str | None = _option(
        None, "--markdown", metavar="PATH|-", help="Write the report as Markdown to PATH (- for stdout)."
    )
    profile: str = _option(
        categories.SAFE,
        "--profile",
        metavar="safe|max",
        choices=categories.PROFILES,
        help="safe (the default categories) or max (every category: the guards, the knowledge base and verification "
        "keep what is needed). A dry run under safe shows what max would save in addition.",
    )
    only: tuple[str, ...] = _option(
        (), "--only", metavar="CATEGORY", choices=categories.NAMES, help="Run exactly these categories (repeatable)."
    )
    include: tuple[str, ...] = _option(
        (),
        "--include",
        metavar="CATEGORY",
        choices=categories.NAMES,
        help="Add a category to the profile's (repeatable).",
    )
    exclude: tuple[str, ...] = _option(
        (), "--exclude", metavar="CATEGORY", choices=categories.NAMES, help="Leave a category out (repeatable)."
    )
    keep: tuple[str, ...] = _option(
        (),
        "--keep",
        metavar="GLOB",
        help="Never touch paths matching GLOB (relative to site-packages, or absolute) and anything under them.",
    )
    verify: bool = _option(True, "--no-verify", help="Do not check imports before and after.")
    # A settings file's `verify = false` is --no-verify; `verify = "all"` is --verify all (see _from_file).
    verify_scope: str = _option(
        "affected",
        "--verify",
        metavar="SCOPE",
        choices=VERIFY_SCOPES,
        help="After pruning, repeat the checks the change can affect (affected, the default) or all of them.",
    )
    heal: bool = _option(True, "--no-heal", help="Fail at the first regression instead of restoring.")
    manifest: bool = _option(True, "--no-manifest", help="Do not write the final-stage checker into the venv.")
    jobs: int = _option(
        0,
        "--jobs",
        metavar="N",
        minimum=0,
        commands=BOTH,
        help="Import workers (default 0: one per usable CPU; a container's CPU quota counts).",
    )
    check_module: tuple[str, ...] = _option(
        (),
        "--check-module",
        metavar="NAME",
        commands=BOTH,
        help="Also import NAME (repeatable); a prune keeps its bytecode, as --warm does.",
    )
    warm: tuple[str, ...] = _option(
        (),
        "--warm",
        metavar="MODULE",
        help="Keep (or compile) the bytecode of what importing MODULE loads, so it starts as fast as before "
        "(repeatable; --check-module names are warmed too); MODULE is checked as --check-module is.",
    )
    smoke: tuple[str, ...] = _option(
        (), "--smoke", metavar="COMMAND", commands=BOTH, help="Also run COMMAND with the venv's bin first on PATH."
    )
    timeout: float = _option(
        120.0,
        "--timeout",
        metavar="SECONDS",
        minimum=1,
        maximum=24 * 3600,
        commands=BOTH,
        help="Seconds allowed per check (default 120).",
    )
    strict: bool = _option(
        False,
        "--strict",
        commands=BOTH,
        help="Fail on every check that could not run or failed before pruning, too (they are reported either way).",
    )
    python: str | None = _option(
        None,
        "--python",
        metavar="PATH",
        commands=BOTH,
        help="Check with this interpreter: the one a `pip install --target` folder, which has none, is run with.",
    )
    quiet: bool = _option(
        False, "-q", "--quiet", commands=BOTH, help="Print only the last line (and warnings; check: and failures)."
    )
    verbose: bool = _option(
        False,
        "-v",
        "--verbose",
        commands=BOTH,
        help="More detail: every path under its category; tracebacks of internal errors.",
    )


def options(command: str) -> list[tuple[Field[Any], Option]]:
    """The settings *command* takes, in the table's order."""
    table = [(f, f.metadata["option"]) for f in fields(Config) if "option" in f.metadata]
    return [(setting, option) for setting, option in table if command in option.commands]


def _file_keys() -> dict[str, tuple[Field[Any], bool]]:
    """Settings-file key -> (field, whether the key says the opposite of the field: ``no-heal``)."""
    keys: dict[str, tuple[Field[Any], bool]] = {}
    for setting, option in options("prune"):
        keys[option.long_flag[2:]] = (setting, option.negated)
        if option.negated:
            keys[setting.name.replace("_", "-")] = (setting, False)
    return keys


@dataclass(frozen=True)
class _Source:
    """Where values came from, to say so in an error: a settings file, or the command line."""

    path: Path | None  # None: the command line

    def key(self, setting: Field[Any]) -> str:
        option: Option = setting.metadata["option"]
        return option.long_flag if self.path is None else setting.name.replace("_", "-")

    def error(self, message: str) -> ConfigError:
        return ConfigError(message if self.path is None else f"{self.path}: {message}")


COMMAND_LINE = _Source(None)


def load(cwd: Path, config_file: Path | None, command_line: Mapping[str, Any], target: Path | None = None) -> Config:
    """Merge the layers. *command_line* maps field names to the values the user typed (only those)."""
    layers: list[tuple[_Source, dict[str, Any]]] = []
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _tool_table(_read_toml(pyproject), pyproject)
        if table is not None:
            layers.append((_Source(pyproject), _from_file(table, _Source(pyproject))))
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{config_file}: config file not found; pass an existing TOML file to --config")
        data = _read_toml(config_file)
        table = _tool_table(data, config_file) if "tool" in data else data
        if table is None:
            raise ConfigError(
                f"{config_file}: no [tool.venvprune] table; add one, or name a file that holds only venvprune settings"
            )
        layers.append((_Source(config_file), _from_file(table, _Source(config_file))))
    by_name = {f.name: f for f, _ in options("prune") + options("check")}
    given: dict[str, Any] = {}
    for name, value in command_line.items():
        if name not in by_name:
            raise UsageError(f"{name}: not a setting; this is a bug")
        given[name] = _validated(by_name[name], value, COMMAND_LINE)
    layers.append((COMMAND_LINE, given))

    selection = _Selection()
    values: dict[str, Any] = {}
    for source, layer in layers:
        selection.add(layer, source)
        values.update((name, value) for name, value in layer.items() if name not in SELECTION)
    values.update(selection.fields())
    config = replace(Config(target=target), **values)
    selection.check(config.profile)
    return config


def _from_file(table: Mapping[str, Any], source: _Source) -> dict[str, Any]:
    keys = _file_keys()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(sorted(keys))}"
            raise source.error(f"unknown key {key!r} in venvprune settings; {hint}")
        setting, opposite = keys[key]
        if key == "verify" and isinstance(value, bool):  # verify = false: the opposite of --no-verify
            setting, opposite = next(f for f in fields(Config) if f.name == "verify"), False
        if opposite:
            values[setting.name] = not _validated(setting, value, source, key=key)
        else:
            values[setting.name] = _validated(setting, value, source, key=key)
    return values


def _validated(setting: Field[Any], value: Any, source: _Source, key: str | None = None) -> Any:
    """*value* as the field's type, or a one-line error naming where it came from and what is wanted."""
    option: Option = setting.metadata["option"]
    key = key or source.key(setting)
    default = setting.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise source.error(f"{key} must be true or false, not {value!r}")
        return value
    if isinstance(default, tuple):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            raise source.error(f"{key} must be a string or a list of strings, not {value!r}")
        for item in items:
            if option.choices and item not in option.choices:
                raise source.error(f"{key} {item!r}: unknown category; choose from {', '.join(option.choices)}")
        return tuple(items)
    if isinstance(default, (int, float)):
        kind = type(default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and kind is int and not isinstance(value, int):
            number = False
        low = option.minimum if option.minimum is not None else -math.inf
        high = option.maximum if option.maximum is not None else math.inf
        if not number or not math.isfinite(value) or not low <= value <= high:
            wanted = "a whole number" if kind is int else "a number"
            span = f" from {low:g} to {high:g}" if math.isfinite(high) else f" of at least {low:g}"
            raise source.error(f"{key} must be {wanted}{span}, not {value!r}")
        return kind(value)
    if not isinstance(value, str):
        raise source.error(f"{key} must be a string, not {value!r}")
    if option.choices and value not in option.choices:
        raise source.error(f"{key} {value!r}: choose from {', '.join(option.choices)}")
    return value


class _Selection:
    """The categories, layer over layer: ``only`` starts over, ``include`` adds, ``exclude`` takes away.

    So the command line has the last word on each category, whatever a settings file said about it.
    """

    def __init__(self) -> None:
        self.only: tuple[str, ...] = ()
        self.include: list[str] = []
        self.exclude: list[str] = []
        self.said: list[str] = []  # how each layer chose, for an error

    def add(self, layer: Mapping[str, Any], source: _Source) -> None:
        by_name = {f.name: f for f in fields(Config)}
        only, include, exclude = (layer.get(name) for name in SELECTION)
        spelled = {name: source.key(by_name[name]) for name in SELECTION}
        if only is not None and (include or exclude):
            other = "include" if include else "exclude"
            raise source.error(
                f"{spelled['only']} and {spelled[other]} cannot be combined: {spelled['only']} names every category "
                f"to run; list exactly those"
            )
        clash = sorted(set(include or ()) & set(exclude or ()))
        if clash:
            name = clash[0]
            raise source.error(
                f"{spelled['include']} {name} and {spelled['exclude']} {name} contradict each other; keep one of them"
            )
        for name in exclude or ():
            if name in categories.FOLLOWERS:
                raise source.error(
                    f"{spelled['exclude']} {name}: {name} cannot be excluded; it keeps RECORD true for whatever the "
                    "other categories remove"
                )
        where = "" if source.path is None else f" in {source.path}"
        for name in SELECTION:
            for value in layer.get(name) or ():
                self.said.append(f"{spelled[name]} {value}{where}")
        if only is not None:
            self.only, self.include, self.exclude = tuple(only), [], []
        for name in include or ():
            self.include.append(name)
            self.exclude = [n for n in self.exclude if n != name]
        for name in exclude or ():
            self.exclude.append(name)
            self.include = [n for n in self.include if n != name]

    def fields(self) -> dict[str, Any]:
        return {"only": self.only, "include": tuple(self.include), "exclude": tuple(self.exclude)}

    def check(self, profile: str) -> None:
        try:
            categories.select(self.only, self.include, self.exclude, profile)
        except UsageError as exc:
            raise ConfigError(f"{', '.join(self.said)}: {exc.message}") from None


def _tool_table(data: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """``[tool.venvprune]`` of a TOML document, or None when it has none."""
    tool = data.get("tool", {})
    table = tool.get("venvprune") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.venvprune] must be a table")
    return table


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); check the file") from exc
    try:
        return _tomllib.loads(text)
    except _tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from exc
