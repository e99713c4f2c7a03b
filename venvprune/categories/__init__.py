"""The categories of things venvprune may remove. Each module holds one; this registry orders them.

A category is a small object with a ``name``, a ``default`` flag, a one-line ``summary`` and
``plan(inventory, planned) -> CategoryResult``. To add one, write a module and list it here.
"""

from __future__ import annotations

from collections.abc import Iterable

from venvprune.categories import bytecode, debug_symbols, record, tests
from venvprune.errors import UsageError
from venvprune.plan import Category

ALL: tuple[Category, ...] = (bytecode.CATEGORY, tests.CATEGORY, debug_symbols.CATEGORY, record.CATEGORY)
NAMES = tuple(c.name for c in ALL)
# Planned from the other categories' actions, whatever the selection: a RECORD that lists removed files makes pip
# and SBOM tools report a damaged install. Naming one in --only or --include changes nothing.
FOLLOWERS = tuple(c.name for c in ALL if getattr(c, "derived", False))


def select(only: Iterable[str] = (), include: Iterable[str] = (), exclude: Iterable[str] = ()) -> tuple[Category, ...]:
    """The categories to run: ``only`` (or else the defaults), plus ``include``, minus ``exclude``.

    The categories that follow the others' removals (``record``) always run when anything else does.
    """
    only, include, exclude = list(only), list(include), list(exclude)
    for name in [*only, *include, *exclude]:
        if name not in NAMES:
            raise UsageError(f"unknown category {name!r}; choose from {', '.join(NAMES)}")
    for name in exclude:
        if name in FOLLOWERS:
            raise UsageError(
                f"{name} cannot be excluded: it keeps RECORD true for whatever the other categories remove"
            )
    chosen = (set(only) if only else {c.name for c in ALL if c.default}) | set(include)
    chosen -= set(exclude)
    chosen -= set(FOLLOWERS)
    if not chosen:
        raise UsageError(f"no category is left to run; choose from {', '.join(n for n in NAMES if n not in FOLLOWERS)}")
    return tuple(c for c in ALL if c.name in chosen or c.name in FOLLOWERS)
