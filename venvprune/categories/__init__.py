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


def select(only: Iterable[str] = (), include: Iterable[str] = (), exclude: Iterable[str] = ()) -> tuple[Category, ...]:
    """The categories to run: exactly ``only``, or else the defaults plus ``include`` minus ``exclude``."""
    only, include, exclude = list(only), list(include), list(exclude)
    for name in [*only, *include, *exclude]:
        if name not in NAMES:
            raise UsageError(f"unknown category {name!r}; choose from {', '.join(NAMES)}")
    chosen = set(only) if only else {c.name for c in ALL if c.default} | set(include)
    chosen -= set(exclude)
    return tuple(c for c in ALL if c.name in chosen)
