"""``tests``: directories named ``tests`` or ``test`` inside a package, unless runtime code imports them.

Some packages import their own test package from runtime code (networkx once imported ``networkx.tests``,
networkx/networkx#3106), so a test directory that any module outside it imports -- absolutely, relatively or through
``importlib.import_module`` with a literal name -- is kept, and the report names the importer. ``testing`` and
``_testing`` are public API (``numpy.testing``) and files named ``test.py`` are modules: neither is ever touched.
An import through a name built at run time is invisible here; verification catches and heals that.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

from venvprune.plan import Action, ActionKind, CategoryResult, FileIndex, Kept
from venvprune.scan import FileEntry, Inventory

TEST_DIR_NAMES = frozenset({"tests", "test"})
REASON = "test suite; no module outside it imports it"

# Cheap filter before parsing: only files with an import-ish line naming test/tests are parsed.
_MENTIONS_TESTS = re.compile(rb"(?:\bimport\b|\bimport_module\b|__import__)[^\n]*\btests?\b|\btests?\b[^\n]*\bimport\b")


class Tests:
    name = "tests"
    default = True
    summary = "test directories (tests/, test/) inside packages that no runtime module imports"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        index = FileIndex(inventory.files)
        candidates = {
            _module_name(inventory.target.relative(d)): d
            for d in inventory.directories
            if d.name in TEST_DIR_NAMES and _inside_package(inventory.target.relative(d))
        }
        if not candidates:
            return CategoryResult()
        importers = _find_importers(inventory.files, candidates)
        actions: list[Action] = []
        kept: list[Kept] = []
        for dotted, directory in sorted(candidates.items()):
            contents = index.under(directory)
            size = sum(f.size for f in contents)
            importer = importers.get(dotted)
            if importer is not None:
                kept.append(Kept(directory, self.name, f"{importer} imports it at runtime", size))
                continue
            actions.append(
                Action(
                    path=directory,
                    kind=ActionKind.REMOVE,
                    category=self.name,
                    reason=REASON,
                    bytes_saved=size,
                    files=len(contents),
                    distribution=inventory.owner_of(contents[0].path if contents else directory),
                    is_directory=True,
                )
            )
        return CategoryResult(tuple(actions), tuple(kept))


def _inside_package(rel: str) -> bool:
    parts = rel.split("/")
    # site-packages/tests is some distribution's top-level package, not a package's test suite.
    return len(parts) >= 2 and not any(p.endswith((".dist-info", ".egg-info", ".data")) for p in parts)


def _module_name(rel: str) -> str:
    return rel.replace("/", ".")


def _find_importers(files: Sequence[FileEntry], candidates: dict[str, Path]) -> dict[str, str]:
    """Map each candidate's dotted name to the first module outside it that imports it."""
    importers: dict[str, str] = {}
    for entry in files:
        if entry.is_symlink or entry.path.suffix != ".py":
            continue
        try:
            source = entry.path.read_bytes()
        except OSError:
            continue
        if not _MENTIONS_TESTS.search(source):
            continue
        for imported in imported_names(source, _module_name(entry.rel[: -len(".py")]), entry.path.name == "__init__.py"):
            for dotted in _candidates_covering(imported, candidates):
                if dotted not in importers and not _is_inside(entry.rel, dotted):
                    importers[dotted] = entry.rel
    return importers


def _candidates_covering(imported: str, candidates: dict[str, Path]) -> Iterator[str]:
    parts = imported.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in candidates:
            yield prefix


def _is_inside(rel: str, dotted: str) -> bool:
    return rel.startswith(dotted.replace(".", "/") + "/")


def imported_names(source: bytes, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names of the modules *source* imports (and the names it imports from them, which may be modules)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            if base is None:
                continue
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value
                level = len(name) - len(name.lstrip("."))
                anchor = _literal_package_keyword(node) or package
                resolved = _resolve(name.lstrip("."), level, anchor)
                if resolved:
                    yield resolved


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"import_module", "__import__"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _literal_package_keyword(call: ast.Call) -> Optional[str]:
    for keyword in call.keywords:
        if keyword.arg == "package" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
            return keyword.value.value
    if len(call.args) > 1 and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
        return call.args[1].value
    return None


def _resolve(name: str, level: int, package: str) -> Optional[str]:
    if level == 0:
        return name
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base) or None


CATEGORY = Tests()
