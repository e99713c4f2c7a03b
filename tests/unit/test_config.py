"""Settings come from defaults, [tool.venvprune], --config and the command line, in that order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from venvprune import categories
from venvprune.config import Config, load
from venvprune.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_layers_in_order(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml", '[tool.venvprune]\nkeep = ["a/*"]\nexclude = "tests"\nno-heal = true\njobs = 3\n'
    )
    extra = write(tmp_path / "extra.toml", 'keep = ["b/*"]\n')
    config = load(tmp_path, extra, {"jobs": 1})
    assert config.keep == ("b/*",)
    assert config.exclude == ("tests",)
    assert config.heal is False
    assert config.jobs == 1
    assert load(tmp_path / "nowhere", None, {}) == Config()


def test_unknown_key_names_the_nearest(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.venvprune]\nexlude = ['tests']\n")
    with pytest.raises(
        ConfigError, match=r"pyproject.toml: unknown key 'exlude' in venvprune settings; did you mean 'exclude'\?"
    ):
        load(tmp_path, None, {})


def test_wrong_types_and_bad_toml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jobs must be a whole number of at least 0, not 'two'"):
        load(tmp_path, write(tmp_path / "a.toml", 'jobs = "two"\n'), {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, write(tmp_path / "b.toml", "keep = [\n"), {})
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path, tmp_path / "missing.toml", {})


def test_config_file_may_hold_a_tool_table(tmp_path: Path) -> None:
    config = load(tmp_path, write(tmp_path / "c.toml", "[tool.venvprune]\nonly = ['bytecode']\n"), {})
    assert config.only == ("bytecode",)


def test_toml_reads_the_same_on_every_python(tmp_path: Path) -> None:
    """Multi-line arrays, comments after a table header and dotted keys, as tomllib reads them on 3.11."""
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "app"\n'
        "[tool.venvprune]  # pruning settings\n"
        'exclude = [\n    "tests",  # our tests import them\n]\n'
        "timeout = 30\n",
    )
    config = load(tmp_path, None, {})
    assert (config.exclude, config.timeout) == (("tests",), 30.0)
    dotted = write(tmp_path / "dotted.toml", '[tool]\nvenvprune.keep = ["a/*"]\n')
    assert load(tmp_path, dotted, {}).keep == ("a/*",)


def test_every_long_option_is_a_settings_key(tmp_path: Path) -> None:
    settings = write(
        tmp_path / "all.toml",
        'dry-run = true\njson = "r.json"\nmarkdown = "r.md"\ninclude = ["tests"]\nkeep = ["a"]\n'
        'no-verify = true\nno-heal = true\nmanifest = false\njobs = 2\ncheck-module = "app"\nsmoke = ["app --help"]\n'
        "timeout = 30\nquiet = true\nverbose = true\n"
        'verify = "all"\nstrict = true\npython = "/usr/bin/python3"\n',
    )
    config = load(tmp_path, settings, {})
    assert config == Config(
        dry_run=True,
        json="r.json",
        markdown="r.md",
        include=("tests",),
        keep=("a",),
        verify=False,
        heal=False,
        manifest=False,
        jobs=2,
        check_module=("app",),
        smoke=("app --help",),
        timeout=30.0,
        quiet=True,
        verbose=True,
        verify_scope="all",
        strict=True,
        python="/usr/bin/python3",
    )


def test_a_bad_category_names_the_file(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", '[tool.venvprune]\nexclude = ["test"]\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(pyproject))}: exclude 'test': unknown category"):
        load(tmp_path, None, {})


def test_a_pyproject_without_our_table_given_to_config_says_so(tmp_path: Path) -> None:
    other = write(tmp_path / "elsewhere.toml", '[build-system]\nrequires = ["x"]\n[tool.black]\nline-length = 1\n')
    with pytest.raises(ConfigError, match=r"elsewhere.toml: no \[tool.venvprune\] table; add one"):
        load(tmp_path / "nowhere", other, {})


def test_selection_layers_give_the_last_word_on_each_category(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.venvprune]\nexclude = ["debug-symbols", "tests", "package-extras"]\n')
    assert load(tmp_path, None, {}).exclude == ("debug-symbols", "tests", "package-extras")
    config = load(tmp_path, None, {"include": ("tests",)})  # the command line brings tests back
    assert [c.name for c in categories.select(config.only, config.include, config.exclude)] == [
        "bytecode",
        "tests",
        "record",
    ]
    config = load(tmp_path, None, {"only": ("debug-symbols",)})  # --only starts over
    assert [c.name for c in categories.select(config.only, config.include, config.exclude)] == [
        "debug-symbols",
        "record",
    ]
    with pytest.raises(ConfigError, match="--exclude bytecode: no category is left to run"):
        load(tmp_path, None, {"exclude": ("bytecode",)})


def test_verify_takes_a_scope_or_a_boolean(tmp_path: Path) -> None:
    assert load(tmp_path, write(tmp_path / "a.toml", 'verify = "all"\n'), {}).verify_scope == "all"
    assert load(tmp_path, write(tmp_path / "b.toml", "verify = false\n"), {}).verify is False
    with pytest.raises(ConfigError, match="verify 'some': choose from affected, all"):
        load(tmp_path, write(tmp_path / "c.toml", 'verify = "some"\n'), {})


def test_timeout_is_bounded_in_files_as_on_the_command_line(tmp_path: Path) -> None:
    """timeout = 0 was accepted, and verification passed 0 of 77 checks."""
    with pytest.raises(ConfigError, match="timeout must be a number from 1 to 86400, not 0"):
        load(tmp_path, write(tmp_path / "t.toml", "timeout = 0\n"), {})
