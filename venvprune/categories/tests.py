"""``tests``: directories named ``tests`` or ``test`` inside a package, unless runtime code imports them or an entry
point lies in them.

Some packages import their own test package from runtime code (networkx once imported ``networkx.tests``,
networkx/networkx#3106), so a test directory that any module outside it imports -- absolutely, relatively or through
``importlib.import_module`` with a literal name -- is kept, and the report names the importer; so is one that an
entry point's module lies in (networkx registers a dispatch backend in ``networkx.classes.tests``). ``testing`` and
``_testing`` are public API (``numpy.testing``) and files named ``test.py`` are modules: neither is ever touched.
Nor is a ``test`` directory that is a distribution's own code: its only package (``jaraco.test`` installs nothing but
``jaraco/test/``), or its top-level package under a namespace package. An import through a name built at run time
is invisible here; verification catches and heals that.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from importlib.metadata import PathDistribution
from pathlib import Path

from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import Distribution, FileEntry, Inventory

TEST_DIR_NAMES = frozenset({"tests", "test"})
REASON = "test suite; no module outside it imports it"

_WORD_TESTS = re.compile(rb"\btests?\b")
_BRACKET_OR_NEWLINE = re.compile(rb"[()\[\]{}\n]")
# Far longer than an import statement in real code, short enough that a stray bracket costs little.
_STATEMENT_REACH = 16384
_CODE_SUFFIXES = (".py", ".so", ".pyd")


class Tests:
    name = "tests"
    default = True
    summary = "test directories (tests/, test/) inside packages that no runtime module imports"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        index = inventory.index
        candidates = {
            _module_name(inventory.target.relative(d)): d
            for d in inventory.directories
            if d.name in TEST_DIR_NAMES and _inside_package(inventory.target.relative(d))
        }
        if not candidates:
            return CategoryResult()
        importers = _find_importers(inventory.files, candidates, _named_by_entry_points(inventory, candidates))
        actions: list[Action] = []
        kept: list[Kept] = []
        code_files: dict[str, tuple[str, ...]] = {}
        for dotted, directory in sorted(candidates.items()):
            contents = index.under(directory)
            size = sum(f.size for f in contents)
            owner = inventory.distribution(inventory.owner_of(contents[0].path if contents else directory) or "")
            importer = importers.get(dotted) or _own_code(inventory, directory, owner, code_files)  # why it stays
            if importer is not None:
                kept.append(Kept(directory, self.name, importer, size))
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


def _own_code(
    inventory: Inventory, directory: Path, owner: Distribution | None, code_files: dict[str, tuple[str, ...]]
) -> str | None:
    """Why *directory* is its distribution's own code, not a test suite; None when it is not.

    *code_files*: each distribution's modules, listed once (torch has hundreds of test folders and 20,000 files).
    """
    if owner is None:
        return None
    rel = inventory.target.relative(directory)
    if owner.name not in code_files:
        code_files[owner.name] = tuple(f for f in owner.files if f.endswith(_CODE_SUFFIXES) and not f.startswith(".."))
    code = code_files[owner.name]
    if code and all(f.startswith(rel + "/") for f in code):
        return f"the code of distribution {owner.name}, not a test suite: its only package"
    if rel in _top_level_names(owner):
        return f"the code of distribution {owner.name}, not a test suite: top_level.txt names it"
    return None


def _top_level_names(dist: Distribution) -> set[str]:
    try:
        text = (dist.metadata_dir / "top_level.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {name.replace(".", "/").replace("\\", "/") for name in text.split()}


def _inside_package(rel: str) -> bool:
    parts = rel.split("/")
    # site-packages/tests is some distribution's top-level package, not a package's test suite.
    return len(parts) >= 2 and not any(p.endswith((".dist-info", ".egg-info", ".data")) for p in parts)


def _module_name(rel: str) -> str:
    return rel.replace("/", ".")


def _named_by_entry_points(inventory: Inventory, candidates: dict[str, Path]) -> dict[str, str]:
    """Test directories that an entry point's module lies in (networkx registers a backend in
    ``networkx.classes.tests``): loading the entry point imports them."""
    named: dict[str, str] = {}
    for dist in inventory.distributions:
        try:
            entry_points = PathDistribution(dist.metadata_dir).entry_points
        except Exception:  # a damaged entry_points.txt names nothing here; its metadata check says so
            continue
        for entry_point in entry_points:
            for dotted in _candidates_covering(entry_point.module, candidates):
                named.setdefault(dotted, f"entry point {entry_point.group}:{entry_point.name} of {dist.name} names it")
    return named


def _find_importers(files: Sequence[FileEntry], candidates: dict[str, Path], named: dict[str, str]) -> dict[str, str]:
    """Which test directories must stay, and why: an entry point names them (*named*), runtime code imports them,
    or a kept one does, or holds them.

    Imports made by test modules only count once their own directory is kept, so one test suite importing
    another (``numpy/_core/tests`` importing ``numpy.lib.tests``) keeps nothing; only runtime code is read first,
    and a test directory's files are read only when it is kept.
    """
    groups: dict[str | None, list[FileEntry]] = {}
    for entry in files:
        if not entry.is_symlink and entry.rel.endswith(".py") and entry.rel.rpartition("/")[2] != ".py":
            groups.setdefault(_innermost_candidate(entry.rel, candidates), []).append(entry)
    kept: dict[str, str] = {}
    pending: list[str | None] = [None]  # None: runtime code, outside every test directory

    def keep(dotted: str, why: str) -> None:
        for name, reason in [
            (dotted, why),
            *((outer, f"holds {dotted}, which is kept") for outer in _outer(dotted, candidates)),
        ]:
            if name not in kept:
                kept[name] = reason
                pending.append(name)

    for dotted, why in named.items():
        keep(dotted, why)
    while pending:
        group = pending.pop()
        for entry in groups.get(group, ()):
            for dotted in _imported_candidates(entry, candidates):
                if dotted in kept or _is_inside(entry.rel, dotted):
                    continue
                keep(
                    dotted,
                    f"{entry.rel} imports it at runtime"
                    if group is None
                    else f"{entry.rel} imports it and {group} is kept",
                )
    return kept


def _innermost_candidate(rel: str, candidates: dict[str, Path]) -> str | None:
    parts = rel.split("/")[:-1]
    for end in range(len(parts), 0, -1):
        dotted = ".".join(parts[:end])
        if dotted in candidates:
            return dotted
    return None


def _outer(dotted: str, candidates: dict[str, Path]) -> Iterator[str]:
    parts = dotted.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in candidates:
            yield prefix


def _imported_candidates(entry: FileEntry, candidates: dict[str, Path]) -> Iterator[str]:
    try:
        with open(entry.path_str, "rb") as handle:
            source = handle.read()
    except OSError:
        return
    module = _module_name(entry.rel[: -len(".py")])
    for snippet in import_snippets(source):
        for imported in imported_names(snippet, module, entry.name == "__init__.py"):
            yield from _candidates_covering(imported, candidates)


def import_snippets(source: bytes) -> Iterator[bytes]:
    """The import statements that hold a ``test``/``tests`` word, cut out for a small parse.

    A statement starts on the line of an ``import`` (or ``import_module``) and runs on while brackets are open
    (``from x import (\n tests)``, ``import_module(\n "x.tests")``) or lines end in a backslash. Each statement is
    read once, so the work grows with the file, not with the number of test words times the file's length; parsing
    only these snippets instead of whole files keeps the category fast on large venvs. A bracket that does not close
    within reach (one in a docstring or a comment: ``import`` is only a word there) makes its statement the one line,
    so that it cannot swallow the real imports after it.
    """
    if b"test" not in source:  # a substring search, far faster than the word's regular expression
        return
    position = 0
    while (found := source.find(b"import", position)) != -1:
        line_start = source.rfind(b"\n", 0, found) + 1
        end = _statement_end(source, line_start)
        if end == -1:
            line_end = source.find(b"\n", found)
            end = line_end if line_end != -1 else len(source)
        if _WORD_TESTS.search(source, line_start, end):
            yield source[line_start:end].strip()
        position = max(end, found + len(b"import"))


def _statement_end(source: bytes, start: int) -> int:
    """End of the logical line that begins at *start*: past open brackets and backslash continuations.

    -1 when it does not end within :data:`_STATEMENT_REACH` bytes (nor at the end of the source).
    """
    depth = 0
    limit = min(len(source), start + _STATEMENT_REACH)
    for match in _BRACKET_OR_NEWLINE.finditer(source, start, limit):
        char = match.group()
        if char in b"([{":
            depth += 1
        elif char in b")]}":
            depth -= 1
        elif depth <= 0 and source[match.start() - 1 : match.start()] != b"\\":
            return match.start()
    return len(source) if limit == len(source) and depth <= 0 else -1


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
    tree = _parse(source)
    if tree is None and b"import_module" in source:
        # A snippet cut from inside a larger statement (``x = f(import_module(...)``): try its call alone.
        tree = _parse(source[source.find(b"import_module") :])
    if tree is None:
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


def _parse(source: bytes) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"import_module", "__import__"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _literal_package_keyword(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if (
            keyword.arg == "package"
            and isinstance(keyword.value, ast.Constant)
            and isinstance(keyword.value.value, str)
        ):
            return keyword.value.value
    if len(call.args) > 1 and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str):
        return call.args[1].value
    return None


def _resolve(name: str, level: int, package: str) -> str | None:
    if level == 0:
        return name
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base) or None


CATEGORY = Tests()
