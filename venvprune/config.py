"""Settings: defaults < ``[tool.venvprune]`` in ./pyproject.toml < ``--config FILE`` < the command line.

The same keys as the long options, spelled with dashes (``keep = ["numpy/tests/*"]``, ``no-heal = true``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from venvprune import _tomllib
from venvprune.errors import ConfigError


@dataclass(frozen=True)
class Config:
    target: Path | None = None
    dry_run: bool = False
    only: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    verify: bool = True
    heal: bool = True
    manifest: bool = True
    jobs: int = 0  # 0: one import worker per CPU
    check_module: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    timeout: float = 120.0  # seconds per module import
    json: str | None = None  # path, or "-" for stdout
    markdown: str | None = None
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose


# File keys -> Config fields; booleans that the CLI spells negatively are accepted both ways.
_FILE_KEYS: dict[str, str] = {
    "dry-run": "dry_run",
    "only": "only",
    "include": "include",
    "exclude": "exclude",
    "keep": "keep",
    "verify": "verify",
    "heal": "heal",
    "manifest": "manifest",
    "jobs": "jobs",
    "check-module": "check_module",
    "smoke": "smoke",
    "timeout": "timeout",
    "json": "json",
    "markdown": "markdown",
}
_NEGATED = {"no-verify": "verify", "no-heal": "heal", "no-manifest": "manifest"}


def load(cwd: Path, config_file: Path | None, overrides: Mapping[str, Any]) -> Config:
    """Merge the layers; *overrides* are the options the user gave on the command line (field name -> value)."""
    config = Config()
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        config = _merge(config, _tool_table(pyproject), pyproject)
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"{config_file}: config file not found; pass an existing TOML file to --config")
        data = _read_toml(config_file)
        table = data.get("tool", {}).get("venvprune", data) if isinstance(data.get("tool"), dict) else data
        config = _merge(config, table, config_file)
    known = {f.name for f in fields(Config)}
    return replace(config, **{k: v for k, v in overrides.items() if k in known})


def _tool_table(pyproject: Path) -> Mapping[str, Any]:
    data = _read_toml(pyproject)
    tool = data.get("tool", {})
    table = tool.get("venvprune", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.venvprune] must be a table")
    return table


def _merge(config: Config, table: Mapping[str, Any], source: Path) -> Config:
    changes: dict[str, Any] = {}
    valid = sorted([*_FILE_KEYS, *_NEGATED])
    for key, value in table.items():
        if key in _NEGATED:
            changes[_NEGATED[key]] = not _expect(bool, key, value, source)
            continue
        name = _FILE_KEYS.get(key)
        if name is None:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"{source}: unknown key {key!r} in venvprune settings; {hint}")
        default = getattr(Config(), name)
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ConfigError(f"{source}: {key} must be a string or a list of strings")
            changes[name] = tuple(items)
        elif isinstance(default, bool):
            changes[name] = _expect(bool, key, value, source)
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: {key} must be a number")
            changes[name] = type(default)(value)
        else:
            changes[name] = _expect(str, key, value, source)
    return replace(config, **changes)


def _expect(kind: type, key: str, value: Any, source: Path) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{source}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); check the file") from exc
    try:
        return _tomllib.loads(text)
    except _tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from exc
